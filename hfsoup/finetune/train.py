"""Train one run of a sweep, resumably, and move its model folders into place when it is complete.

A run trains in a hidden `.<run>.partial/` folder beside its final one: the Trainer's last checkpoint (with
the EMA state, see `EmaTrainerCallback`) and the epoch snapshots stay there, so a stopped run resumes from its
last checkpoint with its EMA, exactly. When training ends, the run's `raw/`, `ema/` and `epoch-<k>/` model
folders are scored on the task's validation split and carded, the checkpoints are deleted, and the folder is
renamed to `<run>/` in one step: a run folder without a `.partial` suffix is always complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import datasets
from safetensors.torch import load_file
from transformers import PreTrainedTokenizerBase, Trainer, TrainerCallback, set_seed
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..ema import EMA_STATE_NAME, EmaTrainerCallback
from ..eval.processes import Processes
from ..eval.scoring import Scorer
from ..eval.tasks import Task
from ..recipe.finetune import FinetuneRecipe
from .plan import RunPlan
from .run_card import write_run_card
from .start import new_head_model

logger = logging.getLogger(__name__)

__all__ = ["train_run"]


class _EpochSnapshots(TrainerCallback):
    """Save the raw weights at the end of the chosen epochs as model folders `epoch-<k>/`."""

    def __init__(self, folder: Path, epochs: list[int], tokenizer: PreTrainedTokenizerBase):
        self.folder, self.epochs, self.tokenizer = folder, set(epochs), tokenizer

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        epoch = round(state.epoch or 0)
        if epoch in self.epochs and model is not None and state.is_world_process_zero:
            save_model_folder(model, self.tokenizer, self.folder / f"epoch-{epoch}")


class _QuietProgress(ProgressCallback):
    """The Trainer's progress bar (on stderr), without the log dictionaries it writes to stdout."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        return


def save_model_folder(model, tokenizer: PreTrainedTokenizerBase, folder: Path) -> None:
    """Write a model folder aside, then move it into place (replacing an older one of the same name)."""
    aside = folder.with_name(f".{folder.name}.writing")
    shutil.rmtree(aside, ignore_errors=True)
    model.save_pretrained(aside)
    tokenizer.save_pretrained(aside)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(aside, folder)


def ema_callback(recipe: FinetuneRecipe) -> EmaTrainerCallback:
    """The run's EMA, with the recipe's schedule (or the callback's default one)."""
    schedule = {
        None: {},
        "warmup": {"warmup": True},
        "constant": {"warmup": False},
        "bias_correction": {"bias_correction": True},
    }[recipe.ema_schedule]
    return EmaTrainerCallback(decay=recipe.ema_decay, load_ema_at_end=False, **schedule)


def train_run(
    plan: RunPlan,
    *,
    start: Path,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    train: datasets.Dataset,
    recipe: FinetuneRecipe,
    validation: datasets.Dataset,
    describe: dict,
    progress: bool = False,
    processes: Processes | None = None,
) -> dict | None:
    """Train (or resume) one run and move it into `plan.folder`; its record, as written to `run.json`.

    Under a launcher, every process trains (DDP) and only the main one scores and writes: the others get `None`.

    Args:
        plan: the run.
        start: the model folder the run starts from (the shared initialization, or the base).
        tokenizer: the base's tokenizer.
        task: the task.
        train: the encoded training split.
        recipe: the sweep's settings.
        validation: the rows each of the run's model folders is scored on.
        describe: what the cards say of the sweep (`base`, `dataset`, `command`).
        progress: show the Trainer's progress bar.
        processes: the processes a launcher started; `None` for this one.
    """
    processes = processes or Processes()
    partial = plan.partial
    if processes.is_main:
        partial.mkdir(parents=True, exist_ok=True)
    set_seed(plan.args.seed)  # without a shared start, the run's own seed draws its head
    model = new_head_model(start, task)
    ema = ema_callback(recipe) if recipe.ema_decay is not None else None
    callbacks = [ema] if ema else []
    if recipe.snapshot_epochs:
        callbacks.append(_EpochSnapshots(partial, recipe.snapshot_epochs, tokenizer))
    plan.args.disable_tqdm = not progress
    trainer = Trainer(
        model=model, args=plan.args, train_dataset=train, processing_class=tokenizer, callbacks=callbacks
    )
    # No loss dictionaries on stdout, with or without the bar: the log says Run i/N and each run's scores.
    trainer.remove_callback(PrinterCallback)
    if progress:
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_QuietProgress)
    checkpoint = None
    if processes.is_main:  # it removes an incomplete checkpoint: one process decides for all
        checkpoint = last_complete_checkpoint(Path(plan.args.output_dir), ema=ema is not None)
    checkpoint = processes.broadcast(checkpoint)
    if checkpoint:
        logger.info("Resuming %s from %s", plan.name, checkpoint)
    began = time.perf_counter()
    trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - began
    if not processes.is_main:
        processes.wait()
        return None
    record = _finish(plan, trainer, ema, recipe, task, validation, tokenizer, describe, checkpoint, seconds)
    processes.wait()
    return record


