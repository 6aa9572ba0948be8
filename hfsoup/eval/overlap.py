"""Which rows of a dataset a split reads, so a soup is never reported on the rows it was chosen (or trained) on.

A split in the `datasets` syntax (`validation[:50%]`, `train[-500:]+validation`) is resolved to row ranges by
`datasets.ReadInstruction`, with the sizes of the splits it names; the `"selection"` and `"report"` halves are
the rows `halves` picks among the labelled rows of the halved split. A data file is one table whatever the split
is called (`--dataset rows.csv` reads the same rows as `train`, `validation` or `selection`), while the splits
of a folder or a Hub dataset are separate tables.
"""

from __future__ import annotations

import re
from pathlib import Path

import datasets

from .data import DEFAULT_DATASET, halves, read_split
from .tasks import HALVES, Task

__all__ = ["shared_rows", "split_rows"]


def split_rows(task: Task, split: str, *, dataset: str | None = None, seed: int = 0) -> dict[str, set[int]]:
    """The rows `split` reads: for each table (a split name, or `"file"` for a data file), their indices.

    Example:

    ```python
    >>> split_rows(get_task("mrpc"), "validation[:10]+train[-2:]")
    {'validation': {0, 1, ..., 9}, 'train': {3666, 3667}}
    ```
    """
    source = dataset or DEFAULT_DATASET
    is_file = Path(source).is_file()
    if split in HALVES:
        name = task.eval_splits[0]
        labels = read_split(task, source, name, halved=True)[task.label_column]
        labelled = [i for i, label in enumerate(labels) if label is not None and label != -1]
        return {"file" if is_file else name: {labelled[i] for i in halves(len(labelled), seed)[split]}}
    names = {re.match(r"\s*(\w+)", part)[1] for part in split.split("+")}
    sizes = {name: read_split(task, source, name).num_rows for name in names}
    rows: dict[str, set[int]] = {}
    for part in datasets.ReadInstruction.from_spec(split).to_absolute(sizes):
        table = "file" if is_file else part.splitname
        rows.setdefault(table, set()).update(range(part.from_, part.to))
    return rows


def shared_rows(first: dict[str, set[int]], second: dict[str, set[int]]) -> int:
    """How many rows two splits (as [`split_rows`] gives them) both read."""
    return sum(len(rows & second.get(table, set())) for table, rows in first.items())
