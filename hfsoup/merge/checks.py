"""The checks of a merge that name a user's mistake: the task against the models, the inputs, the output."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from huggingface_hub import split_torch_state_dict_into_shards

from ..errors import IncompatibleIngredientsError, InvalidSettingError
from ..eval.overlap import shared_rows, split_rows
from ..eval.tasks import Task
from ..recipe.merge import MergeRecipe
from ..soup import Ingredient, get_method
from ..soup.compat.labels import is_generic
from ..sources import LocalSource

__all__ = [
    "check_content",
    "checked_shard_size",
    "fit_task",
    "local_inputs",
    "refuse_independent_heads",
    "refuse_shared_rows",
]

logger = logging.getLogger(__name__)


def fit_task(task: Task, first: Ingredient, label_names: list[str] | None) -> Task:
    """The task, checked against the models' number of outputs; class ids without names take the models' names.

    Raises:
        InvalidSettingError: the models output another number of logits than the task has labels.
    """
    outputs = first.config.num_labels
    if outputs != task.num_labels:
        kind = "a regression (one score)" if task.is_regression else f"{task.num_labels} classes"
        shown = ", ".join(task.label_names[:8]) + (", ..." if task.num_labels > 8 else "")
        raise InvalidSettingError(
            f"the models output {outputs} logit(s) but label column {task.label_column!r} of task {task.name} has "
            f"{kind}{f' ({shown})' if shown else ''}: score on the task or label column the models were "
            "fine-tuned on (--task, --dataset, --label-column)."
        )
    if task.label_names and is_generic(task.label_names) and label_names:
        return dataclasses.replace(task, label_names=tuple(label_names))
    return task


def local_inputs(recipe: MergeRecipe) -> list[Path]:
    """The recipe's inputs that are local paths (models, base, dataset, metric, fine-tuning base)."""
    named = [*recipe.models, recipe.base, recipe.dataset, recipe.metric]
    return [Path(name).expanduser() for name in named if name and Path(name).expanduser().exists()]


def checked_shard_size(size: int | str) -> int | str:
    """Refuse a shard size `save_pretrained` would not read (it splits with the same huggingface_hub helper)."""
    try:
        split_torch_state_dict_into_shards({}, max_shard_size=size)
        if isinstance(size, int) and size < 1:
            raise ValueError(size)
    except ValueError as error:
        raise InvalidSettingError(
            f"--max-shard-size must be a number of bytes or a size such as 500MB or 5GB, got {size!r}."
        ) from error
    return size


def refuse_independent_heads(recipe: MergeRecipe, report, allow: bool) -> None:
    """A uniform or weighted soup of independently initialized heads averages noise: refuse it unless allowed.

    A greedy or exhaustive soup may proceed (each keeps a mix only if its held-out score is better; the
    report's warning says it will likely keep one ingredient), and so may an explicit `allow`.
    """
    if not report.independent_tensors or allow or get_method(recipe.method).chooses or recipe.refit_head:
        return  # a refitted head replaces the averaged one
    names = ", ".join(report.independent_tensors[:3])
    raise IncompatibleIngredientsError(
        f"{names} look(s) independently initialized in each ingredient while the backbones agree, so a "
        f"{recipe.method} soup would average unrelated random heads: fine-tune every run from one shared "
        "initialization (hfsoup's finetune does, with head_seed), use --method greedy, or pass "
        "--refit-head to fit a new head on the soup, or --allow-independent-heads to average them anyway.",
        report=report,
    )


def check_content(recipe: MergeRecipe, ingredients: list[Ingredient]) -> None:
    """Refuse local ingredients whose weights differ from those a replayed soup.yaml recorded."""
    for ingredient in ingredients:
        expected = (recipe.content_hashes or {}).get(ingredient.reference)
        if (
            expected
            and isinstance(ingredient.source, LocalSource)
            and ingredient.source.content_hash != expected
        ):
            raise InvalidSettingError(
                f"{ingredient.reference} changed since the soup.yaml was written (its weights' {expected[:15]}... "
                "no longer match), so the replay would not rebuild that soup: restore the folder, or merge the "
                "folders anew without --recipe."
            )


def refuse_shared_rows(recipe: MergeRecipe, task: Task, specs: dict[str, str]) -> dict[str, int]:
    """Refuse a report split that shares rows with the selection split, unless the recipe allows it.

    Returns:
        Report split -> how many of its rows the selection split also reads (only those that share any).

    Raises:
        InvalidSettingError: some report rows are selection rows and `allow_overlapping_splits` is not set.
    """
    selection = split_rows(task, specs["selection"], dataset=recipe.dataset, seed=recipe.seed)
    shared = {}
    for role, spec in specs.items():
        if role == "selection":
            continue
        report = split_rows(task, spec, dataset=recipe.dataset, seed=recipe.seed)
        count = shared_rows(selection, report)
        if count and not recipe.allow_overlapping_splits:
            total = sum(len(rows) for rows in report.values())
            raise InvalidSettingError(
                f"the report split {spec!r} shares {count} of its {total} rows with the selection split "
                f"{specs['selection']!r}, so the soup would be reported on rows it was chosen on; choose disjoint "
                "splits (e.g. --selection-split 'validation[:50%]' --report-split 'validation[50%:]'), or pass "
                "--allow-overlapping-splits (the card and the table then say so)."
            )
        if count:
            shared[spec] = count
            logger.warning(
                "The report split %r shares %d rows with the selection split: not held out.", spec, count
            )
    return shared
