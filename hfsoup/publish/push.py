"""Publishing a result: the folder a merge writes before a push, and the push of a finished soup folder."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import HubError, IngredientNotFoundError, InvalidSettingError, RecipeError
from ..recipe.merge import load_soup_yaml
from ..sources import LocalSource, push_folder
from ..sources.push import NEVER_UPLOADED
from ..sources.safetensors import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

__all__ = ["push_soup", "soup_folder"]

# The files `hfsoup merge` writes besides the weights: the model's config, the card and soup.yaml, and what
# `tokenizer.save_pretrained` writes for any tokenizer of transformers (the names of its `vocab_files_names`).
MERGE_FILES = frozenset(
    {
        *("config.json", "generation_config.json", "README.md", "soup.yaml"),
        *("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"),
        *("chat_template.jinja", "chat_template.json", "vocab.txt", "vocab.json", "merges.txt", "dict.txt"),
        *("tokenizer.model", "spiece.model", "sentencepiece.model", "sentencepiece.bpe.model", "spm.model"),
        *("spm_char.model", "source.spm", "target.spm", "bpe.codes", "prophetnet.tokenizer", "emoji.json"),
        *("entity_vocab.json", "normalizer.json", "vocab-src.json", "vocab-tgt.json", "target_vocab.json"),
        *("byte_maps.json", "word_shape.json", "word_pronunciation.json"),
    }
)
# The one subfolder a merge may write: the named chat templates of the tokenizer.
MERGE_PATTERNS = ["additional_chat_templates/*.jinja"]


@contextmanager
def soup_folder(output_dir: str | Path | None, *, push: bool) -> Iterator[Path | None]:
    """The folder a merge writes its soup to: `output_dir`, or for a push without one a scratch folder.

    The scratch folder is removed on the way out, unless it holds a complete soup and a Hub error ends the
    block (the push failed): that error names the folder, for `hfsoup push`, so it is kept.

    Args:
        output_dir: the folder asked for, or `None`.
        push: whether the soup will be pushed (with `output_dir` `None`, a scratch folder is made for it).

    Yields:
        The soup's folder, or `None` when nothing is to be written.
    """
    if output_dir is not None or not push:
        yield Path(output_dir) if output_dir is not None else None
        return
    scratch = Path(tempfile.mkdtemp(prefix="hfsoup-"))
    keep = False
    try:
        yield scratch / "soup"
    except HubError:
        keep = (scratch / "soup" / "soup.yaml").is_file()  # the soup is complete: the push failed
        raise
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)


def _refuse_extra_files(source: LocalSource, repo_id: str) -> None:
    """Refuse a soup folder holding files a merge does not write (a nested model, data, notes) that would go too.

    Files the push never uploads (hidden files, code) are not counted; each other file must be one of the
    weight files the soup loads (with their index), one of `MERGE_FILES`, or match `MERGE_PATTERNS`. The
    message names up to 3 entries of the folder (a subfolder once, with its count of files), then counts the rest.
    """
    from huggingface_hub.utils import filter_repo_objects

    folder = source.folder
    names = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    weights = [path.name for path in source.weight_files()]
    index = [SAFE_WEIGHTS_INDEX_NAME] if weights != [SAFE_WEIGHTS_NAME] else []  # the index of shards
    written = MERGE_FILES | {*weights, *index}
    written |= set(filter_repo_objects(names, allow_patterns=MERGE_PATTERNS))
    extra = [
        name for name in filter_repo_objects(names, ignore_patterns=NEVER_UPLOADED) if name not in written
    ]
    if not extra:
        return
    entries: dict[str, int] = {}  # each top entry of the folder, with its count of extra files
    for name in extra:
        top = name.split("/")[0] + ("/" if "/" in name else "")
        entries[top] = entries.get(top, 0) + 1
    shown = [
        f"{top} ({count} file{'s' * (count > 1)})" if top.endswith("/") else top
        for top, count in entries.items()
    ]
    listed = ", ".join(shown[:3]) + (f" and {len(shown) - 3} more" if len(shown) > 3 else "")
    raise InvalidSettingError(
        f"{folder} holds files that hfsoup merge did not write, which the push would upload too: {listed}; "
        f"move them out of {folder} and push again (add any that belong in the repository afterwards with "
        f"`hf upload {repo_id} PATH`)."
    )


def _refuse_changed_weights(source: LocalSource) -> None:
    """Refuse a soup whose weights differ from those its card and soup.yaml were written for."""
    folder = source.folder
    recorded = load_soup_yaml(folder / "soup.yaml").get("weights_hash")
    if recorded and source.content_hash != recorded:
        raise InvalidSettingError(
            f"the weights in {folder} changed after hfsoup merge wrote its card (soup.yaml records {recorded[:15]}...), "
            "so the card's scores would describe other weights: merge again, or restore the weights."
        )


def push_soup(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | bool | None = None,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Push a soup folder written by `hfsoup merge` to `repo_id` in one commit; returns the commit's URL.

    Only what a merge writes is pushed: a folder that also holds other files (a nested model folder, data,
    notes) is refused, naming them, so that nothing goes to the Hub unseen.

    Args:
        folder: the `--output-dir` of an `hfsoup merge`.
        repo_id: `user/name` of the target repository.
        token: a token with write access; `None` for the saved login or `HF_TOKEN`.
        private: create the repository as private.
        revision: the branch to commit to; the default branch if `None`.
        commit_message: the commit's title.

    Returns:
        The URL of the commit.

    Raises:
        IngredientNotFoundError: `folder` is not a folder, or not a complete model folder.
        RecipeError: `folder` has no `soup.yaml`, so `hfsoup merge` did not write it.
        InvalidSettingError: `folder` holds files a merge does not write, or its weights changed after the merge.
        UnsafeWeightsError: `folder` holds pickle files or links to files outside it.
        HubError: the push failed; the message says how to retry it.
    """
    if not Path(folder).is_dir():
        raise IngredientNotFoundError(
            f"No soup folder at {folder}: give the --output-dir of an `hfsoup merge`.", reference=str(folder)
        )
    if not (Path(folder) / "soup.yaml").is_file():
        raise RecipeError(
            f"{folder} has no soup.yaml, so it was not written by `hfsoup merge`; hfsoup pushes only soups "
            "(use `hf upload` for other folders)."
        )
    source = LocalSource(folder)
    _refuse_extra_files(source, repo_id)
    _refuse_changed_weights(source)
    try:
        commit = push_folder(
            folder, repo_id, token=token, private=private, revision=revision, commit_message=commit_message
        )
    except HubError as error:
        raise HubError(
            f"{error} The soup is complete in {folder}: retry with `hfsoup push {folder} {repo_id}`.",
            repo_id=repo_id,
        ) from error
    return commit.commit_url
