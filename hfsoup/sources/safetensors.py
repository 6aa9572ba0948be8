"""Safetensors weight files: which files hold a model's weights, and their tensors' dtypes and shapes.

One rule for local folders and Hub repositories alike, [`select_weight_files`], follows the order of
`transformers`' `from_pretrained` exactly: an explicit `transformers_weights` file named in `config.json`,
else `model.safetensors`, else the shards listed in `model.safetensors.index.json`, so hfsoup reads the very
tensors `from_pretrained` would load. A weight path that leaves the model folder (`../x.safetensors`, an
absolute path) is refused. Pickle weights (`*.bin`, `*.pt`, ...) are refused, never unpickled.

Headers are read with the `safetensors` library itself ([`read_tensor_infos`]); no tensor data is read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import IngredientNotFoundError, UnsafeWeightsError, first_line

__all__ = [
    "PICKLE_SUFFIXES",
    "SAFE_WEIGHTS_INDEX_NAME",
    "SAFE_WEIGHTS_NAME",
    "TensorInfo",
    "invalid_safetensors",
    "read_json_object",
    "read_tensor_infos",
    "safe_relative_path",
    "select_weight_files",
]

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


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


def invalid_safetensors(where: str, detail: str) -> UnsafeWeightsError:
    """The one-line error for a weight file at `where` that is not a valid safetensors file."""
    return UnsafeWeightsError(
        f"{where} is not a valid safetensors file ({detail}); it may be truncated or corrupt: copy or download "
        "it again, or re-save the model with `model.save_pretrained(folder)`.",
        reference=where,
    )


def read_tensor_infos(path: Path) -> dict[str, TensorInfo]:
    """The dtype and shape of every tensor of a safetensors file, from its header (no tensor data is read).

    The `safetensors` library checks the whole header on opening, including that the tensors cover the file
    exactly, so a truncated file is refused here, before any tensor is read.

    Args:
        path: a `*.safetensors` file.

    Returns:
        Tensor name -> [`TensorInfo`].

    Raises:
        `UnsafeWeightsError`: the file is truncated, corrupt or not a safetensors file; the message names it.

    Example:
        ```python
        >>> read_tensor_infos(Path("my-model/model.safetensors"))["classifier.weight"]
        TensorInfo(dtype='F32', shape=(2, 768))
        ```
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            infos = {}
            for name in handle.keys():  # noqa: SIM118 (a safe_open handle is not a mapping)
                view = handle.get_slice(name)
                infos[name] = TensorInfo(dtype=view.get_dtype(), shape=tuple(view.get_shape()))
            return infos
    except (SafetensorError, OSError) as error:
        raise invalid_safetensors(str(path), first_line(error)) from error


