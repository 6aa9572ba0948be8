"""Metrics: the `evaluate` modules shipped with hfsoup, or local ones; never a script fetched from the Hub.

`evaluate.load(name)` with a Hub name downloads a Python script and runs it: remote code. hfsoup loads the
metrics it ships (one folder each under `hfsoup/eval/metrics`: `glue`, and `accuracy` and `pearson_spearman`, the
defaults of a task defined by a dataset's columns) and metric modules on the local disk; a Hub metric runs only
when the caller trusts it explicitly (`--trust-remote-metric`).
"""

from __future__ import annotations

from pathlib import Path

import evaluate

from ...errors import UnknownNameError, first_line
from ..tasks import Task

__all__ = ["SHIPPED_METRICS", "load_metric"]

SHIPPED_METRICS = {name: Path(__file__).parent / name for name in ("glue", "accuracy", "pearson_spearman")}


def load_metric(
    task: Task, metric: str | None = None, *, trust_remote_metric: bool = False
) -> evaluate.EvaluationModule:
    """Load the `evaluate` metric of `task`, with the task's name as its config.

    Args:
        task: the task; its name is passed as `config_name`.
        metric: a shipped metric (`"glue"`, `"accuracy"`, `"pearson_spearman"`), a path to a local module
            folder or `.py` file, or, with `trust_remote_metric`, a Hub metric such as `"f1"`. `None` is the
            task's metric.
        trust_remote_metric: allow a metric that is neither shipped nor local (its script is downloaded and run).

    Raises:
        [`UnknownNameError`]: the metric is not shipped, not a local path, and not trusted; or it cannot be loaded.

    Example:

    ```python
    >>> load_metric(get_task("cola")).compute(predictions=[1, 0, 1], references=[1, 0, 0])
    {'matthews_correlation': 0.5}
    ```
    """
    name = metric or task.metric_name
    local = Path(name).expanduser()
    if name in SHIPPED_METRICS:
        path = str(SHIPPED_METRICS[name])
    elif local.exists():
        path = str(local)
    elif trust_remote_metric:
        path = name
    else:
        raise UnknownNameError(
            f"metric {name!r} is neither shipped with hfsoup ({', '.join(SHIPPED_METRICS)}) nor a local path; a Hub "
            "metric is a script that would run on your machine: pass a path to an evaluate module, or add "
            "--trust-remote-metric if you trust it"
        )
    try:
        return evaluate.load(path, config_name=task.name, keep_in_memory=True)
    except (FileNotFoundError, ConnectionError, ImportError, KeyError, ValueError) as error:
        raise UnknownNameError(
            f"cannot load metric {name!r} ({first_line(error)}); pass a path to an evaluate module, "
            "or omit it to use the task's shipped metric"
        ) from error