def _finish(plan, trainer, ema, recipe, task, validation, tokenizer, describe, checkpoint, seconds) -> dict:
    """Score and save the run's model folders, card them, and move the run into place; its record."""
    model, partial, kinds = trainer.model, plan.partial, recipe.ingredient_kinds
    scorer = Scorer(model, tokenizer, task, validation, max_length=recipe.max_length)
    scores = {}
    if "raw" in kinds:
        save_model_folder(model, tokenizer, partial / "raw")
    scores["raw"] = scorer()[0]
    if ema is not None:
        with ema.ema.swapped_into(model):
            scores["ema"] = scorer()[0]
            if "ema" in kinds:
                save_model_folder(model, tokenizer, partial / "ema")
    for epoch in recipe.snapshot_epochs:
        model.load_state_dict(load_file(partial / f"epoch-{epoch}" / "model.safetensors"))
        scores[f"epoch-{epoch}"] = scorer()[0]
    record = {
        "name": plan.name,
        "key": plan.key,
        "overrides": plan.overrides,
        "steps": trainer.state.global_step,
        "train_seconds_this_session": round(seconds, 1),
        "resumed_from": Path(checkpoint).name if checkpoint else None,
        "scores": scores,
        "start": describe.get("start"),
        "start_folder": describe.get("start_folder"),
    }
    for kind in folder_kinds(recipe):
        write_run_card(partial / kind, kind, record, recipe, task, describe)
    (partial / "run.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    shutil.rmtree(partial / "trainer", ignore_errors=True)
    try:
        os.replace(partial, plan.folder)
    except OSError:
        if not plan.done:
            raise
        logger.warning(
            "%s was finished by another process meanwhile (its claim was taken for dead); keeping that one.",
            plan.name,
        )
        shutil.rmtree(partial)
    return record


def last_complete_checkpoint(trainer_dir: Path, *, ema: bool) -> str | None:
    """The newest checkpoint a run can resume from; newer ones left incomplete by a kill are removed, said once.

    The Trainer writes `trainer_state.json` last, after the model, the EMA state (our callback writes it right
    after the model) and the optimizer: a checkpoint without it, or without its EMA state, was being written
    when the run stopped.
    """
    if not trainer_dir.is_dir():
        return None
    found = sorted(
        (p for p in trainer_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if p.name.rpartition("-")[2].isdigit()),
        key=lambda p: int(p.name.rpartition("-")[2]),
        reverse=True,
    )
    for checkpoint in found:
        lacking = [
            name
            for name in ("trainer_state.json", *([EMA_STATE_NAME] if ema else []))
            if not (checkpoint / name).is_file()
        ]
        if not lacking:
            return str(checkpoint)
        logger.warning(
            "Skipping %s: it lacks %s, so the run was stopped while saving it; resuming from an older one.",
            checkpoint.name, " and ".join(lacking),
        )  # fmt: skip
        shutil.rmtree(checkpoint)
    return None


def folder_kinds(recipe: FinetuneRecipe) -> list[str]:
    """The model folders of a run, in ingredient order: raw, EMA, then the epoch snapshots."""
    kinds = recipe.ingredient_kinds
    return [k for k in ("raw", "ema") if k in kinds] + [f"epoch-{e}" for e in recipe.snapshot_epochs]
