"""The model card (`README.md`) of a fine-tuning run's model folder: how it was trained, and its scores.

The metadata is a `huggingface_hub.ModelCardData`: the base model when a Hub id names it (with
`base_model_relation: finetune`), the dataset, and the folder's validation scores as `EvalResult`s; the body
gives the run's settings and compares its raw, EMA and epoch weights.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..eval.data import DEFAULT_DATASET
from ..eval.tasks import Task
from ..recipe.finetune import FinetuneRecipe
from ..sources.reference import is_repo_reference

__all__ = ["build_run_card", "write_run_card"]

_WHAT = {
    "raw": "the weights at the end of training",
    "ema": "the exponential moving average of the weights (EmaTrainerCallback)",
}


def _describe(kind: str) -> str:
    return _WHAT.get(kind) or f"the raw weights at the end of epoch {kind.removeprefix('epoch-')}"


def build_run_card(kind: str, record: dict, recipe: FinetuneRecipe, task: Task, describe: dict) -> ModelCard:
    """The card of the `kind` folder (`raw`, `ema`, `epoch-<k>`) of the run `record` (see `train_run`).

    Args:
        kind: which of the run's folders the card is for.
        record: the run's record: `name`, `overrides`, `steps`, `scores` per kind.
        recipe: the sweep's settings.
        task: the task.
        describe: `base` (the base model as the recipe names it), `dataset` and `command`.
    """
    base = describe.get("base") or recipe.base
    dataset = describe.get("dataset") or DEFAULT_DATASET
    scores = record["scores"].get(kind, {})
    hub_base = base.partition("@")[0] if is_repo_reference(base) else None
    data = _card_data(record, task, scores, dataset, hub_base)
    settings = {
        "epochs": recipe.epochs,
        "max_steps": recipe.max_steps,
        "batch_size": recipe.batch_size,
        "learning_rate": recipe.learning_rate,
        "max_length": recipe.max_length,
        "ema_decay": recipe.ema_decay,
        "ema_schedule": recipe.ema_schedule or "the callback's default",
        "head_seed": recipe.head_seed,
        **(recipe.training or {}),
        **record["overrides"],
    }
    lines = [
        f"# {record['name']}: {kind}",
        "",
        f"{task.name} fine-tune of `{base}` on `{dataset}` ({recipe.train_split}), {record['steps']} optimizer "
        f"steps, by `hfsoup finetune`, from {describe_start(describe.get('start'))}. This folder holds "
        f"{_describe(kind)}.",
        "",
        "## Settings",
        "",
        "| setting | value |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in settings.items() if value is not None),
        "",
        f"## Scores on {task.eval_splits[0]}",
        "",
        "| weights | " + " | ".join(sorted(scores)) + " |",
        "|---|" + "---|" * len(scores),
        *(
            f"| {'**' + other + '**' if other == kind else other} | "
            + " | ".join(f"{record['scores'][other].get(name, float('nan')):.4f}" for name in sorted(scores))
            + " |"
            for other in record["scores"]
        ),
    ]
    if describe.get("command"):
        lines += ["", "## Reproduce", "", "```bash", describe["command"], "```"]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")


def write_run_card(
    folder: Path, kind: str, record: dict, recipe: FinetuneRecipe, task: Task, describe: dict
) -> None:
    """Write the card of one of the run's model folders as its `README.md`."""
    build_run_card(kind, record, recipe, task, describe).save(folder / "README.md")


def _card_data(record: dict, task: Task, scores: dict, dataset: str, hub_base: str | None) -> ModelCardData:
    """The Hub metadata of a run's folder: its base, dataset, tags and validation scores."""
    return ModelCardData(
        base_model=hub_base,
        base_model_relation="finetune" if hub_base else None,
        datasets=[dataset] if is_repo_reference(dataset) else None,
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=["hfsoup", task.name],
        model_name=record["name"],
        eval_results=[
            EvalResult(
                task_type="text-classification",
                dataset_type=dataset,
                dataset_name=f"{dataset} ({task.name})",
                dataset_config=task.name,
                dataset_split=task.eval_splits[0],
                metric_type=name,
                metric_value=float(value),
            )
            for name, value in scores.items()
        ]
        or None,
    )


def describe_start(record: dict | None) -> str:
    """One line on how the runs' head started, with the probe's scores."""
    if record is None:
        return "a head drawn in each run"
    if record["head_init"] == "random":
        return f"a random head drawn once with head_seed {record['head_seed']}"
    scores = ", ".join(
        f"{split} {record[split]['score']:.4f}" for split in ("train", "validation") if split in record
    )
    return f"a linear-probed head ({record['projection']} fitted on {record['train_rows']} training rows: {scores})"
