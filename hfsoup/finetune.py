"""Fine-tune a recipe's ingredients with `transformers.Trainer` and `EmaTrainerCallback`.

Each run of a [`FinetuneRecipe`] trains the base model on the task's training split and saves two model
folders: `raw/` (the last weights) and `ema/` (their moving average), both of which become ingredients, so a
greedy soup can choose between each run's raw and EMA weights.

Soups need one shared initialization. A base model without a task head (most Hub encoders) gets a new random
head in every run, and averaging unrelated random heads averages nothing. So by default the head is drawn once,
with `head_seed`, saved as the sweep's starting model (`init-<key>/`), and every run starts from it: a run's
seed then varies only the data order and dropout. `head_seed: null` draws a head per run (with the run's seed),
for comparisons.

Runs are keyed by their settings, not their position: a run folder is `<name>-<key>/`, where the key hashes
everything that determines the run, so a finished run is reused only if its settings are the same, and a
changed run is trained anew. Each run folder is written aside and moved into place when complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import typing
from pathlib import Path

from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
    set_seed,
)

from .ema import EmaTrainerCallback
from .errors import RecipeError
from .eval.data import load_split
from .eval.tasks import Task
from .recipe import FinetuneRecipe, check_value
from .sources import model_folder
from .staging import staged

logger = logging.getLogger(__name__)

__all__ = ["finetune_ingredients", "run_key"]


def run_key(recipe: FinetuneRecipe, task: Task, dataset: str | None, overrides: dict) -> str:
    """A short hash of everything that determines one run's weights: the same settings, the same key."""
    settings = {
        "recipe": {k: v for k, v in vars(recipe).items() if k != "runs"},
        "task": task.name,
        "dataset": dataset,
        "run": overrides,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _run_name(overrides: dict, key: str) -> str:
    words = [f"{name}{value}" for name, value in sorted(overrides.items())]
    slug = re.sub(r"[^A-Za-z0-9.=_-]+", "", "-".join(words).replace("learning_rate", "lr"))[:40]
    return f"{slug}-{key}" if slug else f"run-{key}"


def finetune_ingredients(
    recipe: FinetuneRecipe, task: Task, *, dataset: str | None, work_dir: Path, seed: int = 0
) -> list[str]:
    """Train every run of `recipe` on `task` and return the ingredient folders (raw, then EMA, per run).

    Every run's `TrainingArguments` are checked before any training. Finished runs with the same settings
    are reused, so an interrupted recipe resumes where it stopped.

    Args:
        recipe: the fine-tuning settings.
        task: the task to train on (its training split, columns and labels).
        dataset: the dataset to read the training split from (`None` for `nyu-mll/glue`).
        work_dir: where the runs are written (`<run>-<key>/raw`, `<run>-<key>/ema`, and `init-<key>/`).
        seed: the seed of the `selection`/`report` halves, should `train_split` name one.

    Returns:
        The ingredient folders.

    Raises:
        RecipeError: a run's overrides are not valid `TrainingArguments`.
    """
    runs = []
    for overrides in recipe.runs:
        key = run_key(recipe, task, dataset, overrides)
        run_dir = work_dir / _run_name(overrides, key)
        runs.append((overrides, run_dir, _training_arguments(recipe, overrides, run_dir)))
    kinds = ("raw", "ema") if recipe.ema_decay is not None else ("raw",)
    todo = [run for run in runs if not (run[1] / kinds[-1] / "config.json").is_file()]
    if todo:
        base = model_folder(recipe.base)
        tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=False)
        train = _encoded_train_split(recipe, task, dataset, seed, tokenizer)
        start = base if recipe.head_seed is None else _shared_start(base, tokenizer, recipe, task, work_dir)
        for position, (overrides, run_dir, args) in enumerate(todo, start=1):
            logger.info("Fine-tuning run %d/%d: %s", position, len(todo), overrides)
            _train_run(start, tokenizer, task, train, recipe, args, run_dir)
    return [str(run_dir / kind) for _, run_dir, _ in runs for kind in kinds]


def _training_arguments(recipe: FinetuneRecipe, overrides: dict, run_dir: Path) -> TrainingArguments:
    settings = dict(
        output_dir=str(run_dir / "trainer"),
        max_steps=recipe.max_steps,
        per_device_train_batch_size=recipe.batch_size,
        learning_rate=recipe.learning_rate,
        train_sampling_strategy="group_by_length",
        save_strategy="no",
        report_to="none",
        logging_steps=max(1, recipe.max_steps // 5),
        disable_tqdm=True,
    )
    hints = _simple_hints()
    for name, value in overrides.items():
        if name in hints:  # TrainingArguments itself takes learning_rate="fast" and fails mid-training
            settings[name] = check_value(value, hints[name], "finetune.runs", name)
        else:
            settings[name] = value
    try:
        return TrainingArguments(**settings)
    except (TypeError, ValueError) as error:
        raise RecipeError(
            f"finetune run {overrides}: {str(error).splitlines()[0]}; use TrainingArguments field names and values."
        ) from error


def _simple_hints() -> dict[str, type]:
    """The `TrainingArguments` fields typed plainly as a number or a flag, whose values the recipe checks."""
    simple = (int, float, bool)
    hints = typing.get_type_hints(TrainingArguments)
    return {name: hint for name, hint in hints.items() if hint in simple}


def _encoded_train_split(recipe: FinetuneRecipe, task: Task, dataset, seed: int, tokenizer):
    rows = load_split(task, recipe.train_split, dataset=dataset, seed=seed)
    texts = [rows[column][:] for column in task.text_columns]
    encoded = tokenizer(*texts, truncation=True, max_length=recipe.max_length)
    train = rows.select_columns([task.label_column]).rename_column(task.label_column, "labels")
    for name, values in encoded.items():
        train = train.add_column(name, values)
    return train


def _new_head_model(base: Path, task: Task):
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


def _shared_start(
    base: Path, tokenizer: PreTrainedTokenizerBase, recipe: FinetuneRecipe, task: Task, work_dir: Path
) -> Path:
    """The sweep's starting model: the base with a head drawn once from `head_seed`, saved (or reused)."""
    key = hashlib.sha256(json.dumps([recipe.base, task.name, recipe.head_seed]).encode()).hexdigest()[:10]
    folder = work_dir / f"init-{key}"
    if (folder / "config.json").is_file():
        return folder
    set_seed(recipe.head_seed)  # transformers draws the missing head with torch's global generator
    model = _new_head_model(base, task)
    with staged(folder, overwrite=False) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    logger.info("Drew the task head once (head_seed %d): every run starts from %s", recipe.head_seed, folder)
    return folder


def _train_run(
    start: Path, tokenizer, task: Task, train, recipe: FinetuneRecipe, args: TrainingArguments, run_dir: Path
) -> None:
    """Train one run from `start` and move its `raw/` (and `ema/`) folders into `run_dir` when complete."""
    set_seed(args.seed)  # without a shared start, the run's own seed draws its head
    model = _new_head_model(start, task)
    callbacks = (
        [EmaTrainerCallback(decay=recipe.ema_decay, load_ema_at_end=False)]
        if recipe.ema_decay is not None
        else []
    )
    with staged(run_dir, overwrite=True) as staging:
        args.output_dir = str(staging / "trainer")
        trainer = Trainer(
            model=model, args=args, train_dataset=train, processing_class=tokenizer, callbacks=callbacks
        )
        trainer.train()
        trainer.save_model(str(staging / "raw"))
        if callbacks:
            callbacks[0].ema.copy_to(model)
            trainer.save_model(str(staging / "ema"))
