"""Branched runs (`branch_at`): a trunk trains the runs' first steps once, and every run continues from it.

The model-soups authors advise it, and Frankle et al. (2020, "Linear Mode Connectivity and the Lottery Ticket
Hypothesis") found that runs which share their first steps stay linearly connected. The trunk is trained with
the first run's settings, stopped at step `round(branch_at * steps)`, and its checkpoint there (weights,
optimizer, learning-rate schedule, EMA state) is kept as `trunk-<key>/checkpoint-<k>/`, claimed and renamed
into place like a run. Each run then starts from a copy of that checkpoint without its random-number states:
its first steps are the trunk's, bit for bit, and from there it draws its own data order (from its seed and
the epoch) and its own dropout. A stopped trunk or branch resumes from its own last checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

from transformers import TrainerCallback, set_seed
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..eval.tasks import Task
from ..recipe.finetune import FinetuneRecipe
from .plan import RunPlan, run_key, training_arguments
from .start import new_head_model
from .train import run_trainer

__all__ = ["train_trunk", "trunk_plan"]


class _StopAt(TrainerCallback):
    """Save a checkpoint at `step`, then stop (after the save, so the saved state does not say stop)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_save = True

    def on_save(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True

    def on_epoch_end(self, args, state, control, **kwargs):
        # The stop ends the epoch: its end-of-epoch save would write the trunk's checkpoint again.
        if state.global_step >= self.step:
            control.should_save = False


def trunk_plan(
    recipe: FinetuneRecipe,
    task: Task,
    dataset: str | None,
    work_dir: Path,
    first: RunPlan,
    rows: int,
    processes: int = 1,
) -> RunPlan:
    """The trunk of a branched sweep: the first run's settings, trained until the branching step.

    Args:
        first: the sweep's first run, whose settings (and seed) the trunk trains with.
        rows: the training split's rows, which make the number of steps.
    """
    args = first.args
    per_epoch = math.ceil(rows / (args.per_device_train_batch_size * args.gradient_accumulation_steps))
    steps = args.max_steps if args.max_steps > 0 else math.ceil(args.num_train_epochs * per_epoch)
    until = max(1, min(steps - 1, round(recipe.branch_at * steps)))
    overrides = {**first.overrides, "trunk_until": until}
    key = run_key(recipe, task, dataset, overrides)
    folder = work_dir / f"trunk-{key}"
    return RunPlan(
        overrides, key, folder, training_arguments(recipe, first.overrides, folder, processes=processes)
    )


def train_trunk(
    plan: RunPlan,
    *,
    start: Path,
    tokenizer,
    task: Task,
    train,
    recipe: FinetuneRecipe,
    processes,
    progress: bool = False,
    **_unused,
) -> None:
    """Train the trunk to its branching step and move its checkpoint there into `plan.folder`."""
    until = plan.overrides["trunk_until"]
    set_seed(plan.args.seed)
    model = new_head_model(start, task)
    run_trainer(plan, model, tokenizer, train, recipe, progress, processes, [_StopAt(until)])
    if not processes.is_main:
        processes.wait()
        return
    partial = plan.partial
    name = f"{PREFIX_CHECKPOINT_DIR}-{until}"
    os.replace(partial / "trainer" / name, partial / name)
    shutil.rmtree(partial / "trainer")
    record = {"name": plan.name, "key": plan.key, "overrides": plan.overrides, "steps": until}
    (partial / "run.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(partial, plan.folder)
    processes.wait()


def trunk_checkpoint(plan: RunPlan) -> Path:
    """The finished trunk's checkpoint, which every run branches from."""
    return plan.folder / f"{PREFIX_CHECKPOINT_DIR}-{plan.overrides['trunk_until']}"
