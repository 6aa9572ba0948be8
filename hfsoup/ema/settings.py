"""The settings of an EMA and the decay schedule they define: constant, warmed up, or bias-corrected."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..averaging import ema_decay
from ..errors import InvalidSettingError

__all__ = ["EmaSettings"]


@dataclass(frozen=True)
class EmaSettings:
    """The settings of an EMA, validated on construction.

    The one place the schedules' figures live; [`ModelEma`] and [`EmaTrainerCallback`] take these settings
    whole or as keywords. `warmup=None` (the default) means "warm up unless `bias_correction` is on": after
    construction `warmup` is always a bool. After each update `t`, `ema_t = d_t * ema_{t-1} + (1 - d_t) *
    weights_t`; the fields and their trade-offs:

    - `decay=0.9999`: the average spans about `1 / (1 - decay)` = 10,000 updates.
    - The schedule of `d_t`, one of three; `t` counts updates, from the first one after `start_step`:
      - `warmup=True` (the default unless `bias_correction=True`): as timm's `ModelEmaV3`, the first update
        copies the weights (decay 0, whatever `min_decay` is), and the update after `k >= 1` earlier ones
        uses `clamp(1 - (1 + k / warmup_gamma) ** -warmup_power, min_decay, decay)`, so the average forgets
        its starting point fast. It reaches `decay` after about `warmup_gamma * (1 - decay) ** (-1 /
        warmup_power)` updates: with the defaults (gamma 1, power 2/3), at update 1,000 for 0.99, 31,623 for
        0.999 and 1,000,000 for 0.9999. Until then the average spans about `(1 + k) ** (2 / 3)` updates (its
        decay is 0.99 after 1,000 updates, 0.9952 after 3,000, 0.9978 after 10,000), so in a run of a few
        thousand steps a `decay` of 0.999 or more is a ceiling never reached.
      - `warmup=False`: `decay` from the first update, starting from the weights the EMA was built from.
        Those keep a share `decay ** t` of the average, under 1% only after `ln(0.01) / ln(decay)` updates:
        about 458 for 0.99, 4,603 for 0.999, 46,049 for 0.9999. Right when the starting weights are good.
      - `bias_correction=True`: as Adam's moments, the average starts from zero, `v_0 = 0`,
        `v_t = decay * v_{t-1} + (1 - decay) * weights_t`, and the weights used are `v_t / (1 - decay ** t)`.
        Step 1's average is step 1's weights; update `i` weighs `decay ** (t - i)`, normalised; the starting
        weights weigh nothing. The decay is `decay` from the first update, and the correction
        `1 / (1 - decay ** t)` fades to within 1% of 1 after about `ln(0.01) / ln(decay)` updates: 458 for
        0.99, 4,603 for 0.999, 46,049 for 0.9999 (it is <= 1.01 from update 460, 4,613 and 46,149). The
        price: while `t` is small against `1 / (1 - decay)` the average is close to the plain mean of all
        updates so far, early weights included, which the warm-up forgets sooner. The shadow holds the
        corrected average itself, updated with the lerp weight `(1 - decay) / (1 - decay ** t)` (the same
        quantity as `v_t / (1 - decay ** t)`), not `v_t`: so every reader (`copy_to`, `swapped_into`,
        `apply_shadow`, the state file, the callback) gets the corrected weights at no extra cost, and step
        1's average equals step 1's weights to the bit, which `v_1` in fp32 rescaled by `1 / (1 - decay)`
        does not. Before the first update the average is the weights the EMA was built from (before
        `start_step`, the last weights passed to `update`). `bias_correction=True` alone turns the warm-up
        off, and an explicit `warmup=True` with it is refused: both remedy the same start-up bias and would
        ramp the decay twice, so neither silently wins, and as the warm-up is on by default, requiring
        `warmup=False` too would refuse the plain request.
    - `start_step=0`, `update_every=1`: before `start_step` the shadow copies the weights; then one update
      every `update_every` optimizer steps, each with the decay above (the warm-up counts updates, not steps).
    - `include_buffers=True` also averages floating-point buffers (BatchNorm running statistics); integer
      buffers (`num_batches_tracked`) are copied, never averaged. BERTs have no floating buffers that change.
    - `trainable_only=True`: only the parameters with `requires_grad` when the EMA is built are averaged,
      for every model. A frozen parameter never changes, so its EMA would equal itself: averaging it costs
      memory and time and changes no weight the EMA gives back. The rule is the same for a plain model with
      frozen layers and for a PEFT model (peft's `PeftModel`, e.g. LoRA), whose trainable parameters are
      the adapter's and those of `modules_to_save` (the task head): its shadow, state file and update cost
      megabytes, not a second base model. `copy_to`, `swapped_into` and `apply_shadow` write the averaged
      tensors only and leave the frozen ones as they are. The choice is made once: a parameter unfrozen
      later (gradual unfreezing) is never averaged, and a run that does so wants `trainable_only=False`,
      which averages every floating-point parameter.

    The default schedule is timm's warm-up, chosen by measurement (`benchmarks/ema_schedules.py`: nine EMAs of each of two
    real MRPC fine-tunes of 345 steps, RESULTS.md): it was the only schedule whose EMA stayed within 0.002 of
    the raw weights at every requested decay (0.99, 0.999, 0.9999) on both, where a constant decay or bias
    correction lost about 0.01 at 0.99 and 0.05 to 0.21 at 0.999 and 0.9999, by averaging over more steps than
    the run had (two seeds of one task: a measurement to repeat, not a law). It forgets the starting
    weights fast but reaches the requested decay late: after about `(1 - decay) ** -1.5` updates, that is 1,000
    for 0.99, 31,623 for 0.999 and 1,000,000 for 0.9999, so in a run of a few thousand steps `decay` is a
    ceiling and the average spans the last few percent of the run. `bias_correction=True` (which turns the warm-up off)
    uses the requested decay from the first update with no share for the starting weights, and evaluations
    and the weights loaded at the end are the corrected average `v_t / (1 - decay ** t)`; its correction
    fades to within 1% after about 458 updates for 0.99, 4,603 for 0.999, 46,049 for 0.9999.

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

    @classmethod
    def of(cls, decay: float | EmaSettings = 0.9999, **fields) -> EmaSettings:
        """`decay` itself if it is an `EmaSettings`, else the settings of this decay and these fields.

        Raises:
            InvalidSettingError: a field is unknown (the message lists the valid ones), a value is outside its
                range, or both whole settings and fields are given.
        """
        if isinstance(decay, EmaSettings):
            if fields:
                raise InvalidSettingError(
                    f"Give the EMA settings whole or as keywords, not both: {', '.join(sorted(fields))} "
                    "would be ignored; use dataclasses.replace(settings, ...) instead."
                )
            return decay
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise InvalidSettingError(
                f"Unknown EMA setting(s) {', '.join(unknown)}; the settings are {', '.join(sorted(known))}."
            )
        return cls(decay=decay, **fields)

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
