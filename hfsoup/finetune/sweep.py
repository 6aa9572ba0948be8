"""A sweep in; its trained runs, and the soup of their ingredients, out (`hfsoup finetune`).

The one door to training: `hfsoup finetune` and a merge recipe with a `finetune:` section both come here. The
task is resolved once, every run is trained (or reused) by [`finetune_sweep`], and the runs' ingredients go to
`hfsoup.merge.run_merge` as model folders, with the sweep's typed soup recipe.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoTokenizer

from ..errors import HfSoupError, IncompatibleIngredientsError, InvalidSettingError, MissingRunsError
from ..eval.data import load_split
from ..eval.overlap import shared_rows, split_rows
from ..eval.processes import Processes
from ..eval.resolve import resolve_task
from ..eval.tasks import Task
from ..merge import Merge, run_merge
from ..recipe.finetune import FinetuneRecipe
from ..recipe.merge import MergeRecipe
from ..recipe.sweep import SweepRecipe
from ..soup import get_method
from ..sources import model_folder
from ..staging import check_output
from .claims import STALE_AFTER, Claim, Claims, try_claim
from .plan import RunPlan, plan_runs
from .publish import push_run
from .rates import rate_groups, rates_record, selection_score
from .shard import Shard
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
    _check_finished(sweep.runs_dir, len(runs), len(records), missing, allow_missing)
    options = dict(overwrite=overwrite, token=token, command=command, progress=progress, processes=processes)
    with _soup_claim(soup_dir, existed, stale_after, processes) as holder:
        if holder is not None:
            return Sweep(records, None, missing, soup_by=holder)
        try:
            merge = _soup(sweep, records, task, soup_dir, missing, {**options, **merge_options})
        except IncompatibleIngredientsError as error:
            raise _in_sweep_terms(error) from error
    return Sweep(records, merge, missing)


def warn_scored_training_rows(sweep: SweepRecipe, task: Task, soup: MergeRecipe | None) -> None:
    """Warn, before any training, when a split the runs or the soup are scored on shares rows with training.

    A dataset that cannot be read is left to the loading that follows, which says what is wrong with it.
    """
    train = sweep.finetune.train_split
    seed = soup.seed if soup else 0
    scored = {"the runs' validation scores": task.eval_splits[0]}
    if soup:
        scored.update({"the soup's selection": soup.selection_split, "the soup's report": soup.report_split})
    try:
        trained = split_rows(task, train, dataset=sweep.dataset, seed=seed)
        shared = {
            (what, split): shared_rows(trained, split_rows(task, split, dataset=sweep.dataset, seed=seed))
            for what, split in scored.items()
        }
    except HfSoupError:
        return
    for (what, split), count in shared.items():
        if count:
            logger.warning(
                "%s split %r shares %d rows with the training split %r: those scores are on rows the runs "
                "were trained on.",
                what.capitalize(), split, count, train,
            )  # fmt: skip


def check_runs_dir(runs_dir: Path) -> None:
    """Check, before any work, that the runs can be written to `runs_dir` (which may hold a stopped sweep).

    Raises:
        InvalidSettingError: it is a file, lies inside a finished run or under a file, or cannot be written.
    """
    path = runs_dir.expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise InvalidSettingError(f"the runs' folder {runs_dir} is a file; choose a folder for --output-dir.")
    refuse_inside_run(runs_dir, "the runs' folder")
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise InvalidSettingError(
            f"cannot write the runs to {runs_dir}: {ancestor} is not a writable folder; choose another --output-dir."
        )


def refuse_inside_run(folder: Path, what: str) -> None:
    """Refuse a folder inside a finished run of a sweep (the run's files would mix with it)."""
    for ancestor in folder.expanduser().resolve().parents:
        if (ancestor / "run.json").is_file():
            raise InvalidSettingError(
                f"{what} {folder} is inside the finished run {ancestor} of another sweep; choose a folder outside it."
            )


def _in_sweep_terms(error: IncompatibleIngredientsError) -> IncompatibleIngredientsError:
    """The refusal of a soup of independently drawn heads, with the fixes a sweep's recipe offers."""
    report = error.report
    if report is None or not report.independent_tensors:
        return error
    names = ", ".join(report.independent_tensors[:3])
    return IncompatibleIngredientsError(
        f"the runs' {names} look(s) independently initialized (each run drew its own head), so their soup would "
        "average unrelated random heads: start every run from one shared head (drop head_seed: null from the "
        "recipe), or set soup: {method: greedy} or soup: {refit_head: true}, or pass --allow-independent-heads "
        "to average them anyway.",
        report=report,
    )


def _check_finished(
    runs_dir: Path, count: int, finished: int, missing: list[str], allow_missing: bool
) -> None:
    """Refuse to soup a sweep with missing runs (unless `allow_missing`), or with none finished."""
    if missing and not allow_missing:
        raise MissingRunsError(
            f"{len(missing)} of {count} runs are not finished in {runs_dir}: {', '.join(missing)}; train them "
            "first (hfsoup finetune without --soup-only), or pass --allow-missing to soup the "
            f"{finished} finished ones.",
            runs=missing,
        )
    if not finished:
        raise MissingRunsError(
            f"no run of the sweep is finished in {runs_dir}; train them first.", runs=missing
        )


def _soup(sweep, records, task, soup_dir, missing, options) -> Merge:
    """The soup of the finished runs, written: of all of them, or of the rate whose soup scores best (`rates.py`)."""
    groups = rate_groups(records, sweep.finetune.learning_rate)
    if len(groups) == 1 or sweep.mix_rates:
        rates = rates_record(None, list(groups)) if len(groups) > 1 else None
        return _merge_of(sweep, records, task, soup_dir, missing, options, rates)
    scores = {
        rate: selection_score(_merge_of(sweep, group, task, None, missing, options, None).result)
        for rate, group in groups.items()
    }
    rates = rates_record(scores, list(groups))
    return _merge_of(sweep, groups[rates["chosen"]], task, soup_dir, missing, options, rates)


def _merge_of(sweep, records, task, soup_dir, missing, options, rates) -> Merge:
    """The soup of these runs' ingredients, through `run_merge`; a sweep's start is its natural base."""
    recipe = sweep.soup_recipe([folder for _record, folders in records for folder in folders])
    start = records[0][0].get("start_folder")
    if recipe.base is None and start and get_method(recipe.method).needs_base:
        recipe = dataclasses.replace(recipe, base=start)  # the runs' common start is their soup's base
    return run_merge(
        recipe,
        output_dir=soup_dir,
        task=task,
        start=records[0][0].get("start"),
        missing_runs=missing,
        rates=rates,
        **options,
    )


@contextlib.contextmanager
def _soup_claim(soup_dir: Path | None, existed: bool, stale_after: float, processes: Processes):
    """Claim the soup's folder (the main process decides for all); yields `None`, or who makes it instead.

    A soup folder that appeared since the sweep began (`check_output` found none) was made by another
    process sharing the sweep: it is left alone.
    """
    claim, holder = None, None
    if soup_dir is not None and processes.is_main:
        soup_dir.parent.mkdir(parents=True, exist_ok=True)
        got = try_claim(soup_dir.with_name(f"{soup_dir.name}.lock"), stale_after=stale_after)
        if isinstance(got, Claim):
            claim = got
            if soup_dir.exists() and not existed:
                holder = "another process sharing the sweep (it is written)"
        else:
            holder = got.describe()
    holder = processes.broadcast(holder)
    try:
        yield holder
    finally:
        if claim is not None:
            claim.release()


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
