"""EmaTrainerCallback: an EMA of the weights in any `transformers.Trainer` run, in one line."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import os
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .model_ema import EmaSettings, ModelEma

logger = logging.getLogger(__name__)

__all__ = ["EMA_STATE_NAME", "EmaTrainerCallback"]

EMA_STATE_NAME = "ema_state.safetensors"


def _find_trainer(callback: TrainerCallback) -> tuple[Trainer, str | None]:
    """The Trainer whose event is being handled, and the checkpoint its training loop resumes from.

    The Trainer is the first caller frame's `self` that is a Trainer holding this callback.

    Callbacks are not handed their Trainer, but evaluating on EMA weights safely (restoring the raw weights
    even when evaluation raises) needs to wrap `Trainer.evaluate`, and an exact resume needs the checkpoint
    folder; both live on the Trainer and in its training loop's frame.
    """
    frame = inspect.currentframe()
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, Trainer) and callback in candidate.callback_handler.callbacks:
            trainer, resume = candidate, frame.f_locals.get("resume_from_checkpoint")
            del frame
            return trainer, resume
        frame = frame.f_back
    raise RuntimeError("EmaTrainerCallback must be used through transformers.Trainer(callbacks=[...]).")


class EmaTrainerCallback(TrainerCallback):
    """Keep an exponential moving average of the weights while a `transformers.Trainer` trains.

    `Trainer(..., callbacks=[EmaTrainerCallback(decay=0.999)])` is all it takes:

    - The EMA starts from the model's weights when training begins and is updated once per optimizer step
      (after gradient accumulation, never per micro-batch), in fp32 whatever the model's dtype.
    - Every evaluation runs on the EMA weights and reports them under the usual `eval_` names, so
      `metric_for_best_model` and `load_best_model_at_end` choose on the EMA. With `report_raw_metrics=True`
      the raw weights are evaluated too, as `eval_raw_...`. Training always continues on the raw weights: they
      are put back after each evaluation, even when it raises.
    - Every `checkpoint-N` folder gets the EMA state (`ema_state.safetensors`: weights, update counters and
      settings), and `trainer.train(resume_from_checkpoint=...)` restores it, so an interrupted and resumed run
      ends with the same EMA as an uninterrupted one. A checkpoint without EMA state gives a warning and a
      fresh EMA of the resumed weights.
    - When training ends the model holds the EMA weights (of the best checkpoint with
      `load_best_model_at_end`), so `trainer.save_model()` and `trainer.push_to_hub()` publish them; with
      `load_ema_at_end=False` it keeps the raw weights. `save_raw_to=DIR` first saves the raw weights (and
      the tokenizer) as a model folder, to publish next to the EMA, e.g. as a branch of the same Hub repo
      (`hfsoup push DIR user/model --revision raw`), so `user/model@raw` can join a soup.
    - Under DDP every rank keeps an identical EMA and only the main process writes it. Under FSDP2 each rank
      keeps and saves the EMA of its own shard (see [`ModelEma`] for ZeRO-3).

    The averaging settings (`decay`, `warmup`, `warmup_gamma`, `warmup_power`, `min_decay`, `start_step`,
    `update_every`, `device`, `include_buffers`) are those of [`ModelEma`], documented there with their
    trade-offs; steps are the Trainer's optimizer steps (`state.global_step`).

    Args:
        decay: the target decay, in [0, 1); 0.999 averages over about the last 1,000 steps.
        warmup: ramp the decay up from 0 as timm's ModelEmaV3 does (`warmup=False` for a constant decay).
        report_raw_metrics: also evaluate the raw weights at each evaluation, as `eval_raw_...` metrics.
        load_ema_at_end: leave the EMA weights in the model when training ends.
        save_raw_to: a folder to save the raw weights (and tokenizer) to when training ends.
        warmup_gamma, warmup_power, min_decay, start_step, update_every, device, include_buffers: the other
            [`ModelEma`] settings, documented there.

    Raises:
        InvalidSettingError: at construction, if a setting is outside its allowed values.

    Example:
        ```python
        >>> from transformers import Trainer
        >>> from hfsoup import EmaTrainerCallback
        >>> trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=dev,
        ...                   callbacks=[EmaTrainerCallback(decay=0.999)])
        >>> trainer.train()
        >>> trainer.save_model()  # the EMA weights
        ```
    """

    def __init__(
        self,
        decay: float = 0.9999,
        *,
        warmup: bool = True,
        report_raw_metrics: bool = False,
        load_ema_at_end: bool = True,
        save_raw_to: str | os.PathLike | None = None,
        warmup_gamma: float = 1.0,
        warmup_power: float = 2 / 3,
        min_decay: float = 0.0,
        start_step: int = 0,
        update_every: int = 1,
        device: str | torch.device | None = None,
        include_buffers: bool = True,
    ):
        # EmaSettings validates now, at construction, not when training starts.
        self.settings = EmaSettings(
            decay=decay,
            warmup=warmup,
            warmup_gamma=warmup_gamma,
            warmup_power=warmup_power,
            min_decay=min_decay,
            start_step=start_step,
            update_every=update_every,
            include_buffers=include_buffers,
        )
        self.device = device
        self.report_raw_metrics = report_raw_metrics
        self.load_ema_at_end = load_ema_at_end
        self.save_raw_to = save_raw_to
        self.ema: ModelEma | None = None
        self._trainer: Trainer | None = None

    # -- events -------------------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        trainer, resume_from_checkpoint = _find_trainer(self)
        self.ema = ModelEma(model, device=self.device, **dataclasses.asdict(self.settings))
        if resume_from_checkpoint is not None:
            self._load(Path(resume_from_checkpoint), state)
        self._trainer = trainer
        trainer.evaluate = self._evaluate_on_ema(trainer, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.ema.update(model, state.global_step)

    def on_save(self, args, state, control, **kwargs):
        checkpoint = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if self.ema.is_sharded or state.is_world_process_zero:
            path = checkpoint / self._file_name()
            self.ema.save(path)
            logger.info("Saved the EMA state of step %d to %s.", state.global_step, path)

    def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if self._trainer is not None:
            self._trainer.__dict__.pop("evaluate", None)  # back to the class's own evaluate
            self._trainer = None
        if self.save_raw_to is not None and state.is_world_process_zero:
            model.save_pretrained(self.save_raw_to)
            if processing_class is not None:
                processing_class.save_pretrained(self.save_raw_to)
            logger.info("Saved the raw weights to %s.", self.save_raw_to)
        if not self.load_ema_at_end:
            return
        best = state.best_model_checkpoint
        if args.load_best_model_at_end and best and (Path(best) / self._file_name()).is_file():
            self.ema.load(Path(best) / self._file_name())
        self.ema.copy_to(model)

    # -- helpers ------------------------------------------------------------------------------------------
    def _file_name(self) -> str:
        if not self.ema.is_sharded:
            return EMA_STATE_NAME
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        return f"ema_state-rank{rank:05d}-of-{world:05d}.safetensors"

    def _load(self, checkpoint: Path, state) -> None:
        path = checkpoint / self._file_name()
        if path.is_file():
            self.ema.load(path)
            logger.info("Restored the EMA state of step %d from %s.", self.ema.last_step, path)
        else:
            logger.warning(
                "%s has no EMA state (%s); starting a fresh EMA from the weights of step %d.",
                checkpoint,
                path.name,
                state.global_step,
            )
            self.ema.last_step = state.global_step

    def _evaluate_on_ema(self, trainer: Trainer, model: torch.nn.Module):
        """`trainer.evaluate`, run on the EMA weights (then on the raw ones if asked), raw weights restored."""
        evaluate = type(trainer).evaluate.__get__(trainer)
        busy = False

        @functools.wraps(evaluate)
        def evaluate_on_ema(eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
            nonlocal busy
            if busy:  # Trainer.evaluate calls itself once per dataset of a dict: we swapped already
                return evaluate(eval_dataset, ignore_keys, metric_key_prefix)
            busy = True
            try:
                with self.ema.swapped_into(model):
                    metrics = evaluate(eval_dataset, ignore_keys, metric_key_prefix)
                if self.report_raw_metrics:
                    metrics.update(evaluate(eval_dataset, ignore_keys, f"{metric_key_prefix}_raw"))
            finally:
                busy = False
            return metrics

        return evaluate_on_ema