def read_json_object(path: Path, where: str) -> dict:
    """A JSON file that must hold an object (`config.json`, a shards index), or a one-line error naming it.

    Args:
        path: the file to read.
        where: how to name it in the message (the reference and the file's name in the model).

    Raises:
        `UnsafeWeightsError`: the file cannot be read, is not UTF-8 JSON, or holds something else than an object.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UnsafeWeightsError(
            f"{where} is not valid JSON ({type(error).__name__}: {first_line(error)}); copy or download the model "
            "again, or re-save it with `save_pretrained`.",
            reference=where,
        ) from error
    if not isinstance(data, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(data), "a number"
        )
        raise UnsafeWeightsError(
            f"{where} holds {kind}, not a JSON object; re-save the model with `save_pretrained`.",
            reference=where,
        )
    return data


def safe_relative_path(name: object, where: str) -> str:
    """`name` if it is a relative path that stays inside the model folder, else a one-line error.

    Raises:
        `UnsafeWeightsError`: `name` is not a string, is absolute, or climbs out with `..`.
    """
    path = PurePosixPath(name) if isinstance(name, str) else None
    if path is None or not name or path.is_absolute() or ".." in path.parts or "\\" in name or ":" in name:
        raise UnsafeWeightsError(
            f"{where} names the weight file {name!r}, which is outside the model folder; hfsoup only reads "
            "weight files inside the folder: fix the file, or re-save the model with `save_pretrained`.",
            reference=where,
        )
    return path.as_posix()


def select_weight_files(
    reference: str,
    has_file: Callable[[str], bool],
    top_level: Iterable[str],
    read_json: Callable[[str], dict],
    explicit: str | None = None,
) -> list[str]:
    """The weight files `from_pretrained` would load, in the same order of preference.

    The shard names listed in an index are relative to the model's top folder, wherever the index is, as
    `transformers` reads them.

    Args:
        reference: the model's reference, for messages.
        has_file: whether the folder or repository has a file at this relative posix path.
        top_level: the names of the files at its top level (to name pickle weights in the error).
        read_json: reads one of its files as a JSON object, raising a one-line `UnsafeWeightsError` naming it
            if it is not one (called for the shards index only).
        explicit: the `transformers_weights` entry of `config.json`, if any.

    Returns:
        The relative paths of the safetensors files to read.

    Raises:
        `UnsafeWeightsError`: a weight path leaves the folder, the index is broken, or only pickle weights exist.
        `IngredientNotFoundError`: no weights at all, or shards listed in the index are missing.
    """
    if explicit is not None:
        name = safe_relative_path(explicit, f"{reference}/config.json (transformers_weights)")
        if name.endswith(".safetensors.index.json"):
            return _shards(reference, has_file, read_json, name)
        if name.endswith(".safetensors") and has_file(name):
            return [name]
        raise IngredientNotFoundError(
            f"{reference}/config.json names the weights {explicit!r} (transformers_weights), which is not a "
            "safetensors file of the model: fix config.json or add the file.",
            reference=reference,
        )
    if has_file(SAFE_WEIGHTS_NAME):
        return [SAFE_WEIGHTS_NAME]
    if has_file(SAFE_WEIGHTS_INDEX_NAME):
        return _shards(reference, has_file, read_json, SAFE_WEIGHTS_INDEX_NAME)
    pickles = sorted(name for name in top_level if name.endswith(PICKLE_SUFFIXES))
    if pickles:
        raise UnsafeWeightsError(
            f"{reference} has only pickle weights ({', '.join(pickles[:3])}), which hfsoup refuses to load "
            "because unpickling can run arbitrary code; in an environment you trust, load the model with "
            "transformers and re-save it with `model.save_pretrained(folder)` (safetensors), or use a revision "
            "that has model.safetensors.",
            reference=reference,
        )
    raise IngredientNotFoundError(
        f"{reference} has no weights ({SAFE_WEIGHTS_NAME} or {SAFE_WEIGHTS_INDEX_NAME}); save the model with "
        "`model.save_pretrained(folder)` or push it with `model.push_to_hub(...)`.",
        reference=reference,
    )


def _shards(
    reference: str, has_file: Callable[[str], bool], read_json: Callable[[str], dict], index: str
) -> list[str]:
    where = f"{reference}/{index}"
    weight_map = read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise UnsafeWeightsError(
            f"{where} has no 'weight_map' object of tensor names to file names; re-save the model with "
            "`save_pretrained`.",
            reference=reference,
        )
    # transformers joins each shard name to the model's top folder, not to the index's own folder.
    shards = sorted({safe_relative_path(name, where) for name in weight_map.values()})
    if not shards:
        raise UnsafeWeightsError(
            f"{where} lists no weight files; re-save the model with `save_pretrained`.", reference=reference
        )
    others = [shard for shard in shards if not shard.endswith(".safetensors")]
    if others:
        raise UnsafeWeightsError(
            f"{where} lists weight files that are not safetensors ({', '.join(others[:3])}), which hfsoup "
            "refuses to load; re-save the model with `save_pretrained`.",
            reference=reference,
        )
    missing = [shard for shard in shards if not has_file(shard)]
    if missing:
        raise IngredientNotFoundError(
            f"{where} lists {len(missing)} missing shard(s) ({', '.join(missing[:3])}); copy or push the "
            "complete model.",
            reference=reference,
        )
    return shards
