"""What every run of a sweep starts from: the encoded training split, and one shared task head.

Soups need one shared initialization. A base model without a task head (most Hub encoders) gets a new random
head in every run, and averaging unrelated random heads averages nothing. So by default the head is made
once, saved as the sweep's starting model (`init-<key>/`), and every run starts from it: a run's seed then
varies only the data order and dropout. `head_init: linear_probe` (the default) fits the head's final
projection on the frozen base's features of the training split (LP-FT: the backbone is not bent to serve a
random head in the first steps, Kumar et al. 2022); `random` keeps the head drawn with `head_seed`. The start is
keyed by everything that makes it: the base's weights, the task's data and labels, and the head's settings.
`head_seed: null` draws a head per run (with the run's seed), for comparisons. Processes sharing a sweep may
build the start at once: each builds it aside, and the first one renamed into place is the one every run uses.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import datasets
import torch
from huggingface_hub import ModelCard, ModelCardData
from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerBase, set_seed

from ..errors import OutputExistsError
from ..eval.data import load_split
from ..eval.probe import head_features, probe_head
from ..eval.scoring import Scorer
from ..eval.tasks import Task
from ..recipe.finetune import FinetuneRecipe
from ..soup.heads import head_layout
from ..staging import staged
from .plan import weights_hash
from .run_card import describe_start

logger = logging.getLogger(__name__)

__all__ = ["PROBE_FILE", "encoded_split", "new_head_model", "shared_start", "start_record"]

PROBE_FILE = "start.json"
"""The record of a sweep's start, in its `init-<key>/` folder: how its head was made and how well it scores."""


def encoded_split(
    recipe: FinetuneRecipe, task: Task, dataset: str | None, seed: int, tokenizer: PreTrainedTokenizerBase
) -> datasets.Dataset:
    """The training split, tokenized without padding (the collator pads each batch to its longest row)."""
    rows = load_split(task, recipe.train_split, dataset=dataset, seed=seed)
    texts = [rows[column][:] for column in task.text_columns]
    encoded = tokenizer(*texts, truncation=True, max_length=recipe.max_length)
    train = rows.select_columns([task.label_column]).rename_column(task.label_column, "labels")
    for name, values in encoded.items():
        train = train.add_column(name, values)
    return train


def new_head_model(base: Path, task: Task):
    """The base with the task's head; a head the base lacks (or of another shape) is drawn anew."""
    labels = {
        "id2label": dict(enumerate(task.label_names)),
        "label2id": {n: i for i, n in enumerate(task.label_names)},
    }
    # The head is drawn on purpose: transformers' LOAD REPORT table of it (a warning) says one line here instead.
    # (A filter, not a level: transformers checks a table of tensor parallelism, and warns, above WARNING.)
    loader = logging.getLogger("transformers.modeling_utils")
    loader.addFilter(_no_load_report)
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            base,
            num_labels=task.num_labels,
            ignore_mismatched_sizes=True,
            trust_remote_code=False,
            output_loading_info=True,
            **(labels if task.label_names else {}),
        )
    finally:
        loader.removeFilter(_no_load_report)
    new = sorted({*info["missing_keys"], *(key for key, *_ in info["mismatched_keys"])})
    if new:
        logger.info("Drawn anew for %s (the base has no such head): %s", task.name, ", ".join(new))
    return model


def _no_load_report(record: logging.LogRecord) -> bool:
    return "LOAD REPORT" not in record.getMessage()


def start_key(base: Path, recipe: FinetuneRecipe, task: Task, dataset: str | None) -> str:
    """A short hash of everything that makes the start: the base's weights, the data, the labels, the head."""
    settings = {
        "base": weights_hash(Path(base).resolve()),
        "task": [task.name, list(task.text_columns), task.label_column, list(task.label_names)],
        "head": [recipe.head_init, recipe.head_seed],
    }
    if recipe.head_init == "linear_probe":
        settings["probe"] = [dataset, recipe.train_split, recipe.max_length, recipe.probe_l2]
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


