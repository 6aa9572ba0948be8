"""The settings of an EMA and the decay schedule they define: constant, warmed up, or bias-corrected."""

from __future__ import annotations

from dataclasses import dataclass

from ..averaging import ema_decay
from ..errors import InvalidSettingError

__all__ = ["EmaSettings"]


@dataclass(frozen=True)
class EmaSettings:
    """The settings of an EMA, validated on construction.

    See [`ModelEma`] for the meaning of each field and the trade-offs between the three schedules.
    `warmup=None` (the default) means "warm up unless `bias_correction` is on": after construction `warmup`
    is always a bool.

    Raises:
        InvalidSettingError: if a field is outside its allowed values, or `warmup=True` is asked together with
            `bias_correction=True`.

    Example:
        ```python
        >>> EmaSettings(decay=0.999, bias_correction=True).warmup
        False
        >>> EmaSettings(decay=0.999).warmup
        True
        ```
    """

    decay: float = 0.9999
    warmup: bool | None = None
    warmup_gamma: float = 1.0
    warmup_power: float = 2 / 3
    min_decay: float = 0.0
    start_step: int = 0
    update_every: int = 1
    include_buffers: bool = True
    bias_correction: bool = False
    trainable_only: bool = True

    def __post_init__(self):
        problems = []
        if not 0.0 <= self.decay < 1.0:
            problems.append(f"decay must be in [0, 1), got {self.decay!r}")
        if not 0.0 <= self.min_decay <= max(self.decay, 0.0):
            problems.append(f"min_decay must be in [0, decay={self.decay}], got {self.min_decay!r}")
        if not self.warmup_gamma > 0:
            problems.append(f"warmup_gamma must be > 0, got {self.warmup_gamma!r}")
        if not self.warmup_power > 0:
            problems.append(f"warmup_power must be > 0, got {self.warmup_power!r}")
        if not (isinstance(self.start_step, int) and self.start_step >= 0):
            problems.append(f"start_step must be an integer >= 0, got {self.start_step!r}")
        if not (isinstance(self.update_every, int) and self.update_every >= 1):
            problems.append(f"update_every must be an integer >= 1, got {self.update_every!r}")
        if self.warmup and self.bias_correction:
            problems.append(
                "warmup=True and bias_correction=True are two ways to start the average and exclude each "
                "other: pass bias_correction=True alone (it turns the warm-up off) or drop it"
            )
        if problems:
            raise InvalidSettingError("Invalid EMA settings: " + "; ".join(problems) + ".")
        if self.warmup is None:  # frozen: set the resolved value once, here
            object.__setattr__(self, "warmup", not self.bias_correction)

    def decay_for_update(self, num_updates: int) -> float:
        """The decay of the update that follows `num_updates` earlier updates.

        With warm-up the first update (`num_updates == 0`) copies the weights (decay 0) whatever `min_decay`
        is, as timm's `ModelEmaV3` does; later ones follow [`~hfsoup.averaging.ema_decay`]. With bias
        correction the shadow holds the corrected average `v_t / (1 - decay**t)` itself, and the update that
        makes it the `t`-th one is a lerp of weight `(1 - decay) / (1 - decay**t)`: this returns one minus
        that weight, which is exactly 0 for the first update (a copy) and tends to `decay`.
        """
        if self.bias_correction:
            t = num_updates + 1
            return 1.0 - (1.0 - self.decay) / (1.0 - self.decay**t)
        if self.warmup and num_updates == 0:
            return 0.0
        return ema_decay(
            num_updates,
            self.decay,
            warmup=self.warmup,
            warmup_gamma=self.warmup_gamma,
            warmup_power=self.warmup_power,
            min_decay=self.min_decay,
        )
