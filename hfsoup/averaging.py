"""Pure tensor math for weight averaging: fused EMA lerp, running mean, weighted sum, decay schedules.

Nothing here knows about models, files or Hugging Face: every function takes lists of tensors and works in
place under `torch.no_grad()`, so the EMA, the soups and the benchmarks share one implementation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["add_scaled_", "ema_decay", "lerp_", "running_mean_"]


def ema_decay(
    step: int,
    decay: float,
    *,
    warmup: bool = True,
    warmup_gamma: float = 1.0,
    warmup_power: float = 2 / 3,
    min_decay: float = 0.0,
) -> float:
    """The EMA decay to use for the update that follows `step` updates.

    With warm-up (as in timm's `ModelEmaV3`): `clamp(1 - (1 + step / warmup_gamma) ** -warmup_power,
    min_decay, decay)`. Early updates then move the average fast, so it is not dominated by the random or
    pretrained starting point; the decay reaches `decay` after about `warmup_gamma * (1 - decay) **
    (-1 / warmup_power)` updates. Without warm-up the decay is `decay` at every step.

    Args:
        step: how many updates happened before this one (0 for the first update).
        decay: the target decay, in [0, 1).
        warmup: whether to ramp the decay up from 0.
        warmup_gamma: the ramp's time scale, in updates.
        warmup_power: the ramp's exponent; 2/3 suits runs of ~1e5 steps, 3/4 shorter runs.
        min_decay: the lower clamp of the ramp.

    Returns:
        The decay, a float in [0, decay].

    Example:
        ```python
        >>> ema_decay(0, 0.999, warmup=False)
        0.999
        >>> ema_decay(0, 0.999)  # the ramp starts at 0 (`EmaSettings` makes the first update a copy)
        0.0
        ```
    """
    if not warmup:
        return decay
    ramp = 1.0 - (1.0 + step / warmup_gamma) ** -warmup_power
    return max(min_decay, min(decay, ramp))


def _like(reference: torch.Tensor, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """`tensors` in the dtype and on the device of `reference`, converting only those that differ."""
    return [
        t
        if (t.dtype == reference.dtype and t.device == reference.device)
        else t.to(reference.device, reference.dtype)
        for t in tensors
    ]


@torch.no_grad()
def lerp_(targets: Sequence[torch.Tensor], sources: Sequence[torch.Tensor], weight: float) -> None:
    """`target += weight * (source - target)` for every pair, fused with `torch._foreach_lerp_`.

    An EMA update with decay `d` is `lerp_(shadow, weights, 1 - d)`. Sources of another dtype or device
    than their targets (a bf16 model and an fp32 shadow, a GPU model and a CPU shadow) are converted on the
    fly; the arithmetic happens in the targets' dtype.

    Args:
        targets: the tensors to update in place (all of one dtype and device).
        sources: tensors of the same shapes.
        weight: the interpolation weight, in [0, 1].
    """
    if targets:
        torch._foreach_lerp_(list(targets), _like(targets[0], sources), weight)


@torch.no_grad()
def running_mean_(averages: Sequence[torch.Tensor], values: Sequence[torch.Tensor], count: int) -> None:
    """Fold one more sample into a running mean: `avg += (value - avg) / (count + 1)`.

    Args:
        averages: the mean of `count` samples so far, updated in place.
        values: the next sample.
        count: how many samples `averages` holds already (0 copies `values`).
    """
    lerp_(averages, values, 1.0 / (count + 1))


@torch.no_grad()
def add_scaled_(accumulators: Sequence[torch.Tensor], values: Sequence[torch.Tensor], scale: float) -> None:
    """`acc += scale * value` for every pair: one term of a weighted sum, fused with `_foreach_add_`.

    Args:
        accumulators: the running sums, updated in place.
        values: tensors of the same shapes (converted to the accumulators' dtype and device if needed).
        scale: the weight of this term.
    """
    if accumulators:
        torch._foreach_add_(list(accumulators), _like(accumulators[0], values), alpha=scale)
