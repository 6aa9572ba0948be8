"""The EMA's update over tensors of mixed dtypes and devices: fused where it can, staged where it must."""

from __future__ import annotations

import torch

from ..averaging import lerp_

__all__ = ["mixed_lerp_"]

STAGING_ELEMENTS = 1 << 20  # elements converted at a time through the staging buffer (4 MiB of fp32)
STAGING_MIN_ELEMENTS = 1 << 16  # smaller weights of another dtype or device are converted whole


def _staged_lerp(pairs: list[tuple[torch.Tensor, torch.Tensor]], weight: float) -> None:
    """`lerp_` of shadow tensors towards weights of another dtype or device, `STAGING_ELEMENTS` at a time.

    Converting a whole weight (bf16 to fp32, or GPU to a CPU shadow) allocates a fresh tensor at every
    update; on CPU each large allocation is new memory whose page faults made a bf16 update several times
    slower than an fp32 one (benchmarks/ema_overhead.py). Here each large weight goes through one reusable
    4 MiB buffer per shadow device and dtype instead, chunk by chunk, with synchronous copies; small ones
    (under 64Ki elements: biases, norms) are cheaper to convert whole, in [`mixed_lerp_`].
    """
    buffers: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
    for target, source in pairs:
        key = (target.device, target.dtype)
        if key not in buffers:
            buffers[key] = torch.empty(STAGING_ELEMENTS, device=target.device, dtype=target.dtype)
        flat_target, flat_source = target.view(-1), source.view(-1)
        for start in range(0, flat_target.numel(), STAGING_ELEMENTS):
            part = flat_target[start : start + STAGING_ELEMENTS]
            buffer = buffers[key][: part.numel()]
            buffer.copy_(flat_source[start : start + part.numel()])
            lerp_([part], [buffer], weight)


def mixed_lerp_(shadow: list[torch.Tensor], weights: list[torch.Tensor], weight: float) -> None:
    """`lerp_(shadow, weights, weight)` for weights of any dtype and device, one fused call per shadow group.

    Weights already of their shadow's dtype and device are lerped in place; large ones of another dtype or
    device go through [`_staged_lerp`]; small ones are converted whole.

    Args:
        shadow: the fp32 (or fp64) shadow tensors, updated in place.
        weights: the model's tensors, of the same shapes.
        weight: the interpolation weight, `1 - decay`.
    """
    groups: dict[tuple[torch.device, torch.dtype], tuple[list, list]] = {}
    staged = []
    for target, source in zip(shadow, weights, strict=True):
        if (source.dtype, source.device) != (target.dtype, target.device):
            if source.numel() >= STAGING_MIN_ELEMENTS and target.is_contiguous() and source.is_contiguous():
                staged.append((target, source))
                continue
            source = source.to(target.device, target.dtype)  # small: a synchronous copy is cheap
        pair = groups.setdefault((target.device, target.dtype), ([], []))
        pair[0].append(target)
        pair[1].append(source)
    for targets, sources in groups.values():
        lerp_(targets, sources, weight)
    _staged_lerp(staged, weight)
