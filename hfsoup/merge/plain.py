"""A plain merge: the uniform or weighted average of checked ingredients, with nothing scored.

Without a task or a dataset there is no held-out score to choose by, so only the fixed mixes (`uniform`,
`weighted`) apply, as in mergekit's linear merge. The ingredients are checked as for a scored merge (configs,
weights, labels aligned to the first ingredient's `id2label`), and the result records the recipe, the
ingredients and their weights, so `soup.yaml` replays; the card says that the soup is unevaluated.
"""

from __future__ import annotations

import torch

from ..recipe.merge import MergeRecipe
from ..soup import Ingredient, get_method
from .record import Souped, ingredient_records

__all__ = ["plain_soup"]


def plain_soup(
    recipe: MergeRecipe,
    ingredients: list[Ingredient],
    model: torch.nn.Module,
    *,
    base: Ingredient | None = None,
) -> Souped:
    """Average `ingredients` into `model` by the recipe's method, without scoring anything.

    Args:
        recipe: the recipe; its method is `uniform` or `weighted` (a recipe without a task refuses the others).
        ingredients: the checked ingredients, their labels aligned.
        model: the model whose weights become the soup.
        base: the common base, for a method that needs one (`model_stock`).

    Returns:
        The [`Souped`]: no score, no candidate; each ingredient's weight in the soup.

    Example:

    ```python
    >>> souped = plain_soup(MergeRecipe(models=["a", "b"], method="uniform"), ingredients, model)
    >>> [record.weight for record in souped.records]
    [0.5, 0.5]
    ```
    """
    soup = get_method(recipe.method)(ingredients, dict(model.state_dict()), weights=recipe.weights, base=base)
    return Souped(ingredient_records(ingredients), soup)
