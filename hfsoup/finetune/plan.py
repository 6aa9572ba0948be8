"""The runs of a sweep, before any work: their settings, keys, names, folders and `TrainingArguments`.

Runs are keyed by their settings, not their position: a run's folder is `<name>-<key>/`, where the key hashes
everything that determines its weights (the recipe's shared settings, the task, the dataset and the run's own
overrides), so a finished run is reused only if its settings are the same, and a changed one is trained anew.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import typing
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import TrainingArguments

from ..errors import HfSoupError, RecipeError
from ..eval.tasks import Task
from ..recipe.fields import check_value
from ..recipe.finetune import FinetuneRecipe
from ..sources import LocalSource, package_folder

__all__ = ["RunPlan", "plan_runs", "run_key"]

# Recipe fields that do not change a run's weights, so they stay out of its key.
_NOT_IN_KEY = ("runs", "grid", "push_to_hub", "private")


@dataclass
class RunPlan:
    """One run of a sweep.

    Args:
        overrides: the run's own `TrainingArguments` overrides (its grid point).
        key: the hash of everything that determines the run's weights.
        folder: the finished run's folder, `<name>-<key>`; it exists only once the run is complete.
        args: the run's `TrainingArguments`, checked.
    """

    overrides: dict
    key: str
    folder: Path
    args: TrainingArguments

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def partial(self) -> Path:
        """Where the run trains: its checkpoints and epoch snapshots, kept so a stopped run resumes."""
        return self.folder.with_name(f".{self.folder.name}.partial")

    @property
    def done(self) -> bool:
        return (self.folder / "run.json").is_file()


def run_key(recipe: FinetuneRecipe, task: Task, dataset: str | None, overrides: dict) -> str:
    """A short hash of everything that determines one run's weights: the same settings, the same key.

    That is the recipe, the run's overrides, the data (dataset, text and label columns, label names) and, for a
    local base, its weights' content hash (a folder whose weights changed in place makes new runs).
    """
    settings = {
        "recipe": {k: v for k, v in vars(recipe).items() if k not in _NOT_IN_KEY},
        "task": [task.name, list(task.text_columns), task.label_column, list(task.label_names)],
        "dataset": dataset,
        "run": overrides,
        "base": _local_content(recipe.base),
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]


@functools.cache
def weights_hash(folder: Path) -> str:
    """The `sha256:` of a model folder's weights, hashed once per process (a run's key and its start's key)."""
    return LocalSource(folder).content_hash


def _local_content(base: str) -> str | None:
    """The content hash of a local base's weights (`None` for a Hub id, pinned by its reference)."""
    try:
        folder = package_folder(base) if base.startswith("package:") else Path(base).expanduser()
    except HfSoupError:
        return None
    return weights_hash(folder.resolve()) if (folder / "config.json").is_file() else None


def run_name(overrides: dict, key: str) -> str:
    """`lr0.0001-seed1-<key>`: the overrides, readable and safe as a folder and a Hub repository name."""
    words = [f"{name}{value}" for name, value in sorted(overrides.items())]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "", "-".join(words).replace("learning_rate", "lr"))[:40].strip("-.")
    return f"{slug}-{key}" if slug else f"run-{key}"


def plan_runs(
    recipe: FinetuneRecipe, task: Task, dataset: str | None, work_dir: Path, *, processes: int = 1
) -> list[RunPlan]:
    """Every run of `recipe`, with its `TrainingArguments` checked before any work.

    Args:
        processes: how many processes train each run together (a launcher's); each takes an equal slice of
            every batch, so the run's batches are those of one process.

    Raises:
        RecipeError: a run's settings are not valid `TrainingArguments`, or two runs have the same settings.
    """
    plans, seen = [], {}
    for overrides in recipe.points:
        key = run_key(recipe, task, dataset, overrides)
        if key in seen:
            raise RecipeError(
                f"finetune runs {seen[key]} and {overrides} have the same settings; remove one of them."
            )
        seen[key] = overrides
        folder = work_dir / run_name(overrides, key)
        args = training_arguments(recipe, overrides, folder, processes=processes)
        plans.append(RunPlan(overrides, key, folder, args))
    return plans


def training_arguments(
    recipe: FinetuneRecipe, overrides: dict, folder: Path, *, processes: int = 1
) -> TrainingArguments:
    """The run's `TrainingArguments`: hfsoup's defaults, then the recipe's `training`, then the run's overrides.

    Training writes a checkpoint (with the EMA) at the end of each epoch, or four times in a run of
    `max_steps`, and keeps the last one, so a stopped run resumes from it. Under a launcher of several
    processes, the batch size stays the run's: each batch is split between the processes (accelerate's
    `split_batches`), so the runs equal one process's to rounding; on a machine without a GPU the processes
    train on the CPU (gloo), which `TrainingArguments` does only when asked (`use_cpu`).
    """
    steps = recipe.max_steps
    settings = dict(
        output_dir=str(folder.with_name(f".{folder.name}.partial") / "trainer"),
        num_train_epochs=recipe.epochs,
        max_steps=steps if steps is not None else -1,
        per_device_train_batch_size=recipe.batch_size,
        learning_rate=recipe.learning_rate,
        train_sampling_strategy="group_by_length",
        save_strategy="epoch" if steps is None else "steps",
        save_steps=math.ceil(steps / 4) if steps is not None else 500,
        save_total_limit=1,
        report_to="none",
        logging_steps=max(1, (steps or 200) // 5),
        disable_tqdm=True,
        dataloader_pin_memory=torch.accelerator.is_available(),  # torch warns of pinning without a GPU, per run
    )
    if processes > 1:
        settings["accelerator_config"] = {"split_batches": True}
        settings["ddp_find_unused_parameters"] = False  # every weight of a classifier is used
        settings["use_cpu"] = not torch.accelerator.is_available()
    hints = _simple_hints()
    for where, extra in (("finetune.training", recipe.training or {}), ("finetune.runs", overrides)):
        for name, value in extra.items():
            if name in hints:  # TrainingArguments itself takes learning_rate="fast" and fails mid-training
                value = check_value(value, hints[name], where, name)
            settings[name] = value
    batch = settings["per_device_train_batch_size"]
    if processes > 1 and batch % processes:
        raise RecipeError(
            f"finetune run {overrides}: batch size {batch} does not split evenly between the {processes} "
            f"processes the launcher started; use a batch size that is a multiple of {processes}."
        )
    try:
        return TrainingArguments(**settings)
    except (TypeError, ValueError) as error:
        raise RecipeError(
            f"finetune run {overrides}: {str(error).splitlines()[0]}; use TrainingArguments field names and values."
        ) from error


def _simple_hints() -> dict[str, type]:
    """The `TrainingArguments` fields typed plainly as a number or a flag, whose values the recipe checks."""
    simple = (int, float, bool)
    hints = typing.get_type_hints(TrainingArguments)
    return {name: hint for name, hint in hints.items() if hint in simple}
