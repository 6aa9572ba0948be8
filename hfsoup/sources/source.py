"""Open any model reference as a source of files: a local folder, a folder in a package, or a Hub repository."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from ..errors import HubError, IngredientNotFoundError
from .local import LocalSource
from .reference import PACKAGE_PREFIX, is_path_like, is_repo_reference, package_folder, parse_reference
from .safetensors import TensorInfo

__all__ = ["IngredientSource", "model_folder", "open_source"]


@runtime_checkable
class IngredientSource(Protocol):
    """Where a model's files come from: a local folder or a Hub repository at a resolved revision.

    Attributes:
        reference: the reference as the user wrote it.
        repo_id: the Hub repository, `None` for a local folder.
        revision: the resolved commit sha for Hub sources, `None` for local folders.
    """

    reference: str
    repo_id: str | None
    revision: str | None

    def metadata_dir(self) -> Path:
        """The local folder holding `config.json` and the tokenizer files."""
        ...

    def tensor_infos(self) -> dict[str, TensorInfo]:
        """Every tensor's dtype and shape, read without reading any weight."""
        ...

    def weight_files(self) -> list[Path]:
        """The local `*.safetensors` files (a Hub source downloads them on the first call)."""
        ...


def open_source(reference: str, *, token: str | bool | None = None) -> IngredientSource:
    """The source a reference names: an existing path or `package:NAME/PATH` is local, `user/name[@rev]` the Hub.

    An existing local path always wins. A Hub reference is resolved to a commit (one API call, no download).

    Args:
        reference: a folder, `package:NAME/PATH`, `user/name` or `user/name@revision`.
        token: a Hub token for private or gated repositories (`None` uses the saved login).

    Raises:
        `IngredientNotFoundError`: no such folder and no such repository; the message says which was tried.
        `UnsafeWeightsError`: the weights exist only as pickle files, or a weight path leaves the folder.
        `HubError`: the Hub refused or could not be reached for a reference that can only be a repository.

    Example:
        ```python
        >>> open_source("runs/mrpc-seed1")
        LocalSource('runs/mrpc-seed1')
        ```
    """
    if reference.startswith(PACKAGE_PREFIX):
        return LocalSource(package_folder(reference), reference)
    path = Path(reference).expanduser()
    if path.exists() or is_path_like(reference):
        return LocalSource(path, reference)
    if not is_repo_reference(reference):
        raise IngredientNotFoundError(
            f"{reference!r} is neither a local model folder nor a Hub repository id such as 'user/name' "
            "or 'user/name@revision'.",
            reference=reference,
        )
    from .hub import HubSource

    repo_id, revision = parse_reference(reference)
    try:
        return HubSource(repo_id, revision, token=token)
    except HubError as error:
        if reference.count("/") == 1 and "@" not in reference:  # could have been meant as a folder
            raise type(error)(
                f"{reference} is not a folder here ({Path.cwd()}), and as a Hub repository: {error}",
                repo_id=repo_id,
            ) from error
        raise


def model_folder(reference: str, *, token: str | bool | None = None) -> Path:
    """A local model folder for `reference`, downloading a Hub repository's safetensors weights if needed.

    This is how a base model for fine-tuning is fetched: only config, tokenizer and safetensors files, never
    pickles or code.

    Raises:
        See [`open_source`].
    """
    source = open_source(reference, token=token)
    return source.folder if isinstance(source, LocalSource) else source.snapshot()
