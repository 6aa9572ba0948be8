"""Orchestration: a recipe in, a scored soup and its output folder out.

The order of work is chosen so that a doomed merge fails fast and a failed one leaves nothing behind:
output folder and recipe checks, then the metadata-only compatibility report (no weight download), then
weights, scoring and souping, and only when everything succeeded the output folder moves into place.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub.utils import tqdm
from transformers import AutoModelForSequenceClassification

from .card import write_card_files
from .compat import ensure_compatible
from .errors import OutputExistsError
from .ingredients import Ingredient, load_ingredient, load_ingredients
from .recipe import MergeRecipe
from .result import BEST, ENSEMBLE, SOUP, UNIFORM, IngredientRecord, MergeResult
from .scoring import Scorer
from .soup import get_method, load_into
from .tasks import DEFAULT_DATASET, Task, get_task, load_metric, load_split

logger = logging.getLogger(__name__)

__all__ = ["Merge", "run_merge"]

# Weight files above this size are split into shards with an index, as `save_pretrained` does on the Hub.
MAX_SHARD_SIZE = "2GB"


@dataclass
class Merge:
    """A finished merge: the result and, when written, the output folder."""

    result: MergeResult
    output_dir: Path | None


def run_merge(
    recipe: MergeRecipe,
    *,
    output_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    token: str | bool | None = None,
    command: str = "",
    repo_id: str | None = None,
    progress: bool = True,
) -> Merge:
    """Check, score and soup the recipe's ingredients; write the soup folder if `output_dir` is given.

    Args:
        recipe: what to merge and how.
        output_dir: where the soup goes (model, tokenizer, `README.md`, `soup.yaml`); `None` writes nothing.
        overwrite: replace an existing `output_dir`.
        token: a Hub token for private or gated ingredients.
        command: the command line that reproduces this merge, for the card.
        repo_id: the Hub repository the soup will be pushed to, which names it in the card.
        progress: show progress bars.

    Returns:
        The [`Merge`].

    Raises:
        OutputExistsError: `output_dir` exists and `overwrite` is false.
        IncompatibleIngredientsError: the ingredients cannot be averaged.
        HfSoupError: any other user error (missing model, bad dataset, Hub error...).
    """
    output = Path(output_dir) if output_dir is not None else None
    if output is not None and output.exists() and not overwrite:
        raise OutputExistsError(
            f"output folder {output} exists; pass --overwrite to replace it, or choose another."
        )
    task = get_task(recipe.task)
    references = list(recipe.models)
    if recipe.finetune is not None:
        from .finetune import finetune_ingredients

        work_dir = (output.parent / f"{output.name}-ingredients") if output else Path("hfsoup-ingredients")
        references += finetune_ingredients(
            recipe.finetune, task, dataset=recipe.dataset, work_dir=work_dir, seed=recipe.seed
        )
    ingredients = load_ingredients(references, token=token)
    base = load_ingredient(recipe.base, token=token) if recipe.base else None
    # Metadata first (configs, tokenizers, headers: no weights), then the value checks that read weights.
    ensure_compatible(ingredients, base=base, check_values=False)
    report = ensure_compatible(ingredients, base=base, check_values=True)
    for line in report.warnings:
        logger.warning(line)

    model, tokenizer = _model_of(ingredients[0]), ingredients[0].tokenizer()
    scorers = _scorers(recipe, task, model, tokenizer)
    result = _soup(recipe, task, ingredients, model, scorers, progress)
    result.compatibility = report.warnings + report.notes
    result.command = command
    if output is None:
        return Merge(result, None)
    with _staged(output, overwrite) as staging:
        model.save_pretrained(staging, max_shard_size=MAX_SHARD_SIZE)
        tokenizer.save_pretrained(staging)
        write_card_files(result, staging, repo_id=repo_id, name=output.name)
    logger.info("Wrote the soup to %s", output)
    return Merge(result, output)


def _model_of(first: Ingredient) -> torch.nn.Module:
    """An fp32 model of the first ingredient's architecture and label mapping; weights come in later."""
    config = first.config
    model = AutoModelForSequenceClassification.from_config(
        config, trust_remote_code=False, dtype=torch.float32
    )
    return model.eval()


