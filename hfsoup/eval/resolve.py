"""From what a user names to a [`Task`]: a registered task, or any text-classification dataset and its columns.

[`resolve_task`] is the one place that turns `--task`, or `--dataset` with `--text-column` and `--label-column`,
into the task a merge (or a fine-tuning run) scores on. A task a dataset defines takes its labels from the
data:

- a `ClassLabel` column: its names, in its id order;
- a string column: the sorted distinct labels (`contradiction`, `entailment`, `neutral`);
- an integer column without names: class ids `0..max`, named `LABEL_0`, `LABEL_1`, ... (models' own names
  are kept, aligned by id);
- a float column: a regression (one logit), as STS-B.

Its default metric is accuracy for a classification and the mean of the Pearson and Spearman correlations
for a regression, both shipped with hfsoup (`hfsoup/eval/metrics`), so they load offline.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import datasets

from ..errors import DatasetError, InvalidSettingError
from .data import read_split
from .tasks import HALVES, MeanOf, Task, get_task

__all__ = ["CLASSIFICATION_METRIC", "REGRESSION_METRIC", "resolve_task"]

logger = logging.getLogger(__name__)

CLASSIFICATION_METRIC = "accuracy"
REGRESSION_METRIC = "pearson_spearman"
_CORRELATIONS = MeanOf(("pearson", "spearmanr"))
_STRINGS = ("string", "large_string")


def resolve_task(
    task: str | None = None,
    *,
    dataset: str | None = None,
    text_columns: Sequence[str] | None = None,
    label_column: str | None = None,
    splits: Sequence[str] = ("validation",),
) -> Task:
    """The task to score on: a registered task by name, or the task a dataset's columns define.

    Args:
        task: a registered task (`mrpc`, or one added with [`register_task`]); `text_columns` and
            `label_column`, when given, replace its columns. `None` defines the task from `dataset`.
        dataset: a Hub dataset id, a local folder laid out like one, or a data file (`.csv`, `.tsv`, `.json`,
            `.jsonl`, `.parquet`); needed when `task` is `None`.
        text_columns: the one or two text columns fed to the tokenizer, in order (needed when `task` is `None`).
        label_column: the gold label column; `"label"` when `task` is `None` and it is not given.
        splits: the splits that will be scored (`datasets` syntax, or `"selection"`/`"report"`, the halves of
            `validation`): their labels, read whole (`validation` for `validation[:50%]`), make the label names.

    Returns:
        The task; one a dataset defines is named after the dataset (a Hub id's name, or a file's stem) and is
        not registered.

    Raises:
        [`UnknownNameError`]: `task` is not registered.
        [`InvalidSettingError`]: neither a task nor a dataset with text columns is given, or not one or two
            text columns.
        [`DatasetError`]: the dataset cannot be read, lacks a column, or its label column holds no usable labels.

    Example:

    ```python
    >>> resolve_task(dataset="snli.jsonl", text_columns=["premise", "hypothesis"]).label_names
    ('contradiction', 'entailment', 'neutral')
    >>> resolve_task(dataset="reviews.parquet", text_columns=["text"]).metric_name
    'accuracy'
    ```
    """
    if text_columns is not None and len(text_columns) not in (1, 2):
        raise InvalidSettingError(
            f"give one or two text columns (a text, or a pair such as premise hypothesis), got {list(text_columns)}"
        )
    if task is not None:
        found = get_task(task)
        return dataclasses.replace(
            found,
            text_columns=tuple(text_columns or found.text_columns),
            label_column=label_column or found.label_column,
        )
    if dataset is None:
        raise InvalidSettingError(
            "name the task to score on: --task (e.g. mrpc), or --dataset with --text-column (and --label-column)"
        )
    if not text_columns:
        raise InvalidSettingError(
            f"--dataset {dataset} without --task needs --text-column, the one or two text columns to score on "
            "(e.g. --text-column text, or --text-column premise hypothesis)"
        )
    draft = Task(
        name=_name(dataset),
        text_columns=tuple(text_columns),
        label_column=label_column or "label",
        label_names=(),
    )
    halved = draft.eval_splits[0]
    wholes = {halved if split in HALVES else split.partition("[")[0]: split in HALVES for split in splits}
    rows = [_read(draft, dataset, whole, halved=wholes[whole]) for whole in wholes]
    feature = rows[0].features[draft.label_column]
    where = f"label column {draft.label_column!r} of {dataset!r}"
    if isinstance(feature, datasets.ClassLabel):
        names = tuple(feature.names)
    elif getattr(feature, "dtype", None) in _STRINGS:
        names = tuple(sorted({label for part in rows for label in part.unique(draft.label_column) if label}))
    elif getattr(feature, "dtype", "").startswith("float"):
        logger.info("The %s holds numbers: a regression task, scored by %s", where, _CORRELATIONS)
        return _with_labels(draft, ())
    elif getattr(feature, "dtype", "").startswith(("int", "uint")):
        top = max(max(part.unique(draft.label_column)) for part in rows)
        names = tuple(f"LABEL_{index}" for index in range(top + 1))
    else:
        raise DatasetError(
            f"the {where} holds {feature}; it must hold class names (strings or a ClassLabel), class ids "
            "(integers) or numbers (floats, a regression): name another column with --label-column"
        )
    if len(names) < 2:
        raise DatasetError(
            f"the {where} has {len(names)} class(es) {list(names)}; a classifier needs at least two: name the "
            "label column with --label-column, or score on splits that hold every class"
        )
    logger.info("The %s has %d classes: %s", where, len(names), ", ".join(names))
    return _with_labels(draft, names)


def _with_labels(draft: Task, names: tuple[str, ...]) -> Task:
    """The draft task with its labels, and the default metric and selection score of their kind."""
    return Task(
        name=draft.name,
        text_columns=draft.text_columns,
        label_column=draft.label_column,
        label_names=names,
        metric_name=CLASSIFICATION_METRIC if names else REGRESSION_METRIC,
        selection_key="accuracy" if names else _CORRELATIONS,
    )


def _name(dataset: str) -> str:
    """The task's name: a data file's stem, a folder's name, or the name of a Hub id (`imdb` for `stanfordnlp/imdb`)."""
    path = Path(dataset)
    return path.stem if path.is_file() else path.name


def _read(draft: Task, dataset: str, split: str, *, halved: bool) -> datasets.Dataset:
    """One whole split, checked to have the draft task's columns."""
    rows = read_split(draft, dataset, split, halved=halved)
    missing = [column for column in draft.columns if column not in rows.column_names]
    if missing:
        raise DatasetError(
            f"split {split!r} of {dataset!r} has no column(s) {missing}; its columns: {', '.join(rows.column_names)}"
            ": name the text column(s) with --text-column and the label column with --label-column"
        )
    return rows
