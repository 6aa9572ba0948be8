"""The Hugging Face Hub, the only place hfsoup touches the network: resolve, download, read metadata, push.

A Hub ingredient is a reference `user/name` or `user/name@revision` (a branch, a tag or a commit sha).
[`HubSource`] resolves it to a commit sha once, then pins every download to that commit. Everything goes
through `huggingface_hub`, so its cache, `HF_TOKEN` (or an explicit token), `HF_ENDPOINT` and
`HF_HUB_OFFLINE` work as everywhere else in the ecosystem: a file in the cache is never fetched again, an
interrupted transfer resumes, and a cached ingredient loads offline.

Only what a soup needs is fetched: the config and tokenizer files, then the safetensors weights (and their
index). Tensor names, dtypes and shapes come from the safetensors headers read with HTTP range requests, so a
compatibility check downloads no weights. Pickle weights are never downloaded, and no code file is either,
so no remote code can run. Every `huggingface_hub` failure is translated in one place, `_hub_errors`, into
an `hfsoup.errors` exception whose message is one line saying what to do.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

import httpx2
from huggingface_hub import HfApi, constants, get_cached_repo_tree, snapshot_download, try_to_load_from_cache
from huggingface_hub import errors as hf_errors
from huggingface_hub.utils import HFValidationError, validate_repo_id

from .errors import (
    HubAuthError,
    HubError,
    HubUnreachableError,
    IngredientNotFoundError,
    InvalidSettingError,
    RepoNotFoundError,
    RevisionNotFoundError,
    UnsafeWeightsError,
)
from .ingredients import PICKLE_SUFFIXES, TensorInfo, read_tensor_infos

__all__ = ["HubSource", "is_repo_reference", "parse_reference", "push_folder"]

logger = logging.getLogger(__name__)

# What `metadata_dir` downloads: the config, every file a tokenizer may be saved as, and the weights index.
METADATA_FILES = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "spm.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
    "chat_template.jinja",
    constants.SAFETENSORS_INDEX_FILE,
]


def parse_reference(text: str) -> tuple[str, str | None]:
    """Split a Hub reference into its repository id and revision.

    Args:
        text: `user/name` or `user/name@revision`, the revision being a branch, a tag or a commit sha.

    Returns:
        `(repo_id, revision)`, the revision `None` when none is given.

    Raises:
        `InvalidSettingError`: `text` is not a valid reference.

    Example:
        ```python
        >>> parse_reference("alice/bert-mrpc@v1.0")
        ('alice/bert-mrpc', 'v1.0')
        ```
    """
    repo_id, at, revision = text.partition("@")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise InvalidSettingError(
            f"{text!r} is not a Hub reference: write user/name or user/name@revision ({err})"
        ) from err
    if "/" not in repo_id or (at and not revision.strip()):
        raise InvalidSettingError(
            f"{text!r} is not a Hub reference: write user/name or user/name@revision (a branch, tag or commit)"
        )
    return repo_id, revision if at else None


def is_repo_reference(text: str) -> bool:
    """Whether `text` reads as a Hub reference (`user/name[@revision]`) and names no existing local path.

    Example:
        ```python
        >>> is_repo_reference("alice/bert-mrpc@main"), is_repo_reference("./runs/seed1")
        (True, False)
        ```
    """
    if Path(text).expanduser().exists():
        return False
    try:
        parse_reference(text)
    except InvalidSettingError:
        return False
    return True


@contextmanager
def _hub_errors(reference: str) -> Iterator[None]:
    """Translate the `huggingface_hub` and network errors raised inside into `hfsoup.errors`, one line each.

    Args:
        reference: what was being fetched or pushed (`user/name` or `user/name@revision`), for the messages.

    Raises:
        `HubAuthError`: gated repo, missing or rejected token, or a token without the needed rights.
        `RepoNotFoundError`: no such repository (or the token cannot see it).
        `RevisionNotFoundError`: no such branch, tag or commit.
        `HubUnreachableError`: the Hub cannot be reached, or offline mode is on, and the files are not cached.
        `HubError`: any other answer of the Hub.
    """
    repo_id = reference.partition("@")[0]
    endpoint = constants.ENDPOINT
    login = "log in with `hf auth login`, set HF_TOKEN or pass --token"
    try:
        yield
    except hf_errors.GatedRepoError as err:
        raise HubAuthError(
            f"{repo_id} is gated: accept its conditions at {endpoint}/{repo_id}, then use a token of that account "
            f"({login})",
            repo_id,
        ) from err
    except hf_errors.RepositoryNotFoundError as err:
        if not _sent_token(err):
            raise HubAuthError(
                f"{repo_id} was not found on {endpoint}, or it is private and no token was sent: check the name, "
                f"or {login}",
                repo_id,
            ) from err
        raise RepoNotFoundError(
            f"{repo_id} was not found on {endpoint} (or your token cannot see it): check the repository name",
            repo_id,
        ) from err
    except hf_errors.RevisionNotFoundError as err:
        raise RevisionNotFoundError(
            f"{reference}: no such revision in {repo_id}: give a branch, a tag or a commit sha of the repository",
            repo_id,
        ) from err
    except hf_errors.HfHubHTTPError as err:
        status = err.response.status_code
        detail = _first_line(err.server_message or str(err))
        if status == 401 and not _sent_token(err):
            raise HubAuthError(f"{reference} needs a Hugging Face token: {login}", repo_id) from err
        if status == 401:
            raise HubAuthError(
                f"{endpoint} rejected the token ({detail}): check HF_TOKEN or --token, or log in again with "
                "`hf auth login`",
                repo_id,
            ) from err
        if status == 403:
            raise HubAuthError(
                f"{reference}: the token is not allowed to do this ({detail}); use a token with the needed "
                f"access (write access to {repo_id.split('/')[0]} to push)",
                repo_id,
            ) from err
        if status >= 500:
            raise HubUnreachableError(
                f"{endpoint} failed with HTTP {status} on {reference}: try again later", repo_id
            ) from err
        raise HubError(f"{reference}: {endpoint} answered HTTP {status}: {detail}", repo_id) from err
    except (
        hf_errors.OfflineModeIsEnabled,
        hf_errors.LocalEntryNotFoundError,
        hf_errors.RevisionResolutionError,
        httpx2.TransportError,
    ) as err:
        if constants.is_offline_mode():
            raise HubUnreachableError(
                f"HF_HUB_OFFLINE is set and {reference} needs the Hub (only files already in the cache "
                f"{constants.HF_HUB_CACHE} work offline): unset HF_HUB_OFFLINE",
                repo_id,
            ) from err
        raise HubUnreachableError(
            f"cannot reach the Hub at {endpoint} for {reference} ({type(err).__name__}), and the local cache "
            "cannot serve it: check your connection, proxy or HF_ENDPOINT",
            repo_id,
        ) from err
    except hf_errors.SafetensorsParsingError as err:
        raise UnsafeWeightsError(
            f"{reference}: a weight file has no valid safetensors header ({_first_line(str(err))})",
            reference=reference,
        ) from err


def _sent_token(err: hf_errors.HfHubHTTPError) -> bool:
    return "authorization" in err.response.request.headers


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no details")


class HubSource:
    """A Hub repository at a resolved commit, whose files are fetched on demand into the Hugging Face cache.

    The revision is resolved to a commit sha on construction (one API call; offline, from the cache), and
    every later download is pinned to that sha, so all files of an ingredient come from the same commit.

    Args:
        repo_id: `user/name`.
        revision: a branch, a tag or a commit sha; the default branch if `None`.
        token: a Hub token, `None` for the saved login or `HF_TOKEN`, `False` to send none.

    Attributes:
        reference: the reference as written, e.g. `"alice/bert-mrpc@main"`.
        revision: the resolved commit sha (40 hex digits).

    Raises:
        `RepoNotFoundError`, `RevisionNotFoundError`, `HubAuthError`, `HubUnreachableError`: see `_hub_errors`.

    Example:
        ```python
        >>> source = HubSource("alice/bert-mrpc", "main")
        >>> source.revision
        '5f1c0e1e2d9d3c1b2a8e4f6a7b9c0d1e2f3a4b5c'
        >>> infos = source.tensor_infos()  # no weight downloaded
        >>> files = source.weight_files()  # now the safetensors files are
        ```
    """

    def __init__(self, repo_id: str, revision: str | None = None, *, token: str | bool | None = None):
        self.repo_id = repo_id
        self.reference = repo_id if revision is None else f"{repo_id}@{revision}"
        self._token = token
        self._api = HfApi(token=token)
        with _hub_errors(self.reference):
            self.revision: str = self._api.resolve_revision(repo_id, revision=revision).resolved
        logger.info("Resolved %s to commit %s", self.reference, self.revision)

    def metadata_dir(self) -> Path:
        """The cached snapshot folder of the commit, holding its config, tokenizer files and weights index.

        Only these small files are downloaded, on the first call.

        Raises:
            `IngredientNotFoundError`: the repository has no `config.json`.
        """
        return self._metadata_dir

    @cached_property
    def _metadata_dir(self) -> Path:
        folder = self._download(METADATA_FILES)
        if not (folder / constants.CONFIG_NAME).is_file():
            raise IngredientNotFoundError(
                f"{self.reference} has no {constants.CONFIG_NAME}, so it is not a transformers model repository; "
                "push the model with `model.push_to_hub(...)` or `model.save_pretrained(folder)`",
                reference=self.reference,
            )
        return folder

    def tensor_infos(self) -> dict[str, TensorInfo]:
        """Every tensor's dtype and shape, from the safetensors headers, without downloading any weight.

        A header is read from the cached file when the weights were downloaded already, otherwise with an
        HTTP range request.

        Raises:
            `UnsafeWeightsError`: the repository has only pickle weights.
        """
        infos: dict[str, TensorInfo] = {}
        for name in self._weight_names:
            cached = try_to_load_from_cache(self.repo_id, name, revision=self.revision)
            if isinstance(cached, str):
                infos.update(read_tensor_infos(Path(cached)))
                continue
            with _hub_errors(self.reference):
                header = self._api.parse_safetensors_file_metadata(self.repo_id, name, revision=self.revision)
            infos.update(
                {k: TensorInfo(dtype=v.dtype, shape=tuple(v.shape)) for k, v in header.tensors.items()}
            )
        return infos

    def weight_files(self) -> list[Path]:
        """Download the safetensors weights of the commit (all shards), and return their local paths.

        Raises:
            `UnsafeWeightsError`: the repository has only pickle weights.
        """
        folder = self._download(self._weight_names)
        return [folder / name for name in self._weight_names]

    @cached_property
    def _weight_names(self) -> list[str]:
        """The weight files to use: the shards of `model.safetensors.index.json`, or `model.safetensors`."""
        folder = self.metadata_dir()
        files = {name for name in self._repo_files() if "/" not in name}
        if constants.SAFETENSORS_INDEX_FILE in files:
            index = json.loads((folder / constants.SAFETENSORS_INDEX_FILE).read_text())
            shards = sorted(set(index["weight_map"].values()))
            missing = [shard for shard in shards if shard not in files]
            if missing:
                raise IngredientNotFoundError(
                    f"{self.reference}: {constants.SAFETENSORS_INDEX_FILE} lists {len(missing)} shard(s) missing "
                    f"from the repository ({', '.join(missing[:3])}); push the complete model",
                    reference=self.reference,
                )
            return shards
        if constants.SAFETENSORS_SINGLE_FILE in files:
            return [constants.SAFETENSORS_SINGLE_FILE]
        pickles = sorted(name for name in files if name.endswith(PICKLE_SUFFIXES))
        if pickles:
            raise UnsafeWeightsError(
                f"{self.reference} has only pickle weights ({', '.join(pickles[:3])}), which hfsoup refuses to "
                "load because unpickling can run arbitrary code; ask for a safetensors version of the repository "
                "or pick a revision that has model.safetensors",
                reference=self.reference,
            )
        raise IngredientNotFoundError(
            f"{self.reference} has no weights ({constants.SAFETENSORS_SINGLE_FILE} or "
            f"{constants.SAFETENSORS_INDEX_FILE}); push them with `model.push_to_hub(...)`",
            reference=self.reference,
        )

    def _repo_files(self) -> list[str]:
        """The paths of every file of the commit, from the listing the first snapshot download cached."""
        with _hub_errors(self.reference):
            try:
                return [file.path for file in get_cached_repo_tree(self.repo_id, revision=self.revision)]
            # No cached listing: the cache was filled by another tool, or is read-only.
            except hf_errors.CachedRepoTreeNotFoundError:
                return self._api.list_repo_files(self.repo_id, revision=self.revision)

    def _download(self, filenames: list[str]) -> Path:
        """Download those of `filenames` that exist in the commit (resuming partial files); the snapshot folder."""
        with _hub_errors(self.reference):
            folder = snapshot_download(
                self.repo_id, revision=self.revision, allow_patterns=filenames, token=self._token
            )
        return Path(folder)

    def __repr__(self) -> str:
        return f"HubSource({self.reference!r}, revision={self.revision[:7]!r})"


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | bool | None = None,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload every file of `folder` (weights, config, tokenizer, README.md, soup.yaml) in one commit.

    The repository is created if it does not exist (an existing one keeps its visibility), and so is the
    branch `revision`, starting from the default branch.

    Args:
        folder: the folder to upload.
        repo_id: `user/name` of the target repository.
        token: a token with write access; `None` for the saved login or `HF_TOKEN`.
        private: create the repository as private.
        revision: the branch to commit to; the default branch if `None`.
        commit_message: the commit's title.

    Returns:
        The URL of the commit (a `huggingface_hub.CommitInfo`, whose `.oid` is the commit sha).

    Raises:
        `HubAuthError`: no token, or a token without write access to the namespace.
        `HubUnreachableError`: the Hub cannot be reached.

    Example:
        ```python
        >>> url = push_folder(Path("soups/mrpc"), "alice/bert-mrpc-soup", private=True)
        >>> url.oid
        'a8b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5'
        ```
    """
    api = HfApi(token=token)
    with _hub_errors(repo_id if revision is None else f"{repo_id}@{revision}"):
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            revision=revision,
            commit_message=commit_message or f"Upload {Path(folder).name} with hfsoup",
        )
    logger.info("Pushed %s to %s", folder, commit.commit_url)
    return commit
