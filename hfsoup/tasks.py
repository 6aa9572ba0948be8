"""The GLUE task registry: each task's columns, labels, metric and leaderboard score, and its held-out splits.

Columns, label names and label order are those of the Hub dataset `nyu-mll/glue`. Metrics come from the GLUE
`evaluate` module shipped with hfsoup (`hfsoup/metrics/glue`), which loads offline.

Held-out scoring: a soup must be *selected* on data other than the data it is *reported* on. By default the
validation split of a task (`Task.eval_splits[0]`) is cut into two fixed halves, `"selection"` and `"report"`,
by a seeded permutation: the same seed and split always give the same, disjoint halves that together cover
every row. For MNLI the halves come from `validation_matched`; `validation_mismatched` is never used for
selection, so it is reported whole next to the `"report"` half (`Task.report_splits`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import datasets
import evaluate
import numpy as np

from .errors import DatasetError, UnknownNameError

logger = logging.getLogger(__name__)

DEFAULT_DATASET = "nyu-mll/glue"
GLUE_METRIC_DIR = Path(__file__).parent / "metrics" / "glue"
HALVES = ("selection", "report")

# Data-file suffixes `load_split` reads, with the `datasets` builder and its options for each.
DATA_FILE_BUILDERS: dict[str, tuple[str, dict[str, str]]] = {
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"sep": "\t"}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".parquet": ("parquet", {}),
}


def _lookup(metrics: Mapping[str, float], key: str) -> float:
    if key not in metrics:
        raise UnknownNameError(
            f"metric key {key!r} is not in the metric's output; valid keys: {', '.join(metrics)}"
        )
    return metrics[key]


@dataclass(frozen=True)
class MeanOf:
    """A leaderboard score that is the mean of several metric keys, e.g. F1 and accuracy for MRPC.

    Example:

    ```python
    >>> MeanOf(("f1", "accuracy"))({"f1": 0.9, "accuracy": 0.8})
    0.85
    ```
    """

    keys: tuple[str, ...]

    def __call__(self, metrics: Mapping[str, float]) -> float:
        return sum(_lookup(metrics, key) for key in self.keys) / len(self.keys)

    def __str__(self) -> str:
        return "mean of " + " and ".join(self.keys)


@dataclass(frozen=True, kw_only=True)
class Task:
    """One GLUE task.

    Args:
        name: the task, also the config of `nyu-mll/glue` and of the GLUE metric, e.g. `"mrpc"`.
        text_columns: the one or two text columns fed to the tokenizer, in order.
        label_column: the gold label column.
        label_names: class names in label-id order; empty for a regression task (STS-B).
        metric_name: the `evaluate` module; `"glue"` means the GLUE module shipped with hfsoup.
        selection_key: how the leaderboard score is read from the metric's output: a key, or a callable
            such as [`MeanOf`]. `str(selection_key)` describes it.
        eval_splits: the validation split(s); the first is cut into the `"selection"` and `"report"` halves,
            the others are reported whole.

    Example:

    ```python
    >>> task = get_task("mrpc")
    >>> task.leaderboard_score({"accuracy": 0.8, "f1": 0.9})
    0.85
    ```
    """

    name: str
    text_columns: tuple[str, ...]
    label_column: str = "label"
    label_names: tuple[str, ...]
    metric_name: str = "glue"
    selection_key: str | Callable[[Mapping[str, float]], float] = "accuracy"
    eval_splits: tuple[str, ...] = ("validation",)

    @property
    def is_regression(self) -> bool:
        """Whether the label is a real number (one logit) rather than a class id."""
        return not self.label_names

    @property
    def num_labels(self) -> int:
        """The number of logits a model for this task outputs."""
        return len(self.label_names) or 1

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column a dataset must have for this task."""
        return (*self.text_columns, self.label_column)

    @property
    def report_splits(self) -> tuple[str, ...]:
        """The held-out splits a result is reported on: the `"report"` half, then any other validation split."""
        return ("report", *self.eval_splits[1:])

    def leaderboard_score(self, metrics: Mapping[str, float]) -> float:
        """The single number soups are selected by, read from a metric's output.

        Raises:
            [`UnknownNameError`]: a key the score needs is not in `metrics`.
        """
        if callable(self.selection_key):
            return float(self.selection_key(metrics))
        return float(_lookup(metrics, self.selection_key))


