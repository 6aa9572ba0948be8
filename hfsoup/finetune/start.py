"""What every run of a sweep starts from: the encoded training split, and one shared task head.

Soups need one shared initialization. A base model without a task head (most Hub encoders) gets a new random
head in every run, and averaging unrelated random heads averages nothing. So by default the head is drawn once,
with `head_seed`, saved as the sweep's starting model (`init-<key>/`), and every run starts from it: a run's
seed then varies only the data order and dropout. `head_seed: null` draws a head per run (with the run's seed),
for comparisons.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import datasets
from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerBase, set_seed

from ..eval.data import load_split
from ..eval.tasks import Task
from ..recipe.finetune import FinetuneRecipe
from ..staging import staged

logger = logging.getLogger(__name__)

__all__ = ["encoded_split", "new_head_model", "shared_start"]


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
    return AutoModelForSequenceClassification.from_pretrained(
        base,
        num_labels=task.num_labels,
        ignore_mismatched_sizes=True,
        trust_remote_code=False,
        **(labels if task.label_names else {}),
    )


def shared_start(
    base: Path, tokenizer: PreTrainedTokenizerBase, recipe: FinetuneRecipe, task: Task, work_dir: Path
) -> Path:
    """The sweep's starting model: the base with a head drawn once from `head_seed`, saved (or reused)."""
    key = hashlib.sha256(json.dumps([recipe.base, task.name, recipe.head_seed]).encode()).hexdigest()[:10]
    folder = work_dir / f"init-{key}"
    if (folder / "config.json").is_file():
        return folder
    set_seed(recipe.head_seed)  # transformers draws the missing head with torch's global generator
    model = new_head_model(base, task)
    with staged(folder, overwrite=False) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    logger.info("Drew the task head once (head_seed %d): every run starts from %s", recipe.head_seed, folder)
    return folder
