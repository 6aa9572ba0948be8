"""An ingredient of a soup: a model whose config is read eagerly and whose tensors are read one at a time.

An [`Ingredient`] wraps an `IngredientSource` (a local folder or a Hub repository at a resolved commit): the
tensors' names, dtypes and shapes come from the safetensors headers alone, and [`Ingredient.tensors`]
memory-maps the weight files with `safetensors.safe_open` and yields one tensor at a time, so a soup never
holds a whole state dict. Pickle checkpoints are refused by the sources, never unpickled.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from functools import cached_property
from pathlib import Path

import torch
import yaml
from huggingface_hub.repocard import metadata_load
from safetensors import safe_open
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig
from transformers.models.auto.modeling_auto import MODEL_MAPPING

from ..errors import IngredientNotFoundError, UnsafeWeightsError, first_line
from ..sources import IngredientSource, TensorInfo, open_source, read_tensor_infos
from .heads import HEAD_LAYOUTS, HeadLayout

__all__ = ["Ingredient", "load_ingredient", "load_ingredients"]

logger = logging.getLogger(__name__)

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)


class Ingredient:
    """One model to put in a soup: its config, tokenizer and lazily read tensors.

    Args:
        source: where the files come from.
        name: a short display name; defaults to the source's reference.

    Attributes:
        config: the model's `PretrainedConfig` (never remote code).
        label_permutation: `None`, or the label order this ingredient is read in (see [`reordered`]).

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
        self.config: PretrainedConfig = self._load_config()
        self.label_permutation: list[int] | None = None

    def _load_config(self) -> PretrainedConfig:
        """The config, never with remote code; a one-line error naming `config.json` if transformers refuses it."""
        folder = self.source.metadata_dir()  # outside the `try`: its own errors are hfsoup's already
        try:
            return AutoConfig.from_pretrained(folder, trust_remote_code=False)
        except (OSError, ValueError, KeyError) as error:
            where = f"{self.reference}/config.json"
            model_type = self.config_file.get("model_type")
            if self.config_file.get("auto_map"):
                raise UnsafeWeightsError(
                    f"{where} declares custom code (auto_map) for model type {model_type!r}, which transformers "
                    "does not know; hfsoup never runs a model's code, so it cannot read this model.",
                    reference=self.reference,
                ) from error
            raise IngredientNotFoundError(
                f"{where} is not a config transformers can load (model type {model_type!r}: "
                f"{first_line(error).split('. ')[0]}); check the file, or upgrade transformers if the model type is new.",
                reference=self.reference,
            ) from error

    def reordered(self, permutation: list[int] | None) -> Ingredient:
        """The same ingredient, read with its classifier rows in another label order.

        Row `i` of each classifier output tensor is read from stored row `permutation[i]`; the compatibility
        report computes the permutations that give every ingredient one label order. `self` is unchanged.
        """
        if permutation is None or permutation == list(range(len(permutation))):
            return self
        twin = copy.copy(self)
        twin.label_permutation = list(permutation)
        return twin

    @property
    def reference(self) -> str:
        return self.source.reference

    @property
    def revision(self) -> str | None:
        return self.source.revision

    @property
    def identity(self) -> str:
        """What the weights are, however they were spelled: `repo@sha` on the Hub, the resolved folder here."""
        if self.source.repo_id is not None:
            return f"{self.source.repo_id}@{self.revision}"
        return str(self.source.metadata_dir().resolve())

    @cached_property
    def card_data(self) -> dict:
        """The metadata of the ingredient's model card (`README.md`), or `{}` without a readable one."""
        readme = self.source.metadata_dir() / "README.md"
        if not readme.is_file():
            return {}
        try:
            return metadata_load(readme) or {}
        except (ValueError, yaml.YAMLError):  # a broken model card says nothing
            return {}

    @cached_property
    def declared_bases(self) -> frozenset[str]:
        """The base models the ingredient names: its card's `base_model`, and a repo-like `_name_or_path`."""
        bases = set()
        origin = self.config_file.get("_name_or_path") or ""
        if (
            origin
            and not origin.startswith(("/", ".", "~"))
            and origin.count("/") <= 1
            and "\\" not in origin
        ):
            bases.add(origin)
        declared = self.card_data.get("base_model") or []
        bases.update([declared] if isinstance(declared, str) else [str(b) for b in declared])
        return frozenset(bases)

    @cached_property
    def config_file(self) -> dict:
        """`config.json` as stored (with fields such as `auto_map` that the loaded config may not keep)."""
        return json.loads((self.source.metadata_dir() / "config.json").read_text(encoding="utf-8"))

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
    def head_layout(self) -> HeadLayout | None:
        """The layout of the model family's classification head (see `HEAD_LAYOUTS`), or `None` if unknown."""
        return HEAD_LAYOUTS.get(self.config.model_type)

    @cached_property
    def label_tensor_names(self) -> tuple[str, ...]:
        """The tensors of the head's final projection, whose rows are the labels (`()` if it has none).

        For BERT `classifier.weight` and `classifier.bias`, for RoBERTa `classifier.out_proj.*`, for Llama
        `score.weight`; `()` for a model type whose head hfsoup does not know.
        """
        if self.head_layout is None:
            return ()
        output = self.head_layout.output
        return tuple(name for name in (f"{output}.bias", f"{output}.weight") if name in self.tensor_infos)

    @property
    def has_tokenizer(self) -> bool:
        """Whether the ingredient ships tokenizer files."""
        folder = self.source.metadata_dir()
        return any((folder / file).is_file() for file in TOKENIZER_FILES)

    def tokenizer(self):
        """The ingredient's tokenizer, loaded once with `AutoTokenizer` (never remote code).

        Raises:
            `IngredientNotFoundError`: the ingredient has no tokenizer files.
        """
        if not self.has_tokenizer:
            raise IngredientNotFoundError(
                f"{self.name} has no tokenizer files; save one next to the weights with "
                "`tokenizer.save_pretrained(folder)`, or take the tokenizer from another ingredient.",
                reference=self.reference,
            )
        return self._tokenizer

    @cached_property
    def _tokenizer(self):
        return AutoTokenizer.from_pretrained(self.source.metadata_dir(), trust_remote_code=False)

    @cached_property
    def _file_of(self) -> dict[str, Path]:
        located: dict[str, Path] = {}
        for path in self.source.weight_files():
            # The header check refuses a truncated or corrupt file here (a Hub ingredient's headers were
            # read over HTTP, which cannot tell), with one line naming it.
            located.update(dict.fromkeys(read_tensor_infos(path), path))
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
        `IngredientNotFoundError`: no such folder and no such repository, a folder without `config.json`, or a
            config transformers cannot load.
        `UnsafeWeightsError`: the weights exist only as pickle files, a weight path leaves the model, the config
            is not a JSON object, or it needs custom code.

    Example:
        ```python
        >>> load_ingredient("runs/mrpc-seed1").name
        'mrpc-seed1'
        ```
    """
    source = open_source(reference, token=token)
    if source.repo_id is not None:
        return Ingredient(source, name=source.repo_id)
    return Ingredient(source, name=source.metadata_dir().resolve().name)


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