def shared_start(
    base: Path,
    tokenizer: PreTrainedTokenizerBase,
    recipe: FinetuneRecipe,
    task: Task,
    work_dir: Path,
    *,
    dataset: str | None = None,
    seed: int = 0,
    validation: datasets.Dataset | None = None,
) -> Path:
    """The sweep's starting model, built once and saved (or reused): the base with its shared task head.

    Args:
        base: the base model's folder.
        tokenizer: its tokenizer.
        recipe: the sweep (`head_init`, `head_seed`, `probe_l2`, `train_split`, `max_length`).
        task: the task.
        work_dir: the runs' folder; the start goes to `init-<key>/`.
        dataset: the dataset the training split comes from (`None` for `nyu-mll/glue`).
        seed: the seed of the `selection`/`report` halves, should `train_split` name one.
        validation: the rows the probe is scored on (its validation score goes into its record and card).

    Returns:
        The start's folder.
    """
    folder = work_dir / f"init-{start_key(base, recipe, task, dataset)}"
    if (folder / "config.json").is_file():
        return folder
    set_seed(recipe.head_seed)  # transformers draws the missing head with torch's global generator
    model = new_head_model(base, task)
    record = {"head_init": recipe.head_init, "head_seed": recipe.head_seed}
    if recipe.head_init == "linear_probe":
        rows = load_split(task, recipe.train_split, dataset=dataset, seed=seed)
        record.update(_fit_head(model, tokenizer, task, rows, recipe, validation))
    try:
        with staged(folder, overwrite=False) as staging:
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            (staging / PROBE_FILE).write_text(
                json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8"
            )
            ModelCard(_card_text(record, recipe, task)).save(staging / "README.md")
    except (
        OutputExistsError
    ):  # another process sharing the sweep built it first: every run starts from that one
        logger.info(
            "%s was built meanwhile by another process sharing the sweep; this one's is discarded", folder
        )
        return folder
    logger.info("Every run starts from %s (%s)", folder, describe_start(record))
    return folder


def _fit_head(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    rows: datasets.Dataset,
    recipe: FinetuneRecipe,
    validation: datasets.Dataset | None,
) -> dict:
    """Fit the head's final projection on the frozen features of `rows`, in place; the probe's record."""
    began = time.perf_counter()
    layout = head_layout(model.config)
    projection = layout.output
    if len(layout.modules) > 1:
        logger.info(
            "The head has a hidden layer: its final projection %s is fitted on that layer's output",
            projection,
        )
    features = head_features(model, projection, tokenizer, task, rows, max_length=recipe.max_length)
    encoded = time.perf_counter() - began
    labels = torch.as_tensor(rows.with_format("numpy")[task.label_column][:])
    probe = probe_head(features, labels, task, l2=recipe.probe_l2)
    layer = model.get_submodule(projection)
    with torch.no_grad():
        layer.weight.copy_(probe.weight)
        layer.bias.copy_(probe.bias)
    record = {
        "projection": projection,
        "probe_l2": recipe.probe_l2,
        "train_rows": probe.rows,
        "train": probe.train,
        "encode_seconds": round(encoded, 1),
        "fit_seconds": round(time.perf_counter() - began - encoded, 1),
    }
    if validation is not None:
        record["validation"] = Scorer(model, tokenizer, task, validation, max_length=recipe.max_length)()[0]
    return record


def start_record(start: Path) -> dict | None:
    """The record of a sweep's start (`start.json`), or `None` for a start without one (the base itself)."""
    path = Path(start) / PROBE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _card_text(record: dict, recipe: FinetuneRecipe, task: Task) -> str:
    data = ModelCardData(library_name="transformers", tags=["hfsoup", task.name])
    return (
        f"---\n{data.to_yaml()}\n---\n\n# The start of a sweep on {task.name}\n\n"
        f"`{recipe.base}` with {describe_start(record)}. Every run of the sweep starts from these weights, "
        "so their soup averages one head, not unrelated ones.\n"
    )
