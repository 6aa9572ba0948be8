"""Which of a model's tensors the EMA averages, which it copies, and finding them again in the model.

The choice is made once, when the EMA is built: the floating-point parameters (only the trainable ones with
`trainable_only`), and the floating-point buffers with `include_buffers`, are averaged; the other buffers
are copied. Afterwards the EMA finds its tensors by name among all of the model's parameters and buffers,
so freezing or unfreezing a parameter later changes nothing about what the EMA holds.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from ..errors import InvalidSettingError
from .settings import EmaSettings

__all__ = ["averaged_tensors", "copied_tensors", "local", "model_tensors"]


def local(tensor: torch.Tensor) -> torch.Tensor:
    """The part of `tensor` this process holds: the local shard of an FSDP2 `DTensor`, else the tensor."""
    to_local = getattr(tensor, "to_local", None)
    return to_local() if to_local is not None else tensor


def averaged_tensors(model: nn.Module, settings: EmaSettings) -> Iterator[tuple[str, torch.Tensor]]:
    """The tensors an EMA of `model` averages, by name: parameters first, then buffers.

    Args:
        model: the model the EMA is built from.
        settings: `trainable_only` keeps the parameters with `requires_grad` only; `include_buffers` adds
            the floating-point buffers.
    """
    for name, param in model.named_parameters():
        if param.is_floating_point() and (param.requires_grad or not settings.trainable_only):
            yield name, param
    if settings.include_buffers:
        for name, buffer in model.named_buffers():
            if buffer.is_floating_point():
                yield name, buffer


def copied_tensors(model: nn.Module, settings: EmaSettings) -> Iterator[tuple[str, torch.Tensor]]:
    """The buffers an EMA of `model` copies rather than averages: integer ones, and all without `include_buffers`."""
    for name, buffer in model.named_buffers():
        if not buffer.is_floating_point() or not settings.include_buffers:
            yield name, buffer


def model_tensors(model: nn.Module, expected: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """The model's tensors (local shards) named in `expected`, in its order, each checked to have its shape.

    Args:
        model: the model to read or write.
        expected: the EMA's tensors by name, among the model's parameters and buffers.

    Raises:
        InvalidSettingError: if a tensor is missing from `model` or has another shape there.
    """
    found = {
        name: local(tensor)
        for named in (model.named_parameters(), model.named_buffers())
        for name, tensor in named
        if name in expected
    }
    if len(found) != len(expected):
        missing = sorted(set(expected) - set(found))[:5]
        raise InvalidSettingError(
            f"The model does not match its EMA: {len(expected) - len(found)} tensors are missing "
            f"(first: {missing}); use the model the EMA was built from."
        )
    for name, tensor in expected.items():
        if found[name].shape != tensor.shape:
            raise InvalidSettingError(
                f"The model does not match its EMA: tensor {name!r} has shape {tuple(found[name].shape)} "
                f"in the model but {tuple(tensor.shape)} in the EMA; use the model the EMA was built from."
            )
    return [found[name] for name in expected]
