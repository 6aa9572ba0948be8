"""Before and after a sweep's training: its outputs and scored rows checked, and the soup of its finished runs.

Before any training, the runs' folder and the soup's are checked, and a split the runs or the soup are scored on
that shares rows with the training split is warned of. After it, the finished runs are souped through
`hfsoup.merge.run_merge`: rate by rate when they span several learning rates (`rates.py`), by one process
among those that share the sweep (the soup's folder is claimed like a run), and with a refusal of
independently drawn heads phrased in the recipe's terms.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path

from ..errors import HfSoupError, IncompatibleIngredientsError, InvalidSettingError, MissingRunsError
from ..eval.overlap import shared_rows, split_rows
from ..eval.processes import Processes
from ..eval.tasks import Task
from ..merge import Merge, run_merge
from ..recipe.merge import MergeRecipe
from ..recipe.sweep import SweepRecipe
from ..soup import get_method
from ..staging import check_writable
from .claims import Claim, try_claim
from .rates import rate_groups, rates_record, selection_score

__all__ = [
    "check_finished",
    "check_runs_dir",
    "in_sweep_terms",
    "refuse_inside_run",
    "soup_claim",
    "soup_runs",
    "warn_scored_training_rows",
]

logger = logging.getLogger(__name__)


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
    check_writable(path, into=True)


def refuse_inside_run(folder: Path, what: str) -> None:
    """Refuse a folder inside a finished run of a sweep (the run's files would mix with it)."""
    for ancestor in folder.expanduser().resolve().parents:
        if (ancestor / "run.json").is_file():
            raise InvalidSettingError(
                f"{what} {folder} is inside the finished run {ancestor} of another sweep; choose a folder outside it."
            )


def in_sweep_terms(error: IncompatibleIngredientsError) -> IncompatibleIngredientsError:
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


def check_finished(
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


def soup_runs(sweep, records, task, soup_dir, missing, options) -> Merge:
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
def soup_claim(soup_dir: Path | None, existed: bool, stale_after: float, processes: Processes):
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
