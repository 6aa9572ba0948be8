"""EmaTrainerCallback: an EMA of the weights in any `transformers.Trainer` run, in one line."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from ..errors import InvalidSettingError
from .model_ema import ModelEma
from .settings import EmaSettings
from .sharding import check_supported, model_sharding_problem, trainer_sharding_problem

logger = logging.getLogger(__name__)

__all__ = ["EMA_STATE_NAME", "EmaTrainerCallback"]

EMA_STATE_NAME = "ema_state.safetensors"
MAX_FRAMES = 16  # how many callers `_find_trainer` looks through


def _find_trainer(callback: TrainerCallback) -> Trainer | None:
    """The Trainer whose event is being handled: the nearest caller's `self` that is a Trainer holding `callback`.

    Callback events are not handed their Trainer, and the callback needs it to wrap some of its methods (see
    [`EmaTrainerCallback`]). Only the `self` of the nearest `MAX_FRAMES` callers is read, never another local
    variable of the Trainer's code, so this holds as long as the Trainer calls its callbacks from one of its
    own methods.
    """
    frame = sys._getframe(1)
    try:
        for _ in range(MAX_FRAMES):
            if frame is None:
                break
            candidate = frame.f_locals.get("self")
            handler = getattr(candidate, "callback_handler", None)
            if isinstance(candidate, Trainer) and callback in getattr(handler, "callbacks", ()):
                return candidate
            frame = frame.f_back
        return None
    finally:
        del frame


def _patch(owner: object, name: str, make: Callable[[Callable], Callable]) -> Callable[[], None]:
    """Set `owner.name` to `make(owner.name)` on this instance only; returns the function that undoes it."""
    had, before = name in vars(owner), vars(owner).get(name)
    setattr(owner, name, make(getattr(owner, name)))

    def undo() -> None:
        if had:
            setattr(owner, name, before)
        else:
            vars(owner).pop(name, None)

    return undo


@contextmanager
def _silenced(trainer: Trainer) -> Iterator[None]:
    """Evaluations inside the block neither log nor fire `on_evaluate`: the caller does both, once."""
    undo = [
        _patch(trainer, "log", lambda log: lambda logs, *args, **kwargs: None),
        _patch(
            trainer.callback_handler,
            "on_evaluate",
            lambda on_evaluate: lambda args, state, control, *rest, **kwargs: control,
        ),
    ]
    try:
        yield
    finally:
        for step in reversed(undo):
            step()


class EmaTrainerCallback(TrainerCallback):
    """Keep an exponential moving average of the weights while a `transformers.Trainer` trains.

    `Trainer(..., callbacks=[EmaTrainerCallback(decay=0.999)])` is all it takes:

    - The EMA starts from the model's weights when training begins and is updated once per optimizer step
      (after gradient accumulation, never per micro-batch), in fp32 whatever the model's dtype.
    - Every evaluation runs on the EMA weights and reports them under the usual `eval_` names, so
      `metric_for_best_model`, `load_best_model_at_end` and `EarlyStoppingCallback` choose on the EMA. With
      `report_raw_metrics=True` the raw weights are evaluated too, and their `eval_raw_...` metrics join the
      same log entry and the same single `on_evaluate` event. Training always continues on the raw weights:
      they are put back after each evaluation, even when it raises.
    - Every checkpoint the Trainer writes gets the EMA state (`ema_state.safetensors`: weights, update
      counters and settings), written into the folder right after the model, before the optimizer, before
      any push to the Hub (`hub_strategy="checkpoint"` or `"all_checkpoints"`), and also for the
      just-in-time checkpoint taken on SIGTERM (`enable_jit_checkpoint=True`). `trainer.train(
      resume_from_checkpoint=...)` restores it, so an interrupted and resumed run ends with the same EMA as an
      uninterrupted one (from a JIT checkpoint taken mid-step, as exactly as transformers resumes the raw
      weights). A checkpoint without EMA state gives a warning and a fresh EMA of the resumed weights.
    - When training ends the model holds the EMA weights (of the best checkpoint with
      `load_best_model_at_end`), so `trainer.save_model()` and `trainer.push_to_hub()` publish them; with
      `load_ema_at_end=False` it keeps the raw weights. `save_raw_to=DIR` first saves the raw weights (and
      the tokenizer) as a model folder, to publish next to the EMA, e.g. as a branch of the same Hub repo
      (`huggingface_hub.upload_folder(folder_path=DIR, repo_id="user/model", revision="raw")`), so
      `user/model@raw` can join a soup.
    - Only the trainable parameters are averaged (`trainable_only=True`): with a LoRA model the EMA, each
      checkpoint's EMA state and the folder `trainer.save_model()` writes are the adapter's.
    - Under DDP every rank keeps an identical EMA and only the main process writes it. Under FSDP2 each rank
      keeps and saves the EMA of its own shard. DeepSpeed ZeRO-3 and FSDP1 are refused when training begins
      (see [`ModelEma`]).

    How it reaches the Trainer: events do not pass it, so when the Trainer is built (`on_init_end`) and
    when training begins the callback looks through its nearest callers for the Trainer holding it (their
    `self` only). It then wraps, on that Trainer instance only and until training ends, `save_model` (so
    each `checkpoint-N` folder the Trainer saves gets the EMA state, wherever the run folder is, as under
    hyperparameter search) and `evaluate`; from construction on it also wraps `train` to remember its
    `resume_from_checkpoint` argument. Resuming is recognised by `state.global_step > 0` when training
    begins; a callback added with `trainer.add_callback` after construction does not see the argument and
    looks for `<output_dir>/checkpoint-<global_step>`. Tested with transformers 5.24 only; hfsoup's
    pyproject.toml requires transformers >= 5.24, < 6. What it relies on is public: the `train`, `save_model`,
    `evaluate` and `log` methods and `callback_handler` of `Trainer`, `PREFIX_CHECKPOINT_DIR`, and the
    Trainer saving each checkpoint's model with `save_model` before its optimizer state and its push.

    The averaging settings are one [`EmaSettings`] (its docstring holds the schedules' figures); steps are the
    Trainer's optimizer steps (`state.global_step`). The default schedule, timm's warm-up, was chosen by
    measurement on real MRPC runs (`benchmarks/ema_schedules.py`, RESULTS.md "EMA schedules").

    Args:
        decay: the target decay, in [0, 1) (0.999 averages over about the last 1,000 steps once warmed up), or
            the whole [`EmaSettings`].
        report_raw_metrics: also evaluate the raw weights at each evaluation, as `eval_raw_...` metrics.
        load_ema_at_end: leave the EMA weights in the model when training ends.
        save_raw_to: a folder to save the raw weights (and tokenizer) to when training ends.
        device: where the EMA lives; `None` for next to each parameter.
        **settings: the other [`EmaSettings`] fields (`warmup=False` for a constant decay,
            `bias_correction`, `trainable_only`, `start_step`, `update_every`, ...).

    Raises:
        InvalidSettingError: at construction, if a setting is outside its allowed values or `warmup=True`
            is given with `bias_correction=True`; when training begins, if the model is sharded by
            DeepSpeed ZeRO-3 or FSDP1, has no trainable parameter (with `trainable_only`), or the
            callback is not held by a `Trainer`.

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
        decay: float | EmaSettings = 0.9999,
        *,
        report_raw_metrics: bool = False,
        load_ema_at_end: bool = True,
        save_raw_to: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        **settings,
    ):
        self.settings = EmaSettings.of(
            decay, **settings
        )  # validated now, at construction, not when training starts
        self.device = device
        self.report_raw_metrics = report_raw_metrics
        self.load_ema_at_end = load_ema_at_end
        self.save_raw_to = save_raw_to
        self.ema: ModelEma | None = None
        self._trainer: Trainer | None = None
        self._model: torch.nn.Module | None = None
        self._resume_from: str | os.PathLike | bool | None = None
        self._undo: list[Callable[[], None]] = []

    # -- events -------------------------------------------------------------------------------------------
    def on_init_end(self, args, state, control, **kwargs):
        trainer = _find_trainer(self)
        if trainer is not None:
            _patch(trainer, "train", self._train_recording_resume)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._unhook()  # in case an earlier run raised before `on_train_end`
        trainer = _find_trainer(self)
        if trainer is None:
            raise InvalidSettingError(
                "EmaTrainerCallback found no transformers.Trainer holding it; pass it to "
                "Trainer(callbacks=[...]) or trainer.add_callback(...)."
            )
        check_supported(
            trainer_sharding_problem(args, getattr(trainer, "accelerator", None))
            or model_sharding_problem(model, getattr(trainer, "model_wrapped", None))
        )
        self.ema = ModelEma(model, self.settings, device=self.device)
        self._trainer, self._model = trainer, model
        if state.global_step > 0:  # the Trainer resumed from a checkpoint
            self._load(self._resume_folder(args, state), state)
        self._undo = [
            _patch(trainer, "save_model", self._save_model_with_ema),
            _patch(trainer, "evaluate", self._evaluate_on_ema),
        ]

    def on_step_end(self, args, state, control, **kwargs):
        self._catch_up(state.global_step)

    def on_train_end(self, args, state, control, processing_class=None, **kwargs):
        self._unhook()
        model = self._model
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
    def _unhook(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo, self._trainer = [], None

    def _catch_up(self, step: int) -> None:
        """Fold in the weights of optimizer step `step`, unless that is done already.

        A checkpoint can come first: the JIT checkpoint callback saves in its own `on_step_end`, which runs
        before this one's.
        """
        if self.ema.last_step < step:
            self.ema.update(self._model, step)

    def _file_name(self) -> str:
        if not self.ema.is_sharded:
            return EMA_STATE_NAME
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        return f"ema_state-rank{rank:05d}-of-{world:05d}.safetensors"

    def _save_state(self, checkpoint: Path, step: int) -> None:
        self._catch_up(step)
        if self.ema.is_sharded or self._trainer.is_world_process_zero():
            checkpoint.mkdir(parents=True, exist_ok=True)
            path = checkpoint / self._file_name()
            self.ema.save(path)
            logger.info("Saved the EMA state of step %d to %s.", step, path)

    def _resume_folder(self, args, state) -> Path:
        """The checkpoint the Trainer resumed from: `train`'s argument if seen, else the run's newest folder."""
        resume = self._resume_from
        if isinstance(resume, (str, os.PathLike)):
            return Path(resume)
        if resume is True and (last := get_last_checkpoint(args.output_dir)) is not None:
            return Path(last)
        return Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"

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

    # -- the Trainer methods wrapped ------------------------------------------------------------------------
    def _train_recording_resume(self, train: Callable) -> Callable:
        """`trainer.train`, remembering its `resume_from_checkpoint` for `on_train_begin`."""

        @functools.wraps(train)
        def train_recording_resume(resume_from_checkpoint=None, *args, **kwargs):
            self._resume_from = resume_from_checkpoint
            return train(resume_from_checkpoint, *args, **kwargs)

        return train_recording_resume

    def _save_model_with_ema(self, save_model: Callable) -> Callable:
        """`trainer.save_model`, followed by the EMA state when the folder is this step's checkpoint.

        The Trainer writes every checkpoint (`_save_checkpoint`, the JIT checkpoint, Ray Tune's) by saving the
        model into `<run folder>/checkpoint-<global_step>` first, then the optimizer, then pushes: the EMA
        state lands in the very folder the Trainer chose, before anything reads it.
        """

        @functools.wraps(save_model)
        def save_model_with_ema(output_dir: str | None = None, *args, **kwargs):
            save_model(output_dir, *args, **kwargs)
            step = self._trainer.state.global_step
            if output_dir is not None and Path(output_dir).name == f"{PREFIX_CHECKPOINT_DIR}-{step}":
                self._save_state(Path(output_dir), step)

        return save_model_with_ema

    def _evaluate_on_ema(self, evaluate: Callable) -> Callable:
        """`trainer.evaluate` on the EMA weights (and on the raw ones if asked), raw weights restored after."""
        trainer = self._trainer

        @functools.wraps(evaluate)
        def evaluate_on_ema(eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
            dataset = eval_dataset if eval_dataset is not None else trainer.eval_dataset
            if isinstance(dataset, dict):  # Trainer.evaluate calls trainer.evaluate (this) once per dataset
                return evaluate(eval_dataset, ignore_keys, metric_key_prefix)
            if not self.report_raw_metrics:
                with self.ema.swapped_into(self._model):
                    return evaluate(eval_dataset, ignore_keys, metric_key_prefix)
            with _silenced(trainer):
                with self.ema.swapped_into(self._model):
                    metrics = evaluate(eval_dataset, ignore_keys, metric_key_prefix)
                metrics.update(evaluate(eval_dataset, ignore_keys, f"{metric_key_prefix}_raw"))
            # What Trainer.evaluate does with its metrics, done once for both evaluations.
            trainer.log(metrics)
            trainer.control = trainer.callback_handler.on_evaluate(
                trainer.args, trainer.state, trainer.control, metrics
            )
            return metrics

        return evaluate_on_ema
