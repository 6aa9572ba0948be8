"""Precisions of a merge: the dtype scoring runs in, and the dtype the soup is saved in.

The soup itself is always averaged in float32 (see `hfsoup/soup/methods/`), in a float32 model. Scoring
may run in bfloat16 or float16 on a copy of that model ([`scoring_model`]), into which the Scorer copies the
float32 weights before each pass. The soup is saved by default in its ingredients' dtype ([`stored_dtype`]),
so bfloat16 ingredients give a bfloat16 soup of the same size.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch

__all__ = ["scoring_model", "stored_dtype", "torch_dtype"]

# safetensors dtype names of floating-point tensors; any other float format (e.g. float8) is saved as float32.
_STORED = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a name a recipe accepts (`float32`, `bfloat16`, `float16`)."""
    return getattr(torch, name)


def stored_dtype(names: Iterable[str]) -> torch.dtype:
    """The dtype that holds every one of these safetensors floating-point dtypes (`"BF16"`, `"F32"`, ...) exactly.

    The widest of them, by `torch.promote_types`: bfloat16 ingredients give bfloat16, a mix of bfloat16 and
    float32 gives float32, and bfloat16 with float16 (neither holds the other) gives float32. `float32` if
    there are none.

    Example:
        ```python
        >>> stored_dtype(["BF16", "BF16"])
        torch.bfloat16
        >>> stored_dtype(["BF16", "F16"])
        torch.float32
        ```
    """
    widest = None
    for name in names:
        dtype = _STORED.get(name, torch.float32)
        widest = dtype if widest is None else torch.promote_types(widest, dtype)
    return widest or torch.float32


def scoring_model(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """The model to score in `dtype`: `model` itself if it has that dtype, else a copy cast to it (same device).

    The copy costs the memory of the model in `dtype`; its weights must be copied in from `model` before
    each pass (the `Scorer`'s `weights` argument does it).
    """
    if model.dtype == dtype:
        return model
    return copy.deepcopy(model).to(dtype)
