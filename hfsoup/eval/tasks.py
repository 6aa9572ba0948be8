"""The task registry: each task's columns, labels, metric and leaderboard score.

The GLUE tasks are registered here with the columns, label names and label order of the Hub dataset
`nyu-mll/glue`; [`register_task`] adds others. Metrics come from the `evaluate` modules shipped with hfsoup
(`hfsoup/eval/metrics`), which load offline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..errors import InvalidSettingError, UnknownNameError

__all__ = ["GLUE_TASKS", "HALVES", "TASKS", "MeanOf", "Task", "get_task", "register_task"]

HALVES = ("selection", "report")
"""The split roles cut from a task's first validation split: chosen on, and reported on."""


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
    """One text-classification or regression task: a GLUE task, a registered one, or one a dataset defines.

    Args:
        name: the task, also the dataset config to read (when the dataset has several) and the `config_name`
            of its metric, e.g. `"mrpc"`.
        text_columns: the one or two text columns fed to the tokenizer, in order.
        label_column: the gold label column.
        label_names: class names in label-id order; empty for a regression task (STS-B).
        metric_name: the `evaluate` module: a metric shipped with hfsoup (`"glue"`, `"accuracy"`,
            `"pearson_spearman"`) or a local path (see [`load_metric`]).
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

GLUE_TASKS = tuple(TASKS)
"""The GLUE tasks, registered above; tasks registered later or defined by a dataset are not GLUE's."""


def register_task(task: Task, *, replace: bool = False) -> Task:
    """Add a task to the registry, so `get_task(task.name)`, recipes, `soup.yaml` replays and `--task` know it.

    A merge can also score on any dataset without registering anything (`--dataset` with `--text-column`, see
    [`resolve_task`]); registering names the columns, labels and metric once, for every later run in the
    process.

    Args:
        task: the task; its `label_names` must be in the label-id order of the dataset (and, ideally, of the
            models' `id2label`, which is aligned to it).
        replace: replace a registered task of the same name.

    Returns:
        The task.

    Raises:
        [`InvalidSettingError`]: a task of that name exists and `replace` is false.

    Example:

    ```python
    >>> register_task(
    ...     Task(name="imdb", text_columns=("text",), label_names=("neg", "pos"), metric_name="accuracy")
    ... )
    >>> run_merge(MergeRecipe(task="imdb", models=["runs/a", "runs/b"], dataset="stanfordnlp/imdb",
    ...                       selection_split="test[:50%]", report_split="test[50%:]"))
    ```
    """
    key = task.name.lower()
    if key in TASKS and not replace:
        raise InvalidSettingError(
            f"task {task.name!r} is registered already; pass replace=True to replace it"
        )
    TASKS[key] = task
    return task


def get_task(name: str) -> Task:
    """The registered task called `name` (case-insensitive, `"sst-2"` and `"sts-b"` spellings accepted).

    Raises:
        [`UnknownNameError`]: no such task; the message lists the valid names.
    """
    key = name.lower().replace("-", "") if isinstance(name, str) else None
    if key not in TASKS:
        raise UnknownNameError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[key]