_PAIR = ("sentence1", "sentence2")
_F1_ACC = MeanOf(("f1", "accuracy"))

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            name="cola",
            text_columns=("sentence",),
            label_names=("unacceptable", "acceptable"),
            selection_key="matthews_correlation",
        ),
        Task(name="sst2", text_columns=("sentence",), label_names=("negative", "positive")),
        Task(
            name="mrpc",
            text_columns=_PAIR,
            label_names=("not_equivalent", "equivalent"),
            selection_key=_F1_ACC,
        ),
        Task(
            name="qqp",
            text_columns=("question1", "question2"),
            label_names=("not_duplicate", "duplicate"),
            selection_key=_F1_ACC,
        ),
        Task(name="stsb", text_columns=_PAIR, label_names=(), selection_key=MeanOf(("pearson", "spearmanr"))),
        Task(
            name="mnli",
            text_columns=("premise", "hypothesis"),
            label_names=("entailment", "neutral", "contradiction"),
            eval_splits=("validation_matched", "validation_mismatched"),
        ),
        Task(
            name="qnli", text_columns=("question", "sentence"), label_names=("entailment", "not_entailment")
        ),
        Task(name="rte", text_columns=_PAIR, label_names=("entailment", "not_entailment")),
        Task(name="wnli", text_columns=_PAIR, label_names=("not_entailment", "entailment")),
    )
}


def get_task(name: str) -> Task:
    """The registered task called `name` (case-insensitive, `"sst-2"` and `"sts-b"` spellings accepted).

    Raises:
        [`UnknownNameError`]: no such task; the message lists the valid names.
    """
    key = name.lower().replace("-", "")
    if key not in TASKS:
        raise UnknownNameError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[key]


def load_metric(task: Task, metric: str | None = None) -> evaluate.EvaluationModule:
    """Load the `evaluate` metric of `task` (offline for the default GLUE metric), with the task as config.

    Args:
        task: the task; its name is passed as `config_name`.
        metric: another `evaluate` module: a path to a module folder or `.py` file, or a Hub name such as
            `"accuracy"`. `None` or `"glue"` loads the GLUE module shipped with hfsoup.

    Raises:
        [`UnknownNameError`]: the metric is neither a local module nor reachable on the Hub.

    Example:

    ```python
    >>> load_metric(get_task("cola")).compute(predictions=[1, 0, 1], references=[1, 0, 0])
    {'matthews_correlation': 0.5}
    ```
    """
    name = metric or task.metric_name
    path = str(GLUE_METRIC_DIR) if name == "glue" else name
    try:
        return evaluate.load(path, config_name=task.name, keep_in_memory=True)
    except (FileNotFoundError, ConnectionError) as error:
        raise UnknownNameError(
            f"cannot load metric {name!r} ({_first_line(error)}); pass a path to an evaluate module, "
            "or omit it to use the shipped GLUE metric"
        ) from error


def halves(num_rows: int, seed: int = 0) -> dict[str, list[int]]:
    """The row indices of the `"selection"` and `"report"` halves of a split with `num_rows` rows.

    A seeded permutation, cut in two (selection gets the extra row when `num_rows` is odd); each half is
    sorted, so it keeps the dataset's order. Deterministic, disjoint, and together covering every row.
    """
    permutation = np.random.default_rng(seed).permutation(num_rows)
    cut = (num_rows + 1) // 2
    return {
        "selection": np.sort(permutation[:cut]).tolist(),
        "report": np.sort(permutation[cut:]).tolist(),
    }


