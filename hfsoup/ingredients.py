"""An ingredient of a soup: a model folder or Hub repository whose tensors are read one at a time.

An [`Ingredient`] wraps an [`IngredientSource`] (a [`LocalSource`] folder here, a `hub.HubSource` for
`user/name@revision`), loads its config eagerly and everything else on demand: the tensors' names, dtypes
and shapes come from the safetensors headers alone, and [`Ingredient.tensors`] memory-maps the weight files
with `safetensors.safe_open` and yields one tensor at a time, so a soup never holds a whole state dict.
Pickle checkpoints (`*.bin`, `*.pt`, `*.pth`, `*.ckpt`) are refused, never unpickled.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig
from transformers.models.auto.modeling_auto import MODEL_MAPPING

from .errors import IngredientNotFoundError, UnsafeWeightsError

__all__ = [
    "Ingredient",
    "IngredientSource",
    "LocalSource",
    "TensorInfo",
    "load_ingredient",
    "load_ingredients",
    "read_tensor_infos",
]

logger = logging.getLogger(__name__)

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)
# safetensors itself refuses headers above 100 MB; a larger length prefix means the file is not safetensors.
MAX_HEADER_BYTES = 100_000_000


@dataclass(frozen=True)
class TensorInfo:
    """The dtype and shape of one stored tensor, as its safetensors header declares them.

    Args:
        dtype: the safetensors dtype string: `"F32"`, `"BF16"`, `"F16"`, `"I64"`, ...
        shape: the tensor's shape.
    """

    dtype: str
    shape: tuple[int, ...]

    @property
    def is_float(self) -> bool:
        """Whether the tensor holds floating-point numbers (the ones a soup averages)."""
        return self.dtype.startswith(("F", "BF"))


@runtime_checkable
class IngredientSource(Protocol):
    """Where an ingredient's files come from: a local folder or a Hub repository at a resolved revision.

    Attributes:
        reference: the reference as the user wrote it.
        revision: the resolved commit sha for Hub sources, `None` for local folders.
    """

    reference: str
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


def read_tensor_infos(path: Path) -> dict[str, TensorInfo]:
    """Read the dtypes and shapes in a safetensors file's header, without touching its tensor data.

    A safetensors file starts with the header's length (8 bytes, little-endian) and the header, a JSON
    object mapping each tensor name to its dtype, shape and byte offsets; only these bytes are read.

    Args:
        path: a `*.safetensors` file.

    Returns:
        Tensor name -> [`TensorInfo`], in the header's order.

    Raises:
        `UnsafeWeightsError`: the file is not a safetensors file.

    Example:
        ```python
        >>> infos = read_tensor_infos(Path("my-model/model.safetensors"))
        >>> infos["classifier.weight"]
        TensorInfo(dtype='F32', shape=(2, 768))
        ```
    """
    with open(path, "rb") as file:
        prefix = file.read(8)
        length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else 0
        if not 0 < length <= MAX_HEADER_BYTES:
            raise UnsafeWeightsError(
                f"{path} is not a valid safetensors file (bad header length); re-save the model with "
                "`model.save_pretrained(folder)`."
            )
        header = json.loads(file.read(length))
    return {
        name: TensorInfo(dtype=entry["dtype"], shape=tuple(entry["shape"]))
        for name, entry in header.items()
        if name != "__metadata__"
    }


class LocalSource:
    """A model folder on disk, as written by `model.save_pretrained(folder)` and `tokenizer.save_pretrained`.

    The weights are `model.safetensors`, or shards listed in `model.safetensors.index.json`.

    Args:
        folder: the model folder.

    Raises:
        `IngredientNotFoundError`: the folder does not exist, has no `config.json` or no weights.
        `UnsafeWeightsError`: the folder holds only pickle weights (`*.bin`, `*.pt`, `*.pth`, `*.ckpt`).

    Example:
        ```python
        >>> source = LocalSource("runs/mrpc-seed1")
        >>> sorted(source.tensor_infos())[:1]
        ['bert.embeddings.LayerNorm.bias']
        ```
    """

    def __init__(self, folder: str | Path):
        self.reference = str(folder)
        self.revision: str | None = None
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise IngredientNotFoundError(
                f"No model folder at {self.reference}: give the path of a folder written by "
                "`model.save_pretrained(...)`, or a Hub repository id such as 'user/name'.",
                reference=self.reference,
            )
        if not (self.folder / "config.json").is_file():
            raise IngredientNotFoundError(
                f"{self.reference} has no config.json, so it is not a Hugging Face model folder; save the "
                "model with `model.save_pretrained(folder)` and point hfsoup at that folder.",
                reference=self.reference,
            )
        self._weight_files = self._find_weight_files()

    def _find_weight_files(self) -> list[Path]:
        index = self.folder / SAFE_WEIGHTS_INDEX_NAME
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            missing = [shard for shard in shards if not (self.folder / shard).is_file()]
            if missing:
                raise IngredientNotFoundError(
                    f"{self.reference}: {SAFE_WEIGHTS_INDEX_NAME} lists {len(missing)} missing shard(s) "
                    f"({', '.join(missing[:3])}); copy the complete model folder.",
                    reference=self.reference,
                )
            return [self.folder / shard for shard in shards]
        if (self.folder / SAFE_WEIGHTS_NAME).is_file():
            return [self.folder / SAFE_WEIGHTS_NAME]
        pickles = sorted(p.name for p in self.folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise UnsafeWeightsError(
                f"{self.reference} has only pickle weights ({', '.join(pickles[:3])}), which hfsoup refuses "
                "to load because unpickling can run arbitrary code; in an environment you trust, load the "
                "model with transformers and re-save it as safetensors with `model.save_pretrained(folder)` "
                "(`safe_serialization=True` before transformers 5).",
                reference=self.reference,
            )
        raise IngredientNotFoundError(
            f"{self.reference} has no weights ({SAFE_WEIGHTS_NAME} or {SAFE_WEIGHTS_INDEX_NAME}); save the "
            "model with `model.save_pretrained(folder)`.",
            reference=self.reference,
        )

    def metadata_dir(self) -> Path:
        return self.folder

    def tensor_infos(self) -> dict[str, TensorInfo]:
        infos: dict[str, TensorInfo] = {}
        for path in self._weight_files:
            infos.update(read_tensor_infos(path))
        return infos

    def weight_files(self) -> list[Path]:
        return list(self._weight_files)

    def __repr__(self) -> str:
        return f"LocalSource({self.reference!r})"


class Ingredient:
    """One model to put in a soup: its config, tokenizer and lazily read tensors.

    Args:
        source: where the files come from.
        name: a short display name; defaults to the source's reference.

    Attributes:
        config: the model's `PretrainedConfig` (never remote code).
        label_permutation: set by `compat.check_compatibility` when this ingredient lists the same labels
            as the first ingredient in another order: row `i` of each classifier output tensor is then read
            from stored row `label_permutation[i]`, so every ingredient speaks the first one's label ids.

    Example:
        ```python
        >>> ingredient = load_ingredient("runs/mrpc-seed1")
        >>> for name, tensor in ingredient.tensors(["classifier.weight", "classifier.bias"]):
        ...     print(name, tuple(tensor.shape))
        classifier.weight (2, 768)
        classifier.bias (2,)
        ```
    """

    def __init__(self, source: IngredientSource, name: str | None = None):
        self.source = source
        self.name = name or source.reference
        self.config: PretrainedConfig = AutoConfig.from_pretrained(
            source.metadata_dir(), trust_remote_code=False
        )
        self.label_permutation: list[int] | None = None

    @property
    def reference(self) -> str:
        return self.source.reference

    @property
    def revision(self) -> str | None:
        return self.source.revision

    @cached_property
    def tensor_infos(self) -> dict[str, TensorInfo]:
        """Every tensor's dtype and shape, from the safetensors headers (cached; no weight is read)."""
        return self.source.tensor_infos()

    @cached_property
    def base_model_prefix(self) -> str | None:
        """The name under which the model's backbone is stored (`"bert"`, `"roberta"`), or `None` if unknown.

        Tensors outside `"{prefix}."` form the task head; a checkpoint of a bare backbone (no tensor under
        the prefix) has no head.
        """
        try:
            prefix = MODEL_MAPPING[type(self.config)].base_model_prefix
        except KeyError:
            return None
        return prefix if any(name.startswith(f"{prefix}.") for name in self.tensor_infos) else None

    @cached_property
    def head_tensor_names(self) -> frozenset[str]:
        """The task head's tensors (new at fine-tuning time, so left out of distances between bases)."""
        if self.base_model_prefix is None:
            return frozenset()
        return frozenset(n for n in self.tensor_infos if not n.startswith(f"{self.base_model_prefix}."))

    @cached_property
    def body_tensor_names(self) -> dict[str, str]:
        """The backbone's tensors: name without the backbone prefix -> stored name.

        The key lets a fine-tuned `bert.encoder...` tensor meet the `encoder...` tensor of a bare base model.
        """
        strip = len(self.base_model_prefix) + 1 if self.base_model_prefix else 0
        return {n[strip:]: n for n in self.tensor_infos if n not in self.head_tensor_names}

    @cached_property
    def label_tensor_names(self) -> tuple[str, ...]:
        """The classifier output layer's tensors: head tensors of shape `[num_labels, ...]` (1-D or 2-D).

        For BERT `classifier.weight` and `classifier.bias`, for RoBERTa `classifier.out_proj.*`.
        """
        rows = self.config.num_labels
        return tuple(
            name
            for name in sorted(self.head_tensor_names)
            if len(self.tensor_infos[name].shape) in (1, 2) and self.tensor_infos[name].shape[0] == rows
        )

    @property
    def has_tokenizer(self) -> bool:
        """Whether the ingredient ships tokenizer files."""
        folder = self.source.metadata_dir()
        return any((folder / file).is_file() for file in TOKENIZER_FILES)

    def tokenizer(self):
        """Load the ingredient's tokenizer with `AutoTokenizer` (never remote code).

        Raises:
            `IngredientNotFoundError`: the ingredient has no tokenizer files.
        """
        if not self.has_tokenizer:
            raise IngredientNotFoundError(
                f"{self.name} has no tokenizer files; save one next to the weights with "
                "`tokenizer.save_pretrained(folder)`, or take the tokenizer from another ingredient.",
                reference=self.reference,
            )
        return AutoTokenizer.from_pretrained(self.source.metadata_dir(), trust_remote_code=False)

    @cached_property
    def _file_of(self) -> dict[str, Path]:
        located: dict[str, Path] = {}
        for path in self.source.weight_files():
            with safe_open(path, framework="pt") as handle:
                located.update(dict.fromkeys(handle.keys(), path))
        return located

    def tensors(self, names: Iterable[str] | None = None) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield `(name, tensor)` one tensor at a time, in the order of `names`.

        The weight files are memory-mapped with `safe_open` (each opened once per call, shards included)
        and each tensor is materialised only when it is yielded. Classifier rows are permuted when
        `label_permutation` is set.

        Args:
            names: the tensors to read; all of them, in header order, if `None`.

        Returns:
            An iterator of `(name, tensor)` pairs, tensors in their stored dtype on the CPU.

        Raises:
            `KeyError`: a name is not a tensor of this ingredient.
        """
        names = list(self.tensor_infos) if names is None else list(names)
        unknown = [name for name in names if name not in self._file_of]
        if unknown:
            raise KeyError(f"{self.name} has no tensor named {unknown[0]!r} ({len(unknown)} unknown names)")
        return self._read(names)

    def _read(self, names: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
        permuted = set(self.label_tensor_names) if self.label_permutation is not None else set()
        with ExitStack() as stack:
            handles = {}
            for name in names:
                path = self._file_of[name]
                if path not in handles:
                    handles[path] = stack.enter_context(safe_open(path, framework="pt"))
                tensor = handles[path].get_tensor(name)
                if name in permuted:
                    tensor = tensor[self.label_permutation]
                yield name, tensor

    def tensor(self, name: str) -> torch.Tensor:
        """Read one tensor (label alignment applied); see [`Ingredient.tensors`]."""
        return next(self.tensors([name]))[1]

    def __repr__(self) -> str:
        revision = f"@{self.revision[:7]}" if self.revision else ""
        return f"Ingredient({self.name}{revision})"


def _is_path_like(reference: str) -> bool:
    """Whether `reference` can only mean a local path (absolute, `./`, `../` or `~`), never a repo id."""
    return Path(reference).is_absolute() or reference.startswith((".", "~"))


def load_ingredient(reference: str, *, token: str | bool | None = None) -> Ingredient:
    """Open an ingredient from a local model folder or a Hub reference `user/name[@revision]`.

    An existing local path always wins; anything else that looks like a repository id is resolved on the Hub
    (one API call, no weight download).

    Args:
        reference: a folder path, or `user/name`, or `user/name@revision` (branch, tag or commit).
        token: a Hub token for private or gated repositories (`None` uses the saved login).

    Returns:
        The [`Ingredient`], named after its folder or repository.

    Raises:
        `IngredientNotFoundError`: no such folder and no such repository, or a folder without `config.json`.
        `UnsafeWeightsError`: the weights exist only as pickle files.

    Example:
        ```python
        >>> load_ingredient("runs/mrpc-seed1").name
        'mrpc-seed1'
        ```
    """
    path = Path(reference).expanduser()
    if path.exists() or _is_path_like(reference):
        return Ingredient(LocalSource(reference), name=path.resolve().name)
    from .hub import HubSource, is_repo_reference, parse_reference

    if not is_repo_reference(reference):
        raise IngredientNotFoundError(
            f"{reference!r} is neither a local model folder nor a Hub repository id such as 'user/name' "
            "or 'user/name@revision'.",
            reference=reference,
        )
    repo_id, revision = parse_reference(reference)
    return Ingredient(HubSource(repo_id, revision, token=token), name=repo_id)


def load_ingredients(references: Sequence[str], *, token: str | bool | None = None) -> list[Ingredient]:
    """Open several ingredients with [`load_ingredient`]; clashing short names fall back to the references.

    Example:
        ```python
        >>> [i.name for i in load_ingredients(["/runs/a/ckpt", "/runs/b/ckpt"])]
        ['a/ckpt', 'b/ckpt']
        ```
    """
    ingredients = [load_ingredient(reference, token=token) for reference in references]
    names = [ingredient.name for ingredient in ingredients]
    for ingredient in ingredients:
        if names.count(ingredient.name) > 1:
            ingredient.name = _shortest_unique_suffix(
                ingredient.reference, [i.reference for i in ingredients]
            )
    logger.info("Loaded %d ingredients: %s", len(ingredients), ", ".join(i.name for i in ingredients))
    return ingredients


def _shortest_unique_suffix(reference: str, references: list[str]) -> str:
    """The fewest trailing path parts of `reference` that no other reference ends with (`run-1/raw`)."""
    parts = Path(reference).parts
    for count in range(2, len(parts) + 1):
        suffix = Path(*parts[-count:])
        if sum(Path(*Path(r).parts[-count:]) == suffix for r in references) == 1:
            return suffix.as_posix()
    return reference
