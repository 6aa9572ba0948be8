"""A scored merge: every ingredient, the ensemble, the uniform soup and the recipe's soup, on every split.

The soups are written into the model's tensors one after the other (the model ends holding the recipe's soup);
the result records each candidate's scores, which ingredients the soup took with which weights, and the
method's decisions.
"""

from __future__ import annotations

import logging

import torch
from huggingface_hub.utils import tqdm

from .eval.data import DEFAULT_DATASET
from .eval.scoring import Scorer
from .eval.tasks import Task
from .recipe import MergeRecipe
from .result import BEST, ENSEMBLE, SOUP, UNIFORM, IngredientRecord, MergeResult
from .soup import LearnedSettings, get_method, load_into
from .sources import LocalSource

logger = logging.getLogger(__name__)

__all__ = ["scored_soup", "split_specs"]


def _score_all(scorers: dict[str, Scorer]) -> tuple[dict, dict]:
    scores, logits = {}, {}
    for role, scorer in scorers.items():
        scores[role], logits[role] = scorer()
    return scores, logits


def _learned_settings(recipe: MergeRecipe) -> LearnedSettings:
    """The recipe's `learned_*` fields as the learned soup's settings; fields left out keep their defaults."""
    given = {
        "per_layer": recipe.learned_per_layer,
        "epochs": recipe.learned_epochs,
        "learning_rate": recipe.learned_learning_rate,
        "coefficients": recipe.learned_coefficients,
    }
    return LearnedSettings(**{key: value for key, value in given.items() if value is not None})


def scored_soup(recipe, task, ingredients, model, scorers, progress, gradient) -> MergeResult:
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
                repo_id=source.repo_id,
                revision=ingredient.revision,
                scores=scores,
                content_hash=source.content_hash if isinstance(source, LocalSource) else None,
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
    # `selection.score(beat=x)` may stop a pass early; offered only when the score allows an exact bound.
    soup = method(
        ingredients,
        target,
        score=selection.score if selection.has_bound else (lambda: selection.score()),
        individual_scores=selection_scores,
        weights=recipe.weights,
        gradient=gradient,
        settings=_learned_settings(recipe),
    )
    candidates[SOUP] = _score_all(scorers)[0]
    for index, weight in zip(soup.selected, soup.weights, strict=True):
        records[index].selected, records[index].weight = True, weight
    for step in soup.log:
        logger.info(step.describe())

    return MergeResult(
        task=task.name,
        dataset=recipe.dataset or DEFAULT_DATASET,
        splits=split_specs(recipe, task),
        metric=recipe.metric or task.metric_name,
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
        top_subsets=list(soup.top_subsets),
        coefficients=dict(soup.coefficients),
    )


def split_specs(recipe: MergeRecipe, task: Task | None) -> dict[str, str]:
    """Split role -> split spec: `selection`, `report`, and MNLI's mismatched validation, reported whole.

    A plain merge (no task) reads no split.
    """
    if task is None:
        return {}
    specs = {"selection": recipe.selection_split, "report": recipe.report_split}
    if recipe.report_split == "report":
        specs.update({name: name for name in task.eval_splits[1:]})
    return specs