def _scorers(recipe: MergeRecipe, task: Task, model, tokenizer) -> dict[str, Scorer]:
    """One scorer per split role: `selection`, `report`, and MNLI's mismatched validation."""
    metric = load_metric(task, recipe.metric)
    return {
        role: Scorer(
            model,
            tokenizer,
            task,
            load_split(task, split, dataset=recipe.dataset, seed=recipe.seed),
            metric=metric,
            metric_key=recipe.metric_key,
            batch_size=recipe.batch_size,
            max_length=recipe.max_length,
        )
        for role, split in _split_specs(recipe, task).items()
    }


def _score_all(scorers: dict[str, Scorer]) -> tuple[dict, dict]:
    scores, logits = {}, {}
    for role, scorer in scorers.items():
        scores[role], logits[role] = scorer()
    return scores, logits


def _soup(recipe, task, ingredients, model, scorers, progress) -> MergeResult:
    """Score every ingredient, the ensemble, the uniform soup and the recipe's soup; the model ends with the soup."""
    target = dict(model.state_dict())
    records, all_logits = [], []
    for ingredient in tqdm(ingredients, desc="Scoring ingredients", disable=not progress):
        load_into(target, ingredient)
        scores, logits = _score_all(scorers)
        all_logits.append(logits)
        source = ingredient.source
        records.append(
            IngredientRecord(
                name=ingredient.name,
                reference=ingredient.reference,
                repo_id=getattr(source, "repo_id", None),
                revision=ingredient.revision,
                scores=scores,
            )
        )
        logger.info("%s: selection score %.4f", ingredient.name, scores["selection"]["score"])

    selection_scores = [record.scores["selection"]["score"] for record in records]
    best = max(range(len(records)), key=lambda i: (selection_scores[i], -i))
    candidates = {
        BEST: records[best].scores,
        ENSEMBLE: {
            role: scorer.metrics(torch.stack([logits[role] for logits in all_logits]).mean(0))
            for role, scorer in scorers.items()
        },
    }
    if recipe.method != "uniform":
        get_method("uniform")(ingredients, target)
        candidates[UNIFORM] = _score_all(scorers)[0]

    method = get_method(recipe.method)
    selection = scorers["selection"]
    soup = method(
        ingredients,
        target,
        score=lambda: selection.metrics(selection.logits())["score"],
        individual_scores=selection_scores,
        weights=recipe.weights,
    )
    candidates[SOUP] = _score_all(scorers)[0]
    candidates.setdefault(UNIFORM, candidates[SOUP])
    for index, weight in zip(soup.selected, soup.weights, strict=True):
        records[index].selected, records[index].weight = True, weight
    for step in soup.log:
        logger.info(step.describe())

    result = MergeResult(
        task=task.name,
        dataset=recipe.dataset or DEFAULT_DATASET,
        splits=_split_specs(recipe, task),
        metric=recipe.metric or "glue",
        score_key=recipe.metric_key or str(task.selection_key),
        method=method.name,
        method_paper=method.paper,
        method_description=method.description,
        ingredients=records,
        order_added=list(soup.selected),
        log=[step.describe() for step in soup.log],
        candidates=candidates,
        best_ingredient=best,
        recipe=recipe.to_dict(),
        seed=recipe.seed,
    )
    return result


def _split_specs(recipe: MergeRecipe, task: Task) -> dict[str, str]:
    """Split role -> split spec: `selection`, `report`, and MNLI's mismatched validation, reported whole."""
    specs = {"selection": recipe.selection_split, "report": recipe.report_split}
    if recipe.report_split == "report":
        specs.update({name: name for name in task.eval_splits[1:]})
    return specs


@contextmanager
def _staged(output: Path, overwrite: bool):
    """Write into a hidden sibling folder, then move it to `output` only if the block succeeded."""
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    try:
        yield staging
        if output.exists() and overwrite:
            shutil.rmtree(output)
        staging.rename(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
