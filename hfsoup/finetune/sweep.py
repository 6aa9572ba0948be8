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

from ..errors import IncompatibleIngredientsError
from ..eval.data import load_split
from ..eval.processes import Processes
from ..eval.resolve import resolve_task
from ..eval.tasks import Task
from ..merge import Merge
from ..recipe.finetune import FinetuneRecipe
from ..recipe.sweep import SweepRecipe
from ..sources import model_folder
from ..staging import check_output
from .branch import train_trunk, trunk_checkpoint, trunk_plan
from .claims import STALE_AFTER, Claims
from .plan import RunPlan, plan_runs
from .publish import push_run
from .shard import Shard
from .souping import (
    check_finished,
    check_runs_dir,
    in_sweep_terms,
    refuse_inside_run,
    soup_claim,
    soup_runs,
    warn_scored_training_rows,
)
from .start import encoded_split, shared_start, start_record
from .train import folder_kinds, train_run

logger = logging.getLogger(__name__)

__all__ = ["Sweep", "finetune_ingredients", "finetune_sweep", "run_finetune"]


@dataclass
class Sweep:
    """A finetuning sweep as this process left it: the finished runs, those not finished, and the soup.

    Args:
        runs: each finished run's record (`run.json`) and ingredient folders.
        merge: the soup, when this process made it.
        missing: the runs not finished (another shard's, or ones other processes still train).
        soup_by: who makes (or made) the soup when another process does, e.g. `host pid 12`.
    """

    runs: list[tuple[dict, list[str]]]
    merge: Merge | None
    missing: list[str] = dataclasses.field(default_factory=list)
    soup_by: str | None = None


def run_finetune(
    sweep: SweepRecipe,
    *,
    token: str | bool | None = None,
    command: str = "",
    progress: bool = True,
    overwrite: bool = False,
    write_soup: bool = True,
    shard: Shard | None = None,
    soup_only: bool = False,
    allow_missing: bool = False,
    stale_after: float = STALE_AFTER,
    processes: Processes | None = None,
    **merge_options,
) -> Sweep:
    """Fine-tune the sweep's runs (resuming a stopped sweep), then soup their ingredients if it has a `soup`.

    Everything that can be checked before training is: the soup's recipe and method (with the number of
    ingredients the sweep will yield, when the recipe was built), its output folder, and every run's
    `TrainingArguments`. Processes that run the same sweep into one folder share its runs (each run is
    claimed before it trains); the soup is made by the first to finish, once every run is.

    Args:
        sweep: the recipe.
        token: a Hub token (a Hub base, `push_to_hub`, a pushed soup); never written anywhere.
        command: the command line that reproduces the sweep, for the cards (without secrets).
        progress: show progress bars.
        overwrite: replace an existing soup folder.
        write_soup: write the soup to `sweep.soup_dir`; `False` scores it and writes nothing.
        shard: train only this [`Shard`]'s share of the runs, and make no soup.
        soup_only: train nothing: soup the finished runs (all of them, unless `allow_missing`).
        allow_missing: with `soup_only`, soup the finished runs even if some are missing (the card names them).
        stale_after: seconds after which another host's untouched claim on a run is taken over.
        processes: the processes a launcher started; `None` for this one.
        **merge_options: further options of [`run_merge`] for the soup (`trust_remote_metric`, `repo_id`,
            ...).

    Returns:
        The [`Sweep`].

    Raises:
        MissingRunsError: `soup_only` without `allow_missing`, and some runs are not finished.
    """
    processes = processes or Processes()
    soup = sweep.soup if shard is None else None
    splits = (soup.selection_split, soup.report_split) if soup else ()
    task = resolve_task(
        sweep.task,
        dataset=sweep.dataset,
        text_columns=sweep.text_columns,
        label_column=sweep.label_column,
        splits=("validation", sweep.finetune.train_split, *splits),
    )
    soup_dir = sweep.soup_dir if write_soup and soup else None
    check_runs_dir(sweep.runs_dir)
    if soup_dir is not None:
        check_output(soup_dir, overwrite=overwrite)
        refuse_inside_run(soup_dir, "the soup's folder")
    warn_scored_training_rows(sweep, task, soup)
    existed = soup_dir is not None and soup_dir.exists()
    runs = finetune_sweep(
        sweep.finetune,
        task,
        dataset=sweep.dataset,
        work_dir=sweep.runs_dir,
        seed=soup.seed if soup else 0,
        token=token,
        command=command,
        progress=progress,
        shard=shard,
        train=not soup_only,
        wait=soup is not None,
        stale_after=stale_after,
        processes=processes,
    )
    records = [
        (json.loads((plan.folder / "run.json").read_text(encoding="utf-8")), f)
        for plan, f in runs
        if plan.done
    ]
    missing = [plan.name for plan, _folders in runs if not plan.done]
    if soup is None or (missing and not soup_only):
        return Sweep(records, None, missing)
    check_finished(sweep.runs_dir, len(runs), len(records), missing, allow_missing)
    options = dict(overwrite=overwrite, token=token, command=command, progress=progress, processes=processes)
    with soup_claim(soup_dir, existed, stale_after, processes) as holder:
        if holder is not None:
            return Sweep(records, None, missing, soup_by=holder)
        try:
            merge = soup_runs(sweep, records, task, soup_dir, missing, {**options, **merge_options})
        except IncompatibleIngredientsError as error:
            raise in_sweep_terms(error) from error
    return Sweep(records, merge, missing)


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
    shard: Shard | None = None,
    train: bool = True,
    wait: bool = True,
    stale_after: float = STALE_AFTER,
    processes: Processes | None = None,
) -> list[tuple[RunPlan, list[str]]]:
    """Train every run of `recipe` on `task` that is not finished yet (or this shard's), pushing runs if asked.

    Every run's `TrainingArguments` are checked before any training. Finished runs with the same settings
    are reused; an unfinished one resumes from its last checkpoint, EMA included. Each run is claimed by a lock
    file before it trains (`claims.py`), so processes that run the same sweep into one folder share its runs.

    Args:
        recipe: the sweep's settings.
        task: the task to train on (its training split, columns and labels).
        dataset: the dataset to read the splits from (`None` for `nyu-mll/glue`).
        work_dir: where the runs are written (`<run>-<key>/`, and the shared start `init-<key>/`).
        seed: the seed of the `selection`/`report` halves, should `train_split` name one.
        token: a Hub token, for a base on the Hub or `push_to_hub`; never written anywhere.
        command: the command that reproduces the sweep, for the cards (without secrets).
        progress: show each run's progress bar.
        shard: train only this [`Shard`]'s runs.
        train: `False` trains nothing (`--soup-only`): the runs as they are.
        wait: wait for runs that other processes are training (to soup them); `False` leaves them to those.
        stale_after: seconds after which another host's untouched claim is taken over.
        processes: the processes a launcher started (each run trains on all of them, under DDP); `None` for one.

    Returns:
        Every run of the sweep (finished or not: see `RunPlan.done`) with its ingredient folders (raw, EMA,
        then epoch snapshots).

    Raises:
        RecipeError: a run's settings are not valid `TrainingArguments`.
    """
    processes = processes or Processes()
    plans = plan_runs(recipe, task, dataset, work_dir, processes=processes.count)
    mine = shard.take(plans) if shard else plans
    if shard:
        logger.info(
            "This is %s: it takes %d of the %d runs: %s",
            shard.describe(), len(mine), len(plans), ", ".join(plan.name for plan in mine) or "none",
        )  # fmt: skip
    if train and not all(plan.done for plan in mine):
        setup = _setup(recipe, task, dataset, work_dir, seed, token, command, processes)
        if recipe.branch_at is not None:
            setup["trunk"] = _trunk(plans[0], setup, dataset, work_dir, stale_after, progress, processes)
        work = Claims(mine, work_dir, wait=wait, stale_after=stale_after, processes=processes)
        for plan in work:
            done = sum(p.done for p in plans)
            logger.info("Run %d/%d (%d done): %s", done + 1, len(plans), done, plan.name)
            record = train_run(plan, progress=progress, processes=processes, **setup)
            if record is not None:
                logger.info("Run %s done: %s", plan.name, _summary(record))
    kinds = folder_kinds(recipe)
    for plan in mine:
        if recipe.push_to_hub and plan.done and processes.is_main:
            push_run(plan.folder, kinds, recipe, token=token)
    return [(plan, [str(plan.folder / kind) for kind in kinds]) for plan in plans]


