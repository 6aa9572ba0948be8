"""Label checks: one set of labels, and one order that every ingredient's classifier rows are read in.

The common order is the task's label names when the caller knows them, else the first ingredient's that
names its labels. Ingredients that list the same labels in another order get a permutation of their
classifier rows; generic labels (`LABEL_0`, `LABEL_1`, ...) are taken to be in the common order, with a
warning, since nothing says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..ingredient import Ingredient
from .report import CompatReport, grouped

__all__ = ["check_labels", "is_generic", "label_names"]


def is_generic(labels: Sequence[str]) -> bool:
    """Whether labels are the `LABEL_<i>` placeholders transformers writes when none were given."""
    return all(label.upper() == f"LABEL_{index}" for index, label in enumerate(labels))


def label_names(ingredient: Ingredient) -> list[str]:
    """The ingredient's label names in label-id order."""
    id2label = ingredient.config.id2label
    return [str(id2label.get(k, f"LABEL_{k}")) for k in range(ingredient.config.num_labels)]


def _key(labels: Sequence[str]) -> list[str]:
    return [label.lower() for label in labels]


def check_labels(
    ingredients: list[Ingredient], report: CompatReport, task_labels: Sequence[str] | None = None
) -> None:
    """Check the label sets and fill `report.label_orders` and `report.label_names`.

    Args:
        ingredients: the ingredients.
        report: the report to add to.
        task_labels: the task's label names in its label-id order (`None` if unknown or a regression).
    """
    report.label_orders = [None] * len(ingredients)
    if line := grouped([i.config.num_labels for i in ingredients], [i.name for i in ingredients]):
        report.errors.append(
            f"num_labels differs: {line}; only classifiers of the same labels can be averaged."
        )
    size = ingredients[0].config.num_labels
    if size < 2:  # a regression head has no labels to order
        return
    named = [
        (i, label_names(i))
        for i in ingredients
        if i.config.num_labels == size and not is_generic(label_names(i))
    ]
    if task_labels and len(task_labels) == size:
        canonical, origin = list(task_labels), "the task's"
    elif named:
        canonical, origin = named[0][1], f"{named[0][0].name}'s"
    else:
        report.notes.append(
            "every ingredient has generic labels (LABEL_0, LABEL_1, ...): classes are matched by index."
        )
        return
    report.label_names = canonical
    generic = [i.name for i in ingredients if i.config.num_labels == size and is_generic(label_names(i))]
    if generic:
        report.warnings.append(
            f"{', '.join(generic)} name no labels (LABEL_0, LABEL_1, ...); they are taken to be in {origin} order "
            f"{canonical}: check that they were trained with that order."
        )
    whose = origin.removesuffix("'s")
    for index, ingredient in enumerate(ingredients):
        own = label_names(ingredient)
        if ingredient.config.num_labels != size or is_generic(own) or _key(own) == _key(canonical):
            continue
        if ingredient.head_layout is None:  # an unknown head: refused by the head check already
            continue
        if sorted(_key(own)) != sorted(_key(canonical)):
            report.errors.append(
                f"label sets differ: {whose} has {canonical}, {ingredient.name} has {own}; only classifiers "
                "of the same labels can be averaged."
            )
        elif not any(len(ingredient.tensor_infos[n].shape) == 2 for n in ingredient.label_tensor_names):
            report.errors.append(
                f"{ingredient.name} orders its labels differently ({own}) but has no classifier output tensor "
                f"with {len(own)} rows to reorder; re-save it with the label order {canonical}."
            )
        else:
            report.label_orders[index] = [_key(own).index(label) for label in _key(canonical)]
            report.warnings.append(
                f"{ingredient.name} orders its labels {own}: the rows of "
                f"{', '.join(ingredient.label_tensor_names)} are reordered to {origin} order {canonical}."
            )