def load_split(task: Task, split: str, *, dataset: str | None = None, seed: int = 0) -> datasets.Dataset:
    """Load one labelled split of a task's dataset, checked against the task.

    Args:
        task: the task; its name is the dataset config (when the dataset has configs).
        split: `"selection"` or `"report"` (a seeded half of `task.eval_splits[0]`), or any split in the
            `datasets` syntax: `"validation"`, `"validation[:50%]"`, `"train[-500:]"`.
        dataset: a Hub dataset id, a local folder laid out like one (same code path), or a data file
            (`.csv`, `.tsv`, `.json`, `.jsonl`, `.parquet`) taken as the named split. Defaults to
            `nyu-mll/glue`.
        seed: the seed of the `"selection"`/`"report"` halves.

    Returns:
        The split, without unlabelled rows (label -1, as in GLUE test splits; a warning tells how many).

    Raises:
        [`DatasetError`]: the dataset or split cannot be read, a column the task needs is missing, the labels
            do not match the task, or no labelled row is left.

    Example:

    ```python
    >>> selection = load_split(get_task("mrpc"), "selection", dataset="/data/glue-hub")
    >>> selection.column_names
    ['sentence1', 'sentence2', 'label', 'idx']
    ```
    """
    source = dataset or DEFAULT_DATASET
    half = split if split in HALVES else None
    rows = _read(task, source, task.eval_splits[0] if half else split)
    where = f"split {split!r} of {source!r}"
    missing = [column for column in task.columns if column not in rows.column_names]
    if missing:
        raise DatasetError(
            f"{where} lacks column(s) {missing} needed by task {task.name}: "
            f"expected {list(task.columns)}, found {rows.column_names}"
        )
    rows = _labelled(task, rows, where)
    if half:
        rows = rows.select(halves(rows.num_rows, seed)[half])
    logger.info("Loaded %s (%d rows) for task %s", where, rows.num_rows, task.name)
    return rows


def _read(task: Task, source: str, split: str) -> datasets.Dataset:
    """Read `split` (in the `datasets` syntax) of a data file, a local folder or a Hub dataset."""
    path = Path(source)
    if path.is_file():
        if path.suffix not in DATA_FILE_BUILDERS:
            raise DatasetError(
                f"cannot read {source!r}: data files must end in {', '.join(DATA_FILE_BUILDERS)}"
            )
        builder, options = DATA_FILE_BUILDERS[path.suffix]
        split_name = re.match(r"\w*", split).group()
        with _dataset_errors(source, split):
            return datasets.load_dataset(builder, data_files={split_name: str(path)}, split=split, **options)
    with _dataset_errors(source, split):
        configs = datasets.get_dataset_config_names(source)
    if task.name not in configs and configs != ["default"]:
        raise DatasetError(
            f"dataset {source!r} has no config {task.name!r}; its configs: {', '.join(configs)}"
        )
    with _dataset_errors(source, split):
        return datasets.load_dataset(source, task.name if task.name in configs else None, split=split)


@contextmanager
def _dataset_errors(source: str, split: str) -> Iterator[None]:
    """Turn the errors of `datasets` into a one-line [`DatasetError`]."""
    try:
        yield
    except (FileNotFoundError, ConnectionError) as error:
        raise DatasetError(
            f"cannot load dataset {source!r} ({_first_line(error)}); pass a Hub dataset id, a local folder "
            "or a data file"
        ) from error
    except ValueError as error:
        raise DatasetError(
            f"cannot read split {split!r} of {source!r} ({_first_line(error)}); "
            "use e.g. 'validation', 'validation[:50%]', 'train[-500:]', 'selection' or 'report'"
        ) from error


def _labelled(task: Task, rows: datasets.Dataset, where: str) -> datasets.Dataset:
    """Drop rows labelled -1 and check the labels fit the task."""
    feature = rows.features[task.label_column]
    if isinstance(feature, datasets.ClassLabel) and tuple(feature.names) != task.label_names:
        raise DatasetError(
            f"{where} has labels {feature.names}, but task {task.name} expects {list(task.label_names)} in that order"
        )
    labels = np.asarray(rows.with_format("numpy")[task.label_column][:])
    keep = np.flatnonzero(labels != -1)
    if keep.size == 0:
        raise DatasetError(
            f"{where} has no labelled rows (GLUE test labels are hidden); use a validation split"
        )
    if keep.size < labels.size:
        logger.warning("Dropped %d unlabelled rows (label -1) of %s", labels.size - keep.size, where)
        rows, labels = rows.select(keep), labels[keep]
    if not task.is_regression and not np.isin(labels, np.arange(task.num_labels)).all():
        bad = sorted(set(labels.tolist()) - set(range(task.num_labels)))[:5]
        raise DatasetError(
            f"{where} has label ids {bad} outside 0..{task.num_labels - 1} of task {task.name}"
        )
    return rows


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
