"""A model folder on disk, as written by `model.save_pretrained(folder)` and `tokenizer.save_pretrained`."""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path

from ..errors import IngredientNotFoundError
from .safetensors import TensorInfo, read_json_object, read_tensor_infos, select_weight_files

__all__ = ["LocalSource"]

_HASH_BLOCK = 8 * 2**20


class LocalSource:
    """A model folder on disk; its weights are the safetensors files `from_pretrained` would load.

    Args:
        folder: the model folder.
        reference: the reference as the user wrote it (defaults to `folder`).

    Raises:
        `IngredientNotFoundError`: the folder does not exist, has no `config.json` or no weights.
        `UnsafeWeightsError`: the folder holds only pickle weights, names weights outside itself, or its
            `config.json` or shards index is not a JSON object.

    Example:
        ```python
        >>> source = LocalSource("runs/mrpc-seed1")
        >>> sorted(source.tensor_infos())[:1]
        ['bert.embeddings.LayerNorm.bias']
        ```
    """

    repo_id: str | None = None

    def __init__(self, folder: str | Path, reference: str | None = None):
        self.reference = reference or str(folder)
        self.revision: str | None = None
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            kind = "a file" if self.folder.exists() else "nothing"
            raise IngredientNotFoundError(
                f"No model folder at {self.reference} (there is {kind} at {self.folder.resolve()}): give the path "
                "of a folder written by `model.save_pretrained(...)`, or a Hub repository id such as 'user/name'.",
                reference=self.reference,
            )
        config = self.folder / "config.json"
        if not config.is_file():
            raise IngredientNotFoundError(
                f"{self.reference} has no config.json, so it is not a Hugging Face model folder; save the "
                "model with `model.save_pretrained(folder)` and point hfsoup at that folder.",
                reference=self.reference,
            )
        explicit = self._read_json("config.json").get("transformers_weights")
        self._weight_names = select_weight_files(
            self.reference,
            lambda name: (self.folder / name).is_file(),
            [path.name for path in self.folder.iterdir() if path.is_file()],
            self._read_json,
            explicit,
        )

    def _read_json(self, name: str) -> dict:
        return read_json_object(self.folder / name, str(self.folder / name))

    def metadata_dir(self) -> Path:
        return self.folder

    def tensor_infos(self) -> dict[str, TensorInfo]:
        infos: dict[str, TensorInfo] = {}
        for path in self.weight_files():
            infos.update(read_tensor_infos(path))
        return infos

    def weight_files(self) -> list[Path]:
        return [self.folder / name for name in self._weight_names]

    @cached_property
    def content_hash(self) -> str:
        """`sha256:` of the weight files' names and bytes: what a replay checks to notice changed weights."""
        digest = hashlib.sha256()
        for name, path in zip(self._weight_names, self.weight_files(), strict=True):
            digest.update(name.encode() + b"\0")
            with open(path, "rb") as file:
                while block := file.read(_HASH_BLOCK):
                    digest.update(block)
        return f"sha256:{digest.hexdigest()}"

    def __repr__(self) -> str:
        return f"LocalSource({self.reference!r})"
