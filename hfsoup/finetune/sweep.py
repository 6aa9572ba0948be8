"""A sweep in; its trained runs, and the soup of their ingredients, out (`hfsoup finetune`).

The one door to training: `hfsoup finetune` and a merge recipe with a `finetune:` section both come here. The
task is resolved once, every run is trained (or reused) by [`finetune_sweep`], and the runs' ingredients go to
`hfsoup.merge.run_merge` as model folders, with the sweep's typed soup recipe.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoTokenizer

from ..eval.data import load_split
from ..eval.resolve import resolve_task
from ..eval.tasks import Task
from ..merge import Merge, run_merge
from ..recipe.finetune import FinetuneRecipe
from ..recipe.sweep import SweepRecipe
from ..soup import get_method
from ..sources import model_folder
from ..staging import check_output
from .plan import RunPlan, plan_runs
from .publish import push_run
from .start import encoded_split, shared_start, start_record
from .train import folder_kinds, train_run

logger = logging.getLogger(__name__)

__all__ = ["Sweep", "finetune_ingredients", "finetune_sweep", "run_finetune"]


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
    write_soup: bool = True,
    **merge_options,
) -> Sweep:
    """Fine-tune the sweep's runs (resuming a stopped sweep), then soup their ingredients if it has a `soup`.

    Everything that can be checked before training is: the soup's recipe and method (with the number of
    ingredients the sweep will yield, when the recipe was built), its output folder, and every run's
    `TrainingArguments`.

    Args:
        sweep: the recipe.
        token: a Hub token (a Hub base, `push_to_hub`, a pushed soup); never written anywhere.
        command: the command line that reproduces the sweep, for the cards (without secrets).
        progress: show progress bars.
        overwrite: replace an existing soup folder.
        write_soup: write the soup to `sweep.soup_dir`; `False` scores it and writes nothing.
        **merge_options: further options of [`run_merge`] for the soup (`trust_remote_metric`, `repo_id`,
            `processes`, ...).

    Returns:
        The [`Sweep`].
    """
    soup = sweep.soup
    splits = (soup.selection_split, soup.report_split) if soup else ()
    task = resolve_task(
        sweep.task,
        dataset=sweep.dataset,
        text_columns=sweep.text_columns,
        label_column=sweep.label_column,
        splits=("validation", sweep.finetune.train_split, *splits),
    )
    soup_dir = sweep.soup_dir if write_soup else None
    if soup_dir is not None:
        check_output(soup_dir, overwrite=overwrite)
    runs = finetune_sweep(
        sweep.finetune,
        task,
        dataset=sweep.dataset,
        work_dir=sweep.runs_dir,
        seed=soup.seed if soup else 0,
        token=token,
        command=command,
        progress=progress,
    )
    records = [(json.loads((plan.folder / "run.json").read_text(encoding="utf-8")), f) for plan, f in runs]
    if soup is None:
        return Sweep(records, None)
    recipe = sweep.soup_recipe([folder for _record, folders in records for folder in folders])
    start = records[0][0].get("start_folder")
    if recipe.base is None and start and get_method(recipe.method).needs_base:
        recipe = dataclasses.replace(recipe, base=start)  # the runs' common start is their soup's base
    merge = run_merge(
        recipe,
        output_dir=soup_dir,
        overwrite=overwrite,
        token=token,
        command=command,
        progress=progress,
        task=task,
        start=records[0][0].get("start"),
        **merge_options,
    )
    return Sweep(records, merge)


def finetune_sweep(
    recipe: FinetuneRecipe,
    task: Task,
    *,
    dataset: str | None,
    work_dir: Path,
    seed: int = 0,
    token: str | bool | None = None,
    command: str = "",
    progress: bool = False,
) -> list[tuple[RunPlan, list[str]]]:
    """Train every run of `recipe` on `task` that is not finished yet, pushing runs if the recipe says so.

    Every run's `TrainingArguments` are checked before any training. Finished runs with the same settings
    are reused; an unfinished one resumes from its last checkpoint, EMA included.

    Args:
        recipe: the sweep's settings.
        task: the task to train on (its training split, columns and labels).
        dataset: the dataset to read the splits from (`None` for `nyu-mll/glue`).
        work_dir: where the runs are written (`<run>-<key>/`, and the shared start `init-<key>/`).
        seed: the seed of the `selection`/`report` halves, should `train_split` name one.
        token: a Hub token, for a base on the Hub or `push_to_hub`; never written anywhere.
        command: the command that reproduces the sweep, for the cards (without secrets).
        progress: show each run's progress bar.

    Returns:
        Each run with its ingredient folders (raw, EMA, then epoch snapshots).

    Raises:
        RecipeError: a run's settings are not valid `TrainingArguments`.
    """
    plans = plan_runs(recipe, task, dataset, work_dir)
    kinds = folder_kinds(recipe)
    todo = [plan for plan in plans if not plan.done]
    if todo:
        base = model_folder(recipe.base, token=token)
        tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=False)
        train = encoded_split(recipe, task, dataset, seed, tokenizer)
        validation = load_split(task, task.eval_splits[0], dataset=dataset, seed=seed)
        start = base
        if recipe.head_seed is not None:
            start = shared_start(
                base, tokenizer, recipe, task, work_dir, dataset=dataset, seed=seed, validation=validation
            )
        describe = {
            "base": recipe.base,
            "dataset": dataset,
            "command": command,
            "start": start_record(start),
            "start_folder": str(start) if start != base else None,
        }
        done = len(plans) - len(todo)
        for position, plan in enumerate(todo, start=done + 1):
            logger.info("Run %d/%d (%d done before): %s", position, len(plans), done, plan.name)
            record = train_run(
                plan,
                start,
                tokenizer,
                task,
                train,
                recipe,
                validation=validation,
                describe=describe,
                progress=progress,
            )
            logger.info("Run %d/%d done: %s", position, len(plans), _summary(record))
    for plan in plans:
        if recipe.push_to_hub:
            push_run(plan.folder, kinds, recipe, token=token)
    return [(plan, [str(plan.folder / kind) for kind in kinds]) for plan in plans]


def finetune_ingredients(
    recipe: FinetuneRecipe, task: Task, *, dataset: str | None, work_dir: Path, seed: int = 0, **options
) -> list[str]:
    """Train the runs of `recipe` (see [`finetune_sweep`]) and return every run's ingredient folders, in order."""
    sweep = finetune_sweep(recipe, task, dataset=dataset, work_dir=work_dir, seed=seed, **options)
    return [folder for _plan, folders in sweep for folder in folders]


def _summary(record: dict) -> str:
    return ", ".join(
        f"{kind} {scores['score']:.4f}" for kind, scores in record["scores"].items() if "score" in scores
    )
