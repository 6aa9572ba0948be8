"""The Markdown tables and sections of a model card: scores, best subsets, coefficients, the gain, the start, a refit.

`card.py` lays the card out; the tables it embeds are built here, from the [`MergeResult`] alone.
"""

from __future__ import annotations

import math

from ..result import MergeResult, Scores

__all__ = ["coefficients_section", "number", "result_sections", "subsets_section", "table"]

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


_GAIN = """
## How sure the gain is

On the `{split}` split, the soup scores {gain:+.4f} against the best ingredient; a paired bootstrap of the
split's rows ({resamples} resamples, seed {seed}) puts the difference between {low:+.4f} and {high:+.4f} with
{level}% confidence. {verdict}
"""
_REFIT = """
## The head was refitted

After averaging, the head's final projection (`{projection}`) was fitted anew on the soup's own frozen features of
{rows} rows of the `{split}` split, by L2-regularized regression (l2 {probe_l2}); it scores {score:.4f} on them.
The table shows the soup with its averaged head beside it.
"""
_RATES = """
## Learning rates

{text}
"""
_MISSING = """
## Runs missing from the soup

{count} run(s) of the sweep were not finished when it was souped (`--allow-missing`), so their ingredients are not
in it: {runs}.
"""
_START = """
## How the ingredients started

{start}
"""


def _gain_section(gain: dict) -> str:
    if gain["low"] > 0:
        verdict = "The interval lies above 0: the soup is better than its best ingredient on these rows."
    elif gain["high"] < 0:
        verdict = "The interval lies below 0: the soup is worse than its best ingredient on these rows."
    else:
        verdict = "The interval contains 0: these rows cannot tell the soup from its best ingredient."
    return _GAIN.format(
        **{key: gain[key] for key in ("split", "resamples", "seed", "low", "high")},
        gain=gain["soup_minus_best"],
        level=round(gain["level"] * 100),
        verdict=verdict,
    )


def _describe_start(start: dict) -> str:
    """The sweep's start, as the card says it: the probed head and its scores, or the head drawn once."""
    if start.get("head_init") != "linear_probe":
        return (
            f"Every run started from one task head drawn at random once (head_seed {start.get('head_seed')})."
        )
    scores = ", ".join(
        f"{split} {start[split]['score']:.4f}" for split in ("train", "validation") if split in start
    )
    return (
        f"Every run started from one linear-probed head: its final projection (`{start['projection']}`) was fitted "
        f"by L2-regularized regression (l2 {start['probe_l2']}) on the frozen base's features of "
        f"{start['train_rows']} training rows before fine-tuning (LP-FT). The probe alone scores {scores}."
    )


def describe_rates(rates: dict) -> str:
    """The sweep's rates as the table and the card say them: each rate souped alone and the one kept, or mixed."""
    listed = ", ".join(f"{rate:g}" for rate in rates["rates"])
    if rates["mixed"]:
        return (
            f"The runs span the learning rates {listed}, souped together (`mix_rates: true`): runs at different rates "
            'end in different places, and their soup may fall below its best run (RESULTS.md, "Soups that pay").'
        )
    scores = ", ".join(f"{float(rate):g} {score:.4f}" for rate, score in rates["selection"].items())
    return (
        f"The runs span the learning rates {listed}: each rate's runs were souped alone, and the soup of rate "
        f"{rates['chosen']:g}, best on the selection split ({scores}), is this one."
    )


def result_sections(result: MergeResult) -> str:
    """The card's sections after its tables, each when the result has it: subsets, coefficients, gain, start, refit."""
    notes = subsets_section(result) if result.top_subsets else ""
    notes += coefficients_section(result) if result.coefficients else ""
    notes += _gain_section(result.gain) if result.gain else ""
    notes += _START.format(start=_describe_start(result.start)) if result.start else ""
    if result.rates:
        notes += _RATES.format(text=describe_rates(result.rates))
    if result.missing_runs:
        runs = ", ".join(f"`{run}`" for run in result.missing_runs)
        notes += _MISSING.format(count=len(result.missing_runs), runs=runs)
    if result.refit_head:
        notes += _REFIT.format(**result.refit_head, score=result.refit_head["train"]["score"])
    return notes
