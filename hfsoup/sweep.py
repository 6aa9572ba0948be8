"""A sweep recipe in; its trained runs, and the soup of their ingredients, out (`hfsoup finetune`)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from .eval.resolve import resolve_task
from .pipeline import Merge, run_merge
from .soup import get_method
from .staging import check_output
from .sweep_recipe import SweepRecipe

__all__ = ["Sweep", "run_finetune"]


@dataclass
class Sweep:
    """A finished fine-tuning sweep: each run's record (`run.json`) and ingredient folders, and the soup."""

    runs: list[tuple[dict, list[str]]]
    merge: Merge | None


def run_finetune(
    sweep: SweepRecipe,
    *,
    token: str | bool | None = None,
    command: str = "",
    progress: bool = True,
    overwrite: bool = False,
    trust_remote_metric: bool = False,
) -> Sweep:
    """Fine-tune the sweep's runs (resuming a stopped sweep), then soup their ingredients if it has a `soup`.

    Everything that can be checked before training is: the soup's recipe and method (with the number of
    ingredients the sweep will yield), its output folder, and every run's `TrainingArguments`.

    Args:
        sweep: the recipe.
        token: a Hub token (a Hub base, `push_to_hub`, a pushed soup); never written anywhere.
        command: the command line that reproduces the sweep, for the cards (without secrets).
        progress: show progress bars.
        overwrite: replace an existing soup folder.
        trust_remote_metric: allow a soup metric that is neither shipped nor local.

    Returns:
        The [`Sweep`].
    """
    from .finetune import finetune_sweep

    task = resolve_task(
        sweep.task,
        dataset=sweep.dataset,
        text_columns=sweep.text_columns,
        label_column=sweep.label_column,
        splits=("validation", sweep.finetune.train_split),
    )
    soup_dir = sweep.soup_dir
    if soup_dir is not None:
        planned = sweep.soup_recipe([])  # the soup of the ingredients the sweep will yield
        get_method(planned.method).check_count(planned.ingredient_count)
        check_output(soup_dir, overwrite=overwrite)
    runs = finetune_sweep(
        sweep.finetune,
        task,
        dataset=sweep.dataset,
        work_dir=sweep.runs_dir,
        token=token,
        command=command,
        progress=progress,
    )
    records = [
        (json.loads((plan.folder / "run.json").read_text(encoding="utf-8")), folders)
        for plan, folders in runs
    ]
    if soup_dir is None:
        return Sweep(records, None)
    recipe = sweep.soup_recipe([folder for _record, folders in records for folder in folders])
    merge = run_merge(
        recipe,
        output_dir=soup_dir,
        overwrite=overwrite,
        token=token,
        command=command,
        progress=progress,
        trust_remote_metric=trust_remote_metric,
    )
    return Sweep(records, merge)
