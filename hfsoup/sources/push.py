"""Publish a model folder on the Hub in one commit, after checking everything local first."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import InvalidSettingError, UnsafeWeightsError
from .local import LocalSource
from .reference import parse_reference
from .safetensors import PICKLE_SUFFIXES, SAFE_WEIGHTS_INDEX_NAME

__all__ = ["push_folder"]

logger = logging.getLogger(__name__)

# Weight files an earlier push may have left: deleted from the branch unless this push uploads them again,
# so a repository never holds the weights of two pushes side by side.
STALE_WEIGHT_PATTERNS = ["*.safetensors", SAFE_WEIGHTS_INDEX_NAME, *(f"*{s}" for s in PICKLE_SUFFIXES)]
# Never uploaded: code (which would make the repository ask for trust_remote_code) and hidden files.
NEVER_UPLOADED = ["*.py", ".*", "**/.*"]


def check_pushable(folder: str | Path) -> LocalSource:
    """Check, without any network call, that `folder` is a complete model folder holding only safe weights.

    Raises:
        `IngredientNotFoundError`: no such folder, no `config.json` or no safetensors weights.
        `UnsafeWeightsError`: the folder holds pickle files, which hfsoup never publishes, or links to files
            outside it (a link could publish a secret from elsewhere).
    """
    source = LocalSource(folder)
    root = source.folder.resolve()
    leaving = sorted(
        path.relative_to(source.folder).as_posix()
        for path in source.folder.rglob("*")
        if path.is_symlink() and not path.resolve().is_relative_to(root)
    )
    if leaving:
        raise UnsafeWeightsError(
            f"{folder} holds link(s) to files outside it ({', '.join(leaving[:3])}); hfsoup pushes the files "
            "inside the folder only: replace each link by the file it names, or remove it.",
            reference=str(folder),
        )
    pickles = sorted(
        path.relative_to(source.folder).as_posix()
        for path in source.folder.rglob("*")
        if path.is_file() and path.suffix in PICKLE_SUFFIXES
    )
    if pickles:
        raise UnsafeWeightsError(
            f"{folder} holds pickle files ({', '.join(pickles[:3])}); hfsoup publishes safetensors weights only: "
            "remove them, or push the folder with another tool if you mean to publish them.",
            reference=str(folder),
        )
    return source


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | bool | None = None,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
):
    """Upload a model folder (weights, config, tokenizer, README.md, soup.yaml) in one commit.

    Everything local is checked first ([`check_pushable`] and the repository id), so a bad folder creates
    nothing on the Hub. The repository is created if it does not exist (an existing one keeps its
    visibility), and so is the branch `revision`, from the default branch. Weight files of an earlier push
    that this one does not upload again are deleted in the same commit; code files are never uploaded.

    Args:
        folder: the folder to upload.
        repo_id: `user/name` of the target repository.
        token: a token with write access; `None` for the saved login or `HF_TOKEN`.
        private: create the repository as private.
        revision: the branch to commit to; the default branch if `None`.
        commit_message: the commit's title.

    Returns:
        The `huggingface_hub.CommitInfo` of the commit (`.commit_url`, `.oid`).

    Raises:
        `InvalidSettingError`: `repo_id` is not `user/name`.
        `IngredientNotFoundError`, `UnsafeWeightsError`: see [`check_pushable`].
        `HubAuthError`: no token, or a token without write access to the namespace.
        `HubUnreachableError`: the Hub cannot be reached.

    Example:
        ```python
        >>> commit = push_folder(Path("soups/mrpc"), "alice/bert-mrpc-soup", private=True)
        >>> commit.oid
        'a8b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5'
        ```
    """
    target, at_revision = parse_reference(repo_id)
    if at_revision is not None:
        raise InvalidSettingError(
            f"push to {target!r} with --revision {at_revision}, not {repo_id!r}: the repository is user/name."
        )
    source = check_pushable(folder)

    from huggingface_hub import HfApi

    from .hub import hub_errors

    api = HfApi(token=token)
    with hub_errors(repo_id if revision is None else f"{repo_id}@{revision}"):
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=source.folder,
            revision=revision,
            commit_message=commit_message or f"Upload {source.folder.name} with hfsoup",
            ignore_patterns=NEVER_UPLOADED,
            delete_patterns=STALE_WEIGHT_PATTERNS,
        )
    logger.info("Pushed %s to %s", folder, commit.commit_url)
    return commit
