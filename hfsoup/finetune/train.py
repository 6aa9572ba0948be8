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
import torch
from safetensors.torch import load_file
from transformers import PreTrainedTokenizerBase, Trainer, TrainerCallback, set_seed
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.trainer_pt_utils import LengthGroupedSampler
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

TRAINED = "trained.json"
"""In a run's `.partial` folder: its training ended and its raw and EMA weights are saved (steps, seconds)."""


class _EpochSnapshots(TrainerCallback):
    """Save the raw weights at the end of the chosen epochs as model folders `epoch-<k>/`."""

    def __init__(self, folder: Path, epochs: list[int], tokenizer: PreTrainedTokenizerBase):
        self.folder, self.epochs, self.tokenizer = folder, set(epochs), tokenizer

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        epoch = round(state.epoch or 0)
        if epoch in self.epochs and model is not None and state.is_world_process_zero:
            save_model_folder(model, self.tokenizer, self.folder / f"epoch-{epoch}")


class _EpochSeededSampler(LengthGroupedSampler):
    """Length-grouped batches in an order drawn from the run's seed and the epoch alone.

    transformers' `LengthGroupedSampler` draws its order from torch's global generator, whose state at the
    start of an epoch a run resumed mid-epoch does not have: it would skip the first batches of another order.
    Drawn from `(seed, epoch)` (the Trainer calls `set_epoch`), the order is the same in a resumed run, so it
    resumes exactly wherever its checkpoint fell, and every process of a launcher draws the same order.
    """

    def __init__(self, sampler: LengthGroupedSampler, seed: int):
        self.__dict__.update(vars(sampler))
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)


class _SweepTrainer(Trainer):
    """The Trainer of a sweep's runs: its length-grouped order is drawn from the run's seed and the epoch."""

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            return _EpochSeededSampler(sampler, self.args.seed)
        return sampler


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
    trunk: Path | None = None,
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
        trunk: the checkpoint of the sweep's trunk the run branches from (`branch_at`); `None` for a full run.
    """
    processes = processes or Processes()
    partial = plan.partial
    trained = None
    if processes.is_main:
        partial.mkdir(parents=True, exist_ok=True)
        trained = _read_trained(partial)
    trained = processes.broadcast(trained)
    set_seed(plan.args.seed)  # without a shared start, the run's own seed draws its head
    model = new_head_model(start, task)
    if trained is None:
        trained = _train(plan, model, tokenizer, train, recipe, progress, processes, trunk)
    else:
        logger.info(
            "%s was trained before it was stopped (%d steps): scoring it", plan.name, trained["steps"]
        )
    if not processes.is_main:
        processes.wait()
        return None
    record = _finish(plan, model, recipe, task, validation, tokenizer, describe, trained)
    processes.wait()
    return record


def _train(plan, model, tokenizer, train, recipe, progress, processes, trunk=None) -> dict | None:
    """Train the run (resuming its last checkpoint, or branching from `trunk`), save its weights, mark it trained.

    The marker (`trained.json`) is written after the weights: a run stopped after it is scored from them on
    rerun, never trained a step more (the Trainer would take one more step past a checkpoint at `max_steps`).
    """
    partial = plan.partial
    extra = [_EpochSnapshots(partial, recipe.snapshot_epochs, tokenizer)] if recipe.snapshot_epochs else []
    if trunk is not None and processes.is_main:
        branch_from(trunk, Path(plan.args.output_dir))
    began = time.perf_counter()
    trainer, ema, checkpoint = run_trainer(plan, model, tokenizer, train, recipe, progress, processes, extra)
    if not processes.is_main:
        return None
    save_model_folder(model, tokenizer, partial / "raw")
    if ema is not None:
        with ema.ema.swapped_into(model):
            save_model_folder(model, tokenizer, partial / "ema")
    trained = {
        "steps": trainer.state.global_step,
        "train_seconds_this_session": round(time.perf_counter() - began, 1),
        "resumed_from": Path(checkpoint).name if checkpoint else None,
    }
    if trunk is not None:
        trained["branched_from"] = f"{trunk.parent.name}/{trunk.name}"
    (partial / TRAINED).write_text(json.dumps(trained) + "\n", encoding="utf-8")
    return trained


def run_trainer(plan, model, tokenizer, train, recipe, progress, processes, callbacks=()):
    """Train `model` with the plan's arguments and the recipe's EMA, from the newest complete checkpoint if any.

    Returns:
        The trainer, its EMA callback (or `None`), and the checkpoint it resumed from (or `None`).
    """
    ema = ema_callback(recipe) if recipe.ema_decay is not None else None
    plan.args.disable_tqdm = not progress
    trainer = _SweepTrainer(
        model=model,
        args=plan.args,
        train_dataset=train,
        processing_class=tokenizer,
        callbacks=[*([ema] if ema else []), *callbacks],
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
    trainer.train(resume_from_checkpoint=checkpoint)
    return trainer, ema, checkpoint


def branch_from(trunk: Path, trainer_dir: Path) -> None:
    """Start a run from the trunk's checkpoint, unless it has a checkpoint of its own (then it resumes that).

    The copy leaves out the random-number states, so the run draws its own dropout from its seed from there on.
    """
    if trainer_dir.is_dir() and any(trainer_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*")):
        return
    aside = trainer_dir / f".{trunk.name}.copying"
    shutil.rmtree(aside, ignore_errors=True)
    shutil.copytree(trunk, aside, ignore=shutil.ignore_patterns("rng_state*"))
    os.replace(aside, trainer_dir / trunk.name)  # whole or absent: a kill mid-copy leaves no checkpoint


def _read_trained(partial: Path) -> dict | None:
    path = partial / TRAINED
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _finish(plan, model, recipe, task, validation, tokenizer, describe, trained) -> dict:
    """Score the run's saved weights, card its model folders, and move the run into place; its record."""
    partial = plan.partial
    scorer = Scorer(model, tokenizer, task, validation, max_length=recipe.max_length)
    scores = {}
    saved = ["raw", "ema"] if (partial / "ema").is_dir() else ["raw"]
    for kind in [*saved, *(f"epoch-{epoch}" for epoch in recipe.snapshot_epochs)]:
        model.load_state_dict(load_file(partial / kind / "model.safetensors"))
        scores[kind] = scorer()[0]
    record = {
        "name": plan.name,
        "key": plan.key,
        "overrides": plan.overrides,
        **trained,
        "scores": scores,
        "start": describe.get("start"),
        "start_folder": describe.get("start_folder"),
    }
    kinds = folder_kinds(recipe)
    for kind in kinds:
        write_run_card(partial / kind, kind, record, recipe, task, describe)
    for kind in saved:
        if kind not in kinds:  # scored, not an ingredient
            shutil.rmtree(partial / kind)
    (partial / "run.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    shutil.rmtree(partial / "trainer", ignore_errors=True)
    (partial / TRAINED).unlink()
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