def _trunk(
    first: RunPlan, setup: dict, dataset, work_dir: Path, stale_after: float, progress, processes
) -> Path:
    """The checkpoint every run of a branched sweep starts from: trained once (claimed like a run), or reused."""
    recipe, task = setup["recipe"], setup["task"]
    trunk = trunk_plan(recipe, task, dataset, work_dir, first, setup["train"].num_rows, processes.count)
    for plan in Claims([trunk], work_dir, wait=True, stale_after=stale_after, processes=processes):
        logger.info(
            "The trunk every run branches from: %s, %d steps", plan.name, plan.overrides["trunk_until"]
        )
        train_trunk(plan, progress=progress, processes=processes, **setup)
    return trunk_checkpoint(trunk)


def _setup(recipe, task, dataset, work_dir, seed, token, command, processes) -> dict:
    """What every run of the sweep shares: its start (built once), tokenizer, encoded data and card facts."""
    base = model_folder(recipe.base, token=token)
    tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=False)
    train = encoded_split(recipe, task, dataset, seed, tokenizer)
    validation = load_split(task, task.eval_splits[0], dataset=dataset, seed=seed)
    start = base
    if recipe.head_seed is not None:
        for turn in ("main", "others"):  # the main process builds the start; the others then find it
            if processes.is_main == (turn == "main"):
                start = shared_start(
                    base, tokenizer, recipe, task, work_dir, dataset=dataset, seed=seed, validation=validation
                )
            processes.wait()
    describe = {
        "base": recipe.base,
        "dataset": dataset,
        "command": command,
        "start": start_record(start),
        "start_folder": str(start) if start != base else None,
    }
    return dict(
        start=start,
        tokenizer=tokenizer,
        task=task,
        train=train,
        recipe=recipe,
        validation=validation,
        describe=describe,
    )


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
