"""The exponential moving average of a model's weights: fp32 shadow, fused update, swap, exact state."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict

import torch
from torch import nn

from ..errors import InvalidSettingError
from .mixed_lerp import mixed_lerp_
from .selection import averaged_tensors, copied_tensors, local, model_tensors
from .settings import EmaSettings
from .sharding import check_supported, model_sharding_problem
from .state import STATE_FORMAT, check_state_tensors, read_state, write_state

logger = logging.getLogger(__name__)

__all__ = ["EmaSettings", "ModelEma"]


class ModelEma:
    """An exponential moving average of a model's weights, kept in an fp32 shadow.

    After each update `ema = d_t * ema + (1 - d_t) * weights`, one fused `torch._foreach_lerp_` over every
    averaged tensor. Its settings are one [`EmaSettings`], given whole or as keywords; that class's docstring
    holds each schedule's figures. The defaults and their trade-offs:

    - `decay=0.9999` with timm's warm-up: the average spans about 10,000 updates once warmed up, which takes
      1,000,000 updates (0.99 is reached at 1,000, 0.999 at 31,623): runs of a few thousand steps want 0.999 or
      0.99. `warmup=False` uses `decay` from the first update; `bias_correction=True` starts from zero and
      divides by `1 - decay ** t`, so step 1's average is step 1's weights.
    - The shadow is fp32 (fp64 for fp64 weights) whatever the model's dtype: a bf16 shadow at decay 0.9999
      rounds `(1 - d) * (w - ema)` to zero and stops moving. Memory: 4 bytes per averaged parameter;
      `device="cpu"` offloads it, at the price of a device-to-host copy of the weights at every update.
    - `trainable_only=True` averages the parameters with `requires_grad` when the EMA is built: a LoRA
      model's EMA is its adapter's, megabytes. `include_buffers=True` averages floating-point buffers
      (integer ones are copied).
    - FSDP2 models are averaged shard by shard, each process its own, without communication; DeepSpeed
      ZeRO-3 and FSDP1 are refused at construction (see `sharding.py`). PEFT needs no special code: with
      the EMA applied, peft's `save_pretrained` writes the EMA as an adapter folder.

    Args:
        model: the model whose weights are averaged; the shadow starts as a copy of its weights.
        decay: the target decay, in [0, 1), or the whole [`EmaSettings`].
        device: where the shadow lives; `None` for next to each parameter.
        **settings: the other fields of [`EmaSettings`] (`warmup`, `bias_correction`, `start_step`,
            `update_every`, `trainable_only`, `include_buffers`, `min_decay`, ...), with a numeric `decay`.

    Raises:
        InvalidSettingError: if a setting is unknown or outside its allowed values, the model is sharded by
            DeepSpeed ZeRO-3 or FSDP1, or `trainable_only` is on and no parameter is trainable.

    Example:
        ```python
        >>> ema = ModelEma(model, decay=0.999)
        >>> for step, batch in enumerate(loader, start=1):
        ...     loss = model(**batch).loss; loss.backward(); optimizer.step(); optimizer.zero_grad()
        ...     ema.update(model, step)
        >>> with ema.swapped_into(model):  # evaluate on the EMA weights, get the raw ones back after
        ...     metrics = evaluate(model)
        >>> ema = ModelEma(model, EmaSettings(decay=0.999, bias_correction=True))  # step 1's average: step 1's weights
        ```
    """

    def __init__(
        self,
        model: nn.Module,
        decay: float | EmaSettings = 0.9999,
        *,
        device: str | torch.device | None = None,
        **settings,
    ):
        self.settings = EmaSettings.of(decay, **settings)
        trainable_only = self.settings.trainable_only
        check_supported(model_sharding_problem(model))
        if trainable_only and not any(p.requires_grad and p.is_floating_point() for p in model.parameters()):
            raise InvalidSettingError(
                "The model has no trainable parameter (requires_grad is False on every one), so an EMA of "
                "the trainable parameters averages nothing; unfreeze what you train, or pass trainable_only=False."
            )
        self.device = torch.device(device) if device is not None else None
        self.num_updates = 0
        self.last_step = 0
        self.shadow: dict[str, torch.Tensor] = {}
        self.copied: dict[str, torch.Tensor] = {}
        self._applied: tuple[nn.Module, list[torch.Tensor]] | None = None  # set by apply_shadow: model, raw
        self.is_sharded = (
            False  # True when the model's parameters are FSDP2 DTensors: the shadow is per shard
        )
        with torch.no_grad():
            for name, tensor in averaged_tensors(model, self.settings):
                self.is_sharded |= hasattr(tensor, "to_local")
                tensor = local(tensor).detach()
                dtype = torch.promote_types(tensor.dtype, torch.float32)
                self.shadow[name] = tensor.to(self.device or tensor.device, dtype, copy=True)
            for name, tensor in copied_tensors(model, self.settings):
                self.copied[name] = local(tensor).detach().to(self.device or tensor.device, copy=True)

    # -- the average --------------------------------------------------------------------------------------
    def decay_at(self, step: int) -> float | None:
        """The decay the update at optimizer step `step` would use, or `None` if that step is skipped.

        A step before `start_step` copies the weights (decay 0); a step off the `update_every` grid is skipped.
        With bias correction this is the decay of the corrected average's own update (see
        [`EmaSettings.decay_for_update`]): 0 for the first update, then rising towards `decay`.
        """
        settings = self.settings
        if step <= settings.start_step:
            return 0.0
        if (step - settings.start_step) % settings.update_every:
            return None
        return settings.decay_for_update(self.num_updates)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int | None = None) -> None:
        """Fold the model's current weights into the average.

        Args:
            model: the model being trained (the same architecture the EMA was built from).
            step: the optimizer step just taken, counted from 1; defaults to the previous step plus one.

        Raises:
            InvalidSettingError: if `step` is not after the last one, the EMA weights are applied to a model
                ([`apply_shadow`] without [`restore`]), or a tensor of the EMA is missing from `model` or has another shape there; the
                EMA and its counters are then left unchanged.
        """
        if self._applied is not None:
            raise InvalidSettingError(
                "The EMA weights are applied to a model (apply_shadow without restore), so it does not "
                "hold the weights being trained; call ema.restore(model) before ema.update(model)."
            )
        step = self.last_step + 1 if step is None else step
        if step <= self.last_step:
            raise InvalidSettingError(
                f"ema.update got step {step} after step {self.last_step}: steps count optimizer steps and only go "
                "forward; pass the step just taken (or none, for the previous one plus one)."
            )
        weights = model_tensors(model, self.shadow)  # checked before any change
        buffers = model_tensors(model, self.copied)
        decay = self.decay_at(step)
        self.last_step = step
        if decay is None:
            return
        if step > self.settings.start_step:
            self.num_updates += 1
        mixed_lerp_(list(self.shadow.values()), weights, 1.0 - decay)
        if self.copied:
            torch._foreach_copy_(list(self.copied.values()), [b.to(self.device or b.device) for b in buffers])

    # -- using the average --------------------------------------------------------------------------------
    def _targets(self, model: nn.Module) -> list[torch.Tensor]:
        """The model's tensors the EMA writes, in the order of `shadow` then `copied`, all checked first."""
        return [
            *model_tensors(model, self.shadow),
            *model_tensors(model, self.copied),
        ]

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the EMA weights into `model` (cast to its dtypes), replacing its raw weights.

        Raises:
            InvalidSettingError: if a tensor of the EMA is missing from `model` or has another shape there;
                `model` is then left unchanged.
        """
        for target, value in zip(
            self._targets(model), [*self.shadow.values(), *self.copied.values()], strict=True
        ):
            target.copy_(value)

    @torch.no_grad()
    def apply_shadow(self, model: nn.Module) -> None:
        """Put the EMA weights into `model` until [`restore`] puts its raw weights back.

        The raw weights are kept meanwhile, as a copy in the model's dtype and on its device (the memory of
        one more model). While they are kept, [`update`] and a second `apply_shadow` are refused: the model
        holds the EMA weights, not the ones being trained. [`swapped_into`] does both calls around a block.

        Raises:
            InvalidSettingError: if the EMA is applied already (call [`restore`] first), or as [`copy_to`];
                `model` is then left unchanged.

        Example:
            ```python
            >>> ema.apply_shadow(model)
            >>> metrics = evaluate(model)  # on the EMA weights
            >>> ema.restore(model)  # the raw weights, bit for bit, and training can go on
            ```
        """
        if self._applied is not None:
            raise InvalidSettingError(
                "The EMA weights are already applied to a model (apply_shadow called twice); "
                "call ema.restore(model) before applying them again."
            )
        targets = self._targets(model)  # checked before any change
        raw = [target.detach().clone() for target in targets]
        for target, value in zip(targets, [*self.shadow.values(), *self.copied.values()], strict=True):
            target.copy_(value)
        self._applied = (model, raw)

    @torch.no_grad()
    def restore(self, model: nn.Module) -> None:
        """Write back the raw weights [`apply_shadow`] kept, exactly, and free their copy.

        Raises:
            InvalidSettingError: if the EMA is not applied, or applied to another model than `model`.
        """
        if self._applied is None:
            raise InvalidSettingError(
                "There are no raw weights to restore: the EMA is not applied; "
                "call ema.apply_shadow(model) first."
            )
        if model is not self._applied[0]:
            raise InvalidSettingError(
                "restore got another model than the one the EMA weights were applied to; "
                "pass the model given to ema.apply_shadow."
            )
        for target, value in zip(self._targets(model), self._applied[1], strict=True):
            target.copy_(value)
        self._applied = None

    @contextmanager
    def swapped_into(self, model: nn.Module) -> Iterator[nn.Module]:
        """Put the EMA weights into `model` for the duration of a `with` block, then restore the raw ones.

        [`apply_shadow`] on entry and [`restore`] on exit: the raw weights come back even when the block
        raises. It costs a copy of the raw weights, in the model's dtype and on its device, while the block
        runs.

        Raises:
            InvalidSettingError: as [`apply_shadow`], before the model is changed.

        Example:
            ```python
            >>> with ema.swapped_into(model):
            ...     ema_logits = model(**batch).logits
            ```
        """
        self.apply_shadow(model)
        try:
            yield model
        finally:
            self.restore(model)

    # -- state --------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue this EMA exactly: the tensors, the counters and the settings."""
        return {
            "format": STATE_FORMAT,
            "tensors": {**self.shadow, **self.copied},
            "num_updates": self.num_updates,
            "last_step": self.last_step,
            "settings": asdict(self.settings),
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Restore a [`state_dict`]; the tensors must match this EMA's names and shapes.

        Settings saved in the state that differ from this EMA's are reported with a warning; this EMA keeps
        its own settings, so a resumed run can change, say, the decay on purpose. Everything is checked
        before anything changes.

        Raises:
            InvalidSettingError: if the state's tensors do not match the model's (the message names the first
                tensor that differs) or its settings are invalid.
        """
        tensors, expected = state["tensors"], {**self.shadow, **self.copied}
        check_state_tensors(tensors, expected)
        saved = EmaSettings(**state["settings"])
        num_updates, last_step = int(state["num_updates"]), int(state["last_step"])
        for name, target in expected.items():
            target.copy_(tensors[name])
        self.num_updates, self.last_step = num_updates, last_step
        if saved != self.settings:
            logger.warning(
                "Resuming an EMA saved with settings %s; continuing with %s.", saved, self.settings
            )

    def save(self, path: str | os.PathLike) -> None:
        """Save the state to one safetensors file (the counters and settings go into its metadata)."""
        write_state(self.state_dict(), path)

    def load(self, path: str | os.PathLike) -> None:
        """Restore the state saved by [`save`] from a safetensors file.

        Raises:
            InvalidSettingError: if the file is missing, unreadable (truncated, corrupt), holds no hfsoup EMA
                state, or does not match the model; the message names the file or the tensor.
        """
        state = read_state(path)
        try:
            self.load_state_dict(state)
        except InvalidSettingError as error:
            raise InvalidSettingError(f"{path}: {error}") from error
        except TypeError as error:  # settings fields this version does not know
            raise InvalidSettingError(
                f"{path} holds EMA settings this version of hfsoup cannot read ({error}); "
                "load it with the hfsoup version that saved it."
            ) from error
