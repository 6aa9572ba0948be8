"""Safetensors weight files: which files hold a model's weights, and their tensors' dtypes and shapes.

One rule for local folders and Hub repositories alike, [`select_weight_files`], follows the order of
`transformers`' `from_pretrained` exactly: an explicit `transformers_weights` file named in `config.json`,
else `model.safetensors`, else the shards listed in `model.safetensors.index.json`, so hfsoup reads the very
tensors `from_pretrained` would load. A weight path that leaves the model folder (`../x.safetensors`, an
absolute path) is refused. Pickle weights (`*.bin`, `*.pt`, ...) are refused, never unpickled.

Headers are read with the `safetensors` library itself ([`read_tensor_infos`]); no tensor data is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import IngredientNotFoundError, UnsafeWeightsError, first_line

__all__ = [
    "PICKLE_SUFFIXES",
    "SAFE_WEIGHTS_INDEX_NAME",
    "SAFE_WEIGHTS_NAME",
    "TensorInfo",
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


def read_tensor_infos(path: Path) -> dict[str, TensorInfo]:
    """The dtype and shape of every tensor of a safetensors file, from its header (no tensor data is read).

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
        raise UnsafeWeightsError(
            f"{path} is not a valid safetensors file ({first_line(error)}); it may be truncated or "
            "corrupt: copy or download it again, or re-save the model with `model.save_pretrained(folder)`.",
            reference=str(path),
        ) from error


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
    read_json: Callable[[str], object],
    explicit: str | None = None,
) -> list[str]:
    """The weight files `from_pretrained` would load, in the same order of preference.

    Args:
        reference: the model's reference, for messages.
        has_file: whether the folder or repository has a file at this relative posix path.
        top_level: the names of the files at its top level (to name pickle weights in the error).
        read_json: reads one of its files as JSON (called for the shards index only).
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
    reference: str, has_file: Callable[[str], bool], read_json: Callable[[str], object], index: str
) -> list[str]:
    where = f"{reference}/{index}"
    try:
        weight_map = read_json(index)["weight_map"]  # type: ignore[index]
    except (ValueError, KeyError, TypeError) as error:
        raise UnsafeWeightsError(
            f"{where} is not a valid shards index (a JSON object with a 'weight_map' mapping); copy or "
            "download the model again, or re-save it with `save_pretrained`.",
            reference=reference,
        ) from error
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise UnsafeWeightsError(
            f"{where} has no 'weight_map' of tensor names to file names; re-save the model with "
            "`save_pretrained`.",
            reference=reference,
        )
    folder = PurePosixPath(index).parent
    shards = sorted({(folder / safe_relative_path(name, where)).as_posix() for name in weight_map.values()})
    if not all(shard.endswith(".safetensors") for shard in shards):
        raise UnsafeWeightsError(
            f"{where} lists weight files that are not safetensors ({shards[0]}, ...), which hfsoup refuses to "
            "load; re-save the model with `save_pretrained`.",
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
