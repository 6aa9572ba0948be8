"""The Markdown tables of a model card: scores, a subset search's best subsets, a learned soup's coefficients.

`card.py` lays the card out; the tables it embeds are built here, from the [`MergeResult`] alone.
"""

from __future__ import annotations

import math

from ..result import MergeResult, Scores

__all__ = ["coefficients_section", "number", "subsets_section", "table"]

_SUBSETS = """
## Subset search

The uniform soups of all {count} non-empty subsets of the ingredients were scored on the selection split. The
best {top} (ties go to the smaller subset, then to the lower indices; the first is this soup):

{table}
"""
_COEFFICIENTS = """
## Learned coefficients

The soup is `sum_i alpha_i * ingredient_i`, each row of coefficients a convex combination (a softmax), fitted by
gradient descent on the selection split's loss from the uniform soup, {how}. `soup.yaml` records them exactly
(`coefficients`), and `hfsoup merge --recipe soup.yaml` rebuilds the soup from them without fitting.

{table}
"""


def number(scores: Scores, split: str, key: str) -> str:
    """A score as a table cell: 4 decimals, `n/a` for NaN, `–` when it was not measured."""
    value = scores.get(split, {}).get(key)
    if value is None:
        return "–"
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table; `|` inside a cell is escaped."""
    lines = [header, ["---"] * len(header), *([cell.replace("|", "\\|") for cell in row] for row in rows)]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def subsets_section(result: MergeResult) -> str:
    """The card's section on a subset search: its best subsets with their selection scores, best first."""
    rows = [
        [str(rank), ", ".join(f"#{i} {result.ingredients[i].name}" for i in s.indices), f"{s.score:.4f}"]
        for rank, s in enumerate(result.top_subsets, 1)
    ]
    return _SUBSETS.format(
        count=2 ** len(result.ingredients) - 1,
        top=len(rows),
        table=table(["Rank", "Ingredients", "Selection score"], rows),
    )


def coefficients_section(result: MergeResult) -> str:
    """The card's section on a learned soup: one row of coefficients per tensor group, one column per ingredient.

    Example:
        ```python
        >>> print(coefficients_section(result))  # a learned soup of two ingredients, one coefficient each
        ...
        | Tensor group | #0 alice/bert-mrpc | #1 bob/bert-mrpc |
        | --- | --- | --- |
        | all | 0.6250 | 0.3750 |
        ```
    """
    groups = len(result.coefficients)
    how = "one per ingredient" if groups == 1 else f"one per ingredient in each of {groups} tensor groups"
    header = ["Tensor group", *(f"#{i} {record.name}" for i, record in enumerate(result.ingredients))]
    rows = [[group, *(f"{value:.4f}" for value in values)] for group, values in result.coefficients.items()]
    return _COEFFICIENTS.format(how=how, table=table(header, rows))
