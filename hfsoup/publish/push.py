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

__all__ = ["push_soup", "soup_folder"]


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


def _refuse_changed_weights(folder: Path) -> None:
    """Refuse a soup whose weights differ from those its card and soup.yaml were written for."""
    recorded = load_soup_yaml(folder / "soup.yaml").get("weights_hash")
    if recorded and LocalSource(folder).content_hash != recorded:
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

    Raises:
        IngredientNotFoundError: `folder` is not a folder.
        RecipeError: `folder` has no `soup.yaml`, so `hfsoup merge` did not write it.
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
    _refuse_changed_weights(Path(folder))
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
