"""A plain merge: the uniform or weighted average of checked ingredients, with nothing scored.

Without a task or a dataset there is no held-out score to choose by, so only the fixed mixes (`uniform`,
`weighted`) apply, as in mergekit's linear merge. The ingredients are checked as for a scored merge (configs,
weights, labels aligned to the first ingredient's `id2label`), and the result records the recipe, the
ingredients and their weights, so `soup.yaml` replays; the card says that the soup is unevaluated.
"""

from __future__ import annotations

import torch

from .recipe import MergeRecipe
from .result import IngredientRecord, MergeResult
from .soup import Ingredient, get_method
from .sources import LocalSource

__all__ = ["plain_soup"]


def plain_soup(recipe: MergeRecipe, ingredients: list[Ingredient], model: torch.nn.Module) -> MergeResult:
    """Average `ingredients` into `model` by the recipe's method, without scoring anything.

    Args:
        recipe: the recipe; its method is `uniform` or `weighted` (a recipe without a task refuses the others).
        ingredients: the checked ingredients, their labels aligned.
        model: the model whose weights become the soup.

    Returns:
        The result: no task, dataset, metric, split or score; each ingredient's weight in the soup.

    Example:

    ```python
    >>> result = plain_soup(MergeRecipe(models=["a", "b"], method="uniform"), ingredients, model)
    >>> [record.weight for record in result.ingredients]
    [0.5, 0.5]
    ```
    """
    method = get_method(recipe.method)
    soup = method(ingredients, dict(model.state_dict()), weights=recipe.weights)
    records = [
        IngredientRecord(
            name=ingredient.name,
            reference=ingredient.reference,
            repo_id=ingredient.source.repo_id,
            revision=ingredient.revision,
            scores={},
            content_hash=(
                ingredient.source.content_hash if isinstance(ingredient.source, LocalSource) else None
            ),
        )
        for ingredient in ingredients
    ]
    for index, weight in zip(soup.selected, soup.weights, strict=True):
        records[index].selected, records[index].weight = True, weight
    return MergeResult(
        task=None,
        dataset=None,
        splits={},
        metric=None,
        score_key=None,
        method=method.name,
        method_paper=method.paper,
        method_description=method.description,
        ingredients=records,
        order_added=list(soup.selected),
        log=[],
        candidates={},
        best_ingredient=None,
        recipe=recipe.to_dict(),
        seed=recipe.seed,
    )
