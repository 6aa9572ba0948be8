"""Writing an output folder safely: checked before any work, written aside, swapped in whole.

A merge checks its output folder first ([`check_output`]), so a doomed run fails before it downloads or
computes anything; it writes into a hidden sibling folder, and [`staged`] moves that into place only when
everything succeeded. Replacing an existing folder moves the old one aside, renames the new one in, and
deletes the old one last, so an interrupt at any instant leaves the old folder or the new one whole (the old
one is put back if the swap is interrupted; an interrupt while it is deleted leaves the new folder in place
and the old one as a hidden `.NAME.old-*` sibling, named in a warning). Nothing outside the staging folder
and the target is touched.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import InvalidSettingError, OutputExistsError

__all__ = ["check_output", "check_writable", "refuse_containing", "staged"]

logger = logging.getLogger(__name__)


def _contains(folder: Path, path: Path) -> bool:
    return path == folder or folder in path.parents


def check_output(output: str | os.PathLike, *, overwrite: bool) -> Path:
    """Check that `output` can be written, before any work: the folder to create or replace.

    Raises:
        `OutputExistsError`: `output` exists and `overwrite` is false.
        `InvalidSettingError`: `output` is a file, or holds the working folder, or its parent is not writable.
    """
    path = Path(output).expanduser()
    resolved = path.resolve()
    if path.exists() and not path.is_dir():
        raise InvalidSettingError(
            f"output {path} is a file, not a folder; choose a folder path for --output-dir."
        )
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"output folder {path} exists; pass --overwrite to replace it, or choose another."
        )
    if path.exists() and _contains(resolved, Path.cwd().resolve()):
        raise InvalidSettingError(
            f"output {path} is the working folder or holds it, so --overwrite would delete it; choose a new "
            "folder for the soup."
        )
    check_writable(path)
    return path


def check_writable(path: Path, *, into: bool = False) -> None:
    """Check that `path` can be created: the nearest existing folder above it is writable.

    Args:
        into: `path` may exist already and is written into (a sweep's runs folder): start from it, not its parent.

    Raises:
        `InvalidSettingError`: that ancestor is a file, or not writable.
    """
    resolved = path.expanduser().resolve()
    ancestor = resolved if into else resolved.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise InvalidSettingError(
            f"cannot create {path}: {ancestor} is not a writable folder; choose an --output-dir you can write to."
        )


def refuse_containing(output: Path, inputs: Iterable[Path], what: str) -> None:
    """Refuse an output folder that is, or holds, one of the `inputs` (which a replace would delete).

    Raises:
        `InvalidSettingError`: naming the input.
    """
    resolved = output.expanduser().resolve()
    for item in inputs:
        if _contains(resolved, Path(item).expanduser().resolve()):
            raise InvalidSettingError(
                f"output {output} holds the {what} {item}, which writing the soup there would destroy; choose "
                "another --output-dir."
            )


def _unique_sibling(path: Path, tag: str) -> Path:
    return path.parent / f".{path.name}.{tag}-{uuid.uuid4().hex[:8]}"


@contextmanager
def staged(output: Path, *, overwrite: bool) -> Iterator[Path]:
    """Yield a hidden sibling folder to write into; move it to `output` only if the block succeeded.

    The folder is created like any other (the umask applies). On failure or interrupt it is deleted and
    `output` is left as it was.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = _unique_sibling(output, "partial")
    try:  # created inside the `try`: an interrupt right after `mkdir` still removes it
        staging.mkdir()
        yield staging
        if output.exists():
            if not overwrite:
                raise OutputExistsError(
                    f"output folder {output} appeared while the soup was made; it was left alone."
                )
            _swap(staging, output)
        else:
            staging.rename(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap(new: Path, output: Path) -> None:
    """Replace `output` by `new`: old aside, new in, old deleted; the old one comes back if interrupted."""
    old = _unique_sibling(output, "old")
    try:
        output.rename(old)
        new.rename(output)
        shutil.rmtree(old)
    except BaseException as error:
        if old.exists() and not output.exists():  # interrupted between the renames: put the old one back
            old.rename(output)
        elif old.exists():
            logger.warning(
                "%s holds the new folder; the one it replaced is left at %s: delete it.", output, old
            )
            if isinstance(error, OSError):  # the new folder is in place: a failed delete is no failure
                return
        raise
