"""A scored merge: every ingredient, the ensemble, the uniform soup and the recipe's soup, on every split.

The soups are written into the model's tensors one after the other (the model ends holding the recipe's soup).
Where a greedy candidate (or a subset, or a learned soup's step) is scored: [`scored_soup`] hands the method
`score=`, the selection split's `Scorer.score` (`hfsoup/eval/scoring.py`), which scores the model's current
weights; the method calls it once per candidate it writes into them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import datasets
import torch
from huggingface_hub.utils import tqdm
from transformers import PreTrainedTokenizerBase

from ..eval.bootstrap import paired_gain
from ..eval.loss import SelectionLoss
from ..eval.scoring import Scorer
from ..eval.tasks import Task
from ..recipe.merge import MergeRecipe
from ..result import AVERAGED_HEAD, BEST, ENSEMBLE, SOUP, UNIFORM, Scores
from ..soup import Ingredient, LearnedSettings, get_method, load_into
from .record import Souped, ingredient_records
from .refit import refit_head

logger = logging.getLogger(__name__)

__all__ = ["Scoring", "scored_soup", "split_specs"]


@dataclass
class Refit:
    """What `--refit-head` fits the soup's head on: training rows, the tokenizer, and how to encode them."""

    rows: datasets.Dataset
    tokenizer: PreTrainedTokenizerBase
    split: str
    max_length: int = 128
    batch_size: int = 64


@dataclass
class Scoring:
    """What a scored merge scores with: a `Scorer` per split role, and the selection loss a fitted method descends.

    Args:
        scorers: split role (`selection`, `report`, ...) -> its `Scorer`, all on the model the soups go into.
        loss: the selection split's `SelectionLoss`, for a method that fits (`learned`); `None` otherwise.
        refit: the training rows of `--refit-head`; `None` keeps the averaged head.
    """

    scorers: dict[str, Scorer]
    loss: SelectionLoss | None = None
    refit: Refit | None = None

    def all_splits(self) -> tuple[dict[str, dict[str, float]], dict[str, torch.Tensor]]:
        """The model's current weights scored on every split: metrics and logits by role."""
        scores, logits = {}, {}
        for role, scorer in self.scorers.items():
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


def scored_soup(
    recipe: MergeRecipe,
    ingredients: list[Ingredient],
    model: torch.nn.Module,
    scoring: Scoring,
    *,
    progress: bool = True,
    base: Ingredient | None = None,
) -> Souped:
    """Score every ingredient, the ensemble, the uniform soup and the recipe's soup; the model ends with the soup.

    Args:
        recipe: the method and its settings.
        ingredients: the checked ingredients, their labels aligned.
        model: the float32 model the soups are written into, which the scorers score.
        scoring: the scorers of every split, and the selection loss of a fitted method.
        progress: show a progress bar over the ingredients.
        base: the common base, for a method that needs one (`model_stock`).

    Returns:
        The [`Souped`]: each ingredient's scores, what the method chose, the candidates' scores.
    """
    target = dict(model.state_dict())
    all_scores: list[Scores] = []
    all_logits = []
    for ingredient in tqdm(ingredients, desc="Scoring ingredients", disable=not progress):
        load_into(target, ingredient)
        scores, logits = scoring.all_splits()
        all_scores.append(scores)
        all_logits.append(logits)
        logger.info("%s: selection score %.4f", ingredient.name, scores["selection"]["score"])

    selection_scores = [scores["selection"]["score"] for scores in all_scores]
    best = max(range(len(ingredients)), key=lambda i: (selection_scores[i], -i))
    candidates = {
        BEST: all_scores[best],
        ENSEMBLE: {
            role: scorer.metrics(torch.stack([logits[role] for logits in all_logits]).mean(0))
            for role, scorer in scoring.scorers.items()
        },
    }
    if recipe.method != "uniform":
        get_method("uniform")(ingredients, target)
        candidates[UNIFORM] = scoring.all_splits()[0]

    selection = scoring.scorers["selection"]
    # Each candidate a method tries is scored here: `selection.score(beat=x)` may stop a pass early, which
    # is offered only when the score allows an exact bound.
    soup = get_method(recipe.method)(
        ingredients,
        target,
        score=selection.score if selection.has_bound else (lambda: selection.score()),
        individual_scores=selection_scores,
        weights=recipe.weights,
        gradient=scoring.loss,
        settings=_learned_settings(recipe),
        base=base,
        min_gain=recipe.greedy_min_gain or 0.0,
    )
    refitted = None
    if scoring.refit is not None:  # the soup with its averaged head is scored beside the refitted one
        candidates[AVERAGED_HEAD] = scoring.all_splits()[0]
        refit = scoring.refit
        refitted = refit_head(
            model, refit.tokenizer, scoring.scorers["selection"].task, refit.rows, split=refit.split,
            max_length=refit.max_length, batch_size=refit.batch_size,
        )  # fmt: skip
    candidates[SOUP], soup_logits = scoring.all_splits()
    for step in soup.log:
        logger.debug(step.describe())
    gain = None
    if "report" in scoring.scorers:  # how sure the soup's gain over the best ingredient is, on held-out rows
        report = scoring.scorers["report"]
        gain = {
            "split": "report",
            **paired_gain(report, soup_logits["report"], all_logits[best]["report"], seed=recipe.seed),
        }
    return Souped(ingredient_records(ingredients, all_scores), soup, candidates, best, gain, refitted)


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
