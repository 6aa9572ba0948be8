"""Fine-tuning sweeps: `transformers.Trainer` runs with `EmaTrainerCallback`, resumable, keyed by settings.

A sweep ([`FinetuneRecipe`]) is one run per point of its grid. Every run starts from one shared
initialization (`start.py`), trains with dynamic padding and length grouping, writes a checkpoint with its EMA
at each epoch so a stopped run resumes exactly (`train.py`), and ends as a folder `<run>-<key>/` of model
folders (`raw/`, `ema/`, `epoch-<k>/`) that are ingredients, each with a card and its validation scores, plus
a `run.json`. Runs are keyed by their settings (`plan.py`): a finished run is reused only if its settings are
the same. Runs can be pushed to the Hub as they finish (`publish.py`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import AutoTokenizer

from ..eval.data import load_split
from ..eval.tasks import Task
from ..recipe import FinetuneRecipe
from ..sources import model_folder
from .plan import RunPlan, plan_runs, run_key
from .publish import push_run
from .start import encoded_split, shared_start
from .train import folder_kinds, train_run

logger = logging.getLogger(__name__)

__all__ = ["RunPlan", "finetune_ingredients", "finetune_sweep", "plan_runs", "run_key"]


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
        start = base if recipe.head_seed is None else shared_start(base, tokenizer, recipe, task, work_dir)
        describe = {"base": recipe.base, "dataset": dataset, "command": command}
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
