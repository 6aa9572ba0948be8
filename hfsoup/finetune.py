"""Fine-tune a recipe's ingredients with `transformers.Trainer` and [`EmaTrainerCallback`].

Each run of a [`FinetuneRecipe`] trains the base model on the task's training split and saves two model
folders: `raw/` (the last weights) and `ema/` (their moving average), both of which become ingredients, so a
greedy soup can choose between each run's raw and EMA weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

from .ema import EmaTrainerCallback
from .errors import RecipeError
from .eval.data import load_split
from .eval.tasks import Task
from .recipe import FinetuneRecipe
from .sources import model_folder

logger = logging.getLogger(__name__)

__all__ = ["finetune_ingredients"]


def finetune_ingredients(
    recipe: FinetuneRecipe, task: Task, *, dataset: str | None, work_dir: Path, seed: int = 0
) -> list[str]:
    """Train every run of `recipe` on `task` and return the ingredient folders (raw, then EMA, per run).

    Runs whose folders exist already are reused, so an interrupted recipe resumes where it stopped.

    Args:
        recipe: the fine-tuning settings.
        task: the task to train on (its training split, columns and labels).
        dataset: the dataset to read the training split from (`None` for `nyu-mll/glue`).
        work_dir: where the runs are written (`run-1/raw`, `run-1/ema`, ...).
        seed: the seed of the `selection`/`report` halves, should `train_split` name one.

    Returns:
        The ingredient folders.
    """
    base = model_folder(recipe.base)
    tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=False)
    rows = load_split(task, recipe.train_split, dataset=dataset, seed=seed)
    texts = [rows[column][:] for column in task.text_columns]
    encoded = tokenizer(*texts, truncation=True, max_length=recipe.max_length)
    train = rows.select_columns([task.label_column]).rename_column(task.label_column, "labels")
    for name, values in encoded.items():
        train = train.add_column(name, values)

    folders = []
    for index, overrides in enumerate(recipe.runs, start=1):
        run_dir = work_dir / f"run-{index}"
        kinds = ("raw", "ema") if recipe.ema_decay is not None else ("raw",)
        outputs = [run_dir / kind for kind in kinds]
        if not all((folder / "config.json").is_file() for folder in outputs):
            _train_run(base, tokenizer, task, train, recipe, overrides, run_dir)
        folders += [str(folder) for folder in outputs]
    return folders


def _train_run(
    base, tokenizer, task: Task, train, recipe: FinetuneRecipe, overrides: dict, run_dir: Path
) -> None:
    labels = {
        "id2label": dict(enumerate(task.label_names)),
        "label2id": {n: i for i, n in enumerate(task.label_names)},
    }
    # The task head is new: a base whose head has another shape gets a fresh one (ignore_mismatched_sizes).
    model = AutoModelForSequenceClassification.from_pretrained(
        base,
        num_labels=task.num_labels,
        ignore_mismatched_sizes=True,
        trust_remote_code=False,
        **(labels if task.label_names else {}),
    )
    settings = dict(
        output_dir=str(run_dir / "trainer"),
        max_steps=recipe.max_steps,
        per_device_train_batch_size=recipe.batch_size,
        learning_rate=recipe.learning_rate,
        save_strategy="no",
        report_to="none",
        logging_steps=max(1, recipe.max_steps // 5),
        disable_tqdm=True,
    )
    settings.update(overrides)
    try:
        args = TrainingArguments(**settings)
    except TypeError as error:
        raise RecipeError(f"finetune run {overrides}: {error}; use TrainingArguments field names.") from error
    callbacks = (
        [EmaTrainerCallback(decay=recipe.ema_decay, load_ema_at_end=False)]
        if recipe.ema_decay is not None
        else []
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=train, processing_class=tokenizer, callbacks=callbacks
    )
    logger.info("Fine-tuning %s on %s with %s", base, task.name, overrides)
    trainer.train()
    trainer.save_model(str(run_dir / "raw"))
    if callbacks:
        callbacks[0].ema.copy_to(model)
        trainer.save_model(str(run_dir / "ema"))
