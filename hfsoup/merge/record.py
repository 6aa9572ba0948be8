"""The record of a merge: what a soup method chose (`Souped`), and the one place a `MergeResult` is built."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..eval.data import DEFAULT_DATASET
from ..eval.tasks import Task
from ..recipe.merge import MergeRecipe
from ..result import IngredientRecord, MergeResult, Scores
from ..soup import Ingredient, SoupResult, get_method
from ..sources import LocalSource, is_repo_reference

__all__ = ["Souped", "ingredient_records", "merge_result"]


@dataclass
class Souped:
    """What a merge's soup step produced: each ingredient's record, the method's result, and the scored candidates.

    Args:
        records: every ingredient, with its scores (none for a plain merge) and its weight in the soup.
        soup: what the soup method chose.
        candidates: the scores of the soup and its references (`SOUP`, `UNIFORM`, `BEST`, `ENSEMBLE`); empty
            for a plain merge.
        best: the index of the best ingredient on the selection split; `None` for a plain merge.
        gain: the soup minus the best ingredient on the report split, with its paired bootstrap interval (see
            `hfsoup.eval.bootstrap`); `None` for a plain merge.
        refit_head: how `--refit-head` fitted the soup's head (see `refit.py`); `None` when it was averaged.
    """

    records: list[IngredientRecord]
    soup: SoupResult
    candidates: dict[str, Scores] = field(default_factory=dict)
    best: int | None = None
    gain: dict | None = None
    refit_head: dict | None = None

    def __post_init__(self):
        for index, weight in zip(self.soup.selected, self.soup.weights, strict=True):
            self.records[index].selected, self.records[index].weight = True, weight


def ingredient_records(
    ingredients: list[Ingredient], scores: list[Scores] | None = None
) -> list[IngredientRecord]:
    """One record per ingredient, pinned (the Hub commit, a local folder's content hash), with its scores."""
    return [
        IngredientRecord(
            name=ingredient.name,
            reference=ingredient.reference,
            repo_id=ingredient.source.repo_id,
            revision=ingredient.revision,
            scores=scores[index] if scores else {},
            content_hash=(
                ingredient.source.content_hash if isinstance(ingredient.source, LocalSource) else None
            ),
        )
        for index, ingredient in enumerate(ingredients)
    ]


def merge_result(
    recipe: MergeRecipe,
    task: Task | None,
    ingredients: list[Ingredient],
    souped: Souped,
    *,
    splits: dict[str, str],
    label_names: list[str],
    compatibility: list[str],
    command: str,
    start: dict | None = None,
    missing_runs: list[str] | None = None,
    shared_rows: dict[str, int] | None = None,
    rates: dict | None = None,
) -> MergeResult:
    """The result of a merge, every field set here: what was souped, scored, chosen, and where it came from."""
    method = get_method(recipe.method)
    return MergeResult(
        task=task.name if task else None,
        dataset=(recipe.dataset or DEFAULT_DATASET) if task else None,
        splits=splits,
        metric=(recipe.metric or task.metric_name) if task else None,
        score_key=(recipe.metric_key or str(task.selection_key)) if task else None,
        method=method.name,
        method_paper=method.paper,
        method_description=method.description,
        ingredients=souped.records,
        order_added=list(souped.soup.selected),
        log=[step.describe() for step in souped.soup.log] if task else [],
        candidates=souped.candidates,
        best_ingredient=souped.best,
        compatibility=compatibility,
        command=command,
        recipe=recipe.to_dict(),
        seed=recipe.seed,
        base_model=_common_base(recipe, ingredients),
        license=_common_license(ingredients),
        top_subsets=list(souped.soup.top_subsets),
        coefficients=dict(souped.soup.coefficients),
        label_names=label_names,
        text_columns=list(task.text_columns) if task else [],
        halved_split=task.eval_splits[0] if task else "validation",
        start=start,
        missing_runs=list(missing_runs or []),
        shared_rows=dict(shared_rows or {}),
        rates=rates,
        gain=souped.gain,
        refit_head=souped.refit_head,
    )


def _common_base(recipe: MergeRecipe, ingredients: list[Ingredient]) -> str | None:
    """The pre-trained base the ingredients share, when a Hub id names it (`--base`, or every card agrees)."""
    if recipe.base and is_repo_reference(recipe.base):
        return recipe.base.partition("@")[0]
    shared = frozenset.intersection(*(i.declared_bases for i in ingredients))
    hub = sorted(b for b in shared if is_repo_reference(b))
    return hub[0] if len(hub) == 1 else None


def _common_license(ingredients: list[Ingredient]) -> str | None:
    """The license every ingredient's card declares, or `None` if one declares none or they differ."""
    licenses = {str(i.card_data.get("license") or "") for i in ingredients}
    shared = licenses.pop() if len(licenses) == 1 else ""
    return shared or None
