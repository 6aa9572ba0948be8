"""Evaluation: the task registry, labelled splits, shipped metrics, the `Scorer` that scores a model's weights,
and the `SelectionLoss` a learned soup descends.

Only the task registry is imported eagerly; `datasets`, `evaluate` and `torch` load when a split, a metric
or a scorer is first used.
"""

from .._lazy import lazy_exports
from .tasks import GLUE_TASKS, HALVES, TASKS, MeanOf, Task, get_task, register_task

_EXPORTS = {
    "DEFAULT_DATASET": ".data",
    "halves": ".data",
    "load_split": ".data",
    "load_metric": ".metrics",
    "resolve_task": ".resolve",
    "Scorer": ".scoring",
    "SelectionLoss": ".loss",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = ["GLUE_TASKS", "HALVES", "TASKS", "MeanOf", "Task", "get_task", "register_task", *_EXPORTS]
