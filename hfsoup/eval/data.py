"""Labelled splits of a task's dataset: from the Hub, a local folder laid out like a Hub dataset, or a data file.

Held-out scoring: a soup must be *selected* on data other than the data it is *reported* on. By default the
validation split of a task (`Task.eval_splits[0]`) is cut into two fixed halves, `"selection"` and `"report"`,
by a seeded permutation: the same seed and split always give the same, disjoint halves that together cover
every row. For MNLI the halves come from `validation_matched`; `validation_mismatched` is never used for
selection, so it is reported whole next to the `"report"` half (`Task.report_splits`).

This module and `hfsoup.sources` are the only ones that reach the network: through `datasets`, which
honours `HF_HUB_OFFLINE` / `HF_DATASETS_OFFLINE`, with every failure turned into a one-line `DatasetError`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import DatasetError, first_line
from .tasks import HALVES, Task

__all__ = ["DATA_FILE_BUILDERS", "DEFAULT_DATASET", "halves", "load_split", "read_split"]

logger = logging.getLogger(__name__)

DEFAULT_DATASET = "nyu-mll/glue"

# Data-file suffixes `load_split` reads, with the `datasets` builder and its options for each.
DATA_FILE_BUILDERS: dict[str, tuple[str, dict[str, str]]] = {
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"sep": "\t"}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".parquet": ("parquet", {}),
}


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
        The split, without unlabelled rows (label -1, as in GLUE test splits; a warning tells how many); string
        labels become ids in the order of `task.label_names`.

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
    rows = read_split(task, source, task.eval_splits[0] if half else split, halved=bool(half))
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


def read_split(task: Task, source: str, split: str, *, halved: bool = False) -> datasets.Dataset:
    """Read `split` (in the `datasets` syntax) of a data file, a local folder or a Hub dataset, checked for rows.

    Args:
        task: the task; its name is the config read from a dataset of several configs (one of a single config
            is read whatever its name), and its columns name what a file that cannot be parsed should hold.
        source: a data file (taken as the named split), a local folder laid out like a Hub dataset, or a Hub id.
        split: the split in the `datasets` syntax.
        halved: the split is the one the `"selection"`/`"report"` halves are cut from, so a dataset that lacks
            it is told to name its splits instead.

    Returns:
        The rows, as read: labels are not yet checked against the task (see [`load_split`]).

    Raises:
        [`DatasetError`]: the source, its config or the split does not exist, cannot be parsed or holds no
            rows; a column of the task mixes JSON types (`1` in one row, `"yes"` in another); or some rows lack
            a label (an empty cell, `null` or NaN).
    """
    path = Path(source)
    where = f"split {split!r} of {source!r}"
    if path.is_file():
        if path.suffix not in DATA_FILE_BUILDERS:
            raise DatasetError(
                f"cannot read {source!r}: data files must end in {', '.join(DATA_FILE_BUILDERS)}"
            )
        if _blank(path):
            raise DatasetError(
                f"{source!r} is empty: a data file needs a header row (or keys, in JSON) naming the columns of "
                f"task {task.name} ({', '.join(task.columns)}) and one row per example"
            )
        builder, options = DATA_FILE_BUILDERS[path.suffix]
        where = repr(source) if re.fullmatch(r"\w*", split) else where  # a data file is any split
        data_files = {_split_names(split)[0]: str(path)}
        rows = _built(task, source, split, where, builder, data_files=data_files, **options)
    else:
        rows = _built(task, source, split, where, *_dataset_and_config(task, source, split, halved))
    _check_values(task, rows, where)
    return rows


def _dataset_and_config(task: Task, source: str, split: str, halved: bool) -> tuple[str, str | None]:
    """The folder or Hub id and the config to read `split` from, checked to have the splits `split` names."""
    with _dataset_errors(source, split, task):
        configs = datasets.get_dataset_config_names(source)
    if task.name not in configs and len(configs) != 1:
        raise DatasetError(
            f"dataset {source!r} has no config {task.name!r}; its configs: {', '.join(configs)}"
        )
    config = task.name if task.name in configs else None
    with _dataset_errors(source, split, task):
        names = datasets.get_dataset_split_names(source, config)
    missing = [name for name in _split_names(split) if name not in names]
    if missing:
        raise DatasetError(_no_split(task, source, missing[0], names, halved=halved))
    return source, config


def _no_split(task: Task, source: str, name: str, names: list[str], *, halved: bool) -> str:
    """The one line telling how to name the splits of a dataset that lacks the split `name`."""
    purpose = " to cut the selection and report halves from" if halved else ""
    part = "train" if "train" in names else names[0]
    named = f"e.g. --selection-split '{part}[80%:90%]' --report-split '{part}[90%:]' (in a recipe: selection_split, "
    named += "report_split)"
    if not Path(source).is_dir():
        added = f"save a local copy with a {name!r} split"
    elif name in ("train", "validation", "test"):
        added = f"add a {name}.csv (or .jsonl, .parquet) to the folder"
    else:
        added = f"name a {name!r} split in the configs of the folder's README.md"
    if name == task.eval_splits[0]:
        hint = (
            f"{added} (`hfsoup finetune` scores its runs on it), or score a merge on splits it has, {named}"
        )
    else:
        hint = f"name splits it has, {named}, or {added}"
    return f"dataset {source!r} has no {name!r} split{purpose} (its splits: {', '.join(names)}): {hint}"


def _built(task: Task, source: str, split: str, where: str, *args, **kwargs) -> datasets.Dataset:
    """The split of the dataset that `datasets.load_dataset_builder(*args, **kwargs)` builds, refused if empty."""
    with _dataset_errors(source, split, task):
        builder = datasets.load_dataset_builder(*args, **kwargs)
        builder.download_and_prepare()
    found = builder.info.splits or {}
    if any(name in found and not found[name].num_examples for name in _split_names(split)):
        columns = f", only the columns {', '.join(builder.info.features)}" if builder.info.features else ""
        another = "" if Path(source).is_file() else ", or score on another split"
        raise DatasetError(f"{where} holds no rows{columns}: add one row per example{another}")
    with _dataset_errors(source, split, task):
        return builder.as_dataset(split=split)


def _split_names(split: str) -> list[str]:
    """The names of the splits a split in the `datasets` syntax reads: `["train", "test"]` for `train[:10]+test`."""
    return [re.match(r"\s*(\w*)", part)[1] for part in split.split("+")]


def _blank(path: Path) -> bool:
    """Whether a data file holds nothing: no bytes, blank lines only, or a parquet table of no rows."""
    if path.stat().st_size == 0:
        return True
    if path.suffix == ".parquet":
        try:
            return pq.read_metadata(path).num_rows == 0
        except pa.ArrowException:
            return False  # not a parquet file: `datasets` tells what is wrong
    return path.stat().st_size < 1 << 16 and not path.read_bytes().strip()


def _check_values(task: Task, rows: datasets.Dataset, where: str) -> None:
    """Refuse a column of the task that mixes JSON types, and rows without a label (empty, null or NaN)."""
    for column in task.columns:
        if isinstance(rows.features.get(column), datasets.Json):
            raise DatasetError(
                f"column {column!r} of {where} {_json_kinds(rows[column])}; give a column one type: strings in a "
                "text column, and in the label column strings (class names), integers (class ids) or numbers "
                "(a regression)"
            )
    for column in (*task.text_columns, task.label_column):
        if column not in rows.column_names:
            continue  # the caller names the columns it needs
        lacking = pc.is_null(rows.data.column(column), nan_is_null=True)
        empty = np.flatnonzero(lacking.to_numpy(zero_copy_only=False))
        if empty.size:
            shown = ", ".join(map(str, empty[:3])) + (", ..." if empty.size > 3 else "")
            what = "a label" if column == task.label_column else "a text"
            raise DatasetError(
                f"{where} has {empty.size} of {rows.num_rows} rows without {what} in column {column!r} (empty, null "
                f"or NaN; rows {shown}, counting from 0): fill them in or remove them"
            )


_JSON_KINDS = {
    str: "strings",
    bool: "booleans",
    int: "integers",
    float: "numbers",
    list: "lists",
    dict: "objects",
}


def _json_kinds(values) -> str:
    """What kinds of JSON values a column holds, with the first row of each: `mixes integers (1, row 1) and ...`."""
    first: dict[str, str] = {}
    for index, value in enumerate(values):
        if value is not None:
            first.setdefault(_JSON_KINDS.get(type(value), type(value).__name__), f"{value!r}, row {index}")
    kinds = [f"{kind} ({example})" for kind, example in first.items()]
    if len(kinds) < 2:
        return f"holds JSON {' '.join(kinds) or 'nulls'}"
    return f"mixes {', '.join(kinds[:-1])} and {kinds[-1]}"


@contextmanager
def _dataset_errors(source: str, split: str, task: Task) -> Iterator[None]:
    """Turn the errors of `datasets` into a one-line [`DatasetError`]."""
    try:
        yield
    except (FileNotFoundError, ConnectionError) as error:
        raise DatasetError(
            f"cannot load dataset {source!r} ({first_line(error)}); pass a Hub dataset id, a local folder "
            "or a data file"
        ) from error
    except ValueError as error:
        raise DatasetError(
            f"cannot read split {split!r} of {source!r} ({first_line(error)}); "
            "use e.g. 'validation', 'validation[:50%]', 'train[-500:]', 'selection' or 'report'"
        ) from error
    except datasets.exceptions.DatasetsError as error:  # e.g. a data file pandas or arrow cannot parse
        raise DatasetError(
            f"cannot parse {source!r} ({first_line(error.__cause__ or error)}); a data file needs a header row "
            f"naming the columns of task {task.name} ({', '.join(task.columns)}) and one row per example (the "
            "original GLUE .tsv files need converting)"
        ) from error


def _labelled(task: Task, rows: datasets.Dataset, where: str) -> datasets.Dataset:
    """Drop rows labelled -1, turn string labels into ids, and check the labels fit the task."""
    feature = rows.features[task.label_column]
    if getattr(feature, "dtype", None) in ("string", "large_string") and not task.is_regression:
        unknown = sorted(set(rows.unique(task.label_column)) - set(task.label_names), key=str)
        if unknown:
            raise DatasetError(
                f"{where} has labels {unknown[:5]} outside the labels {list(task.label_names)} of task {task.name}"
            )
        feature = datasets.ClassLabel(names=list(task.label_names))
        rows = rows.cast_column(task.label_column, feature)
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
