"""The `soup.yaml` of a merge: its recipe and everything it measured, as plain YAML (the card's machine twin).

`hfsoup merge --recipe soup.yaml` replays the recipe (read back by `recipe.load_soup_yaml`, the one reader);
the rest records what was measured and chosen, rounded to 6 significant digits. A plain merge records its
ingredients and weights, and no score.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import yaml

from ..result import SOUP_FORMAT, MergeResult, Scores

__all__ = ["significant", "soup_yaml"]


def significant(value: float) -> float:
    """A measured number to 6 significant digits, still a float (NaN and infinities unchanged)."""
    return float(f"{value:.6g}")


def _plain(value):
    """`value` as plain YAML data: tuples become lists, paths strings, floats are kept as they are."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return str(value) if isinstance(value, Path) else value


def _rounded(scores: Scores) -> Scores:
    return {
        split: {key: significant(value) for key, value in metrics.items()}
        for split, metrics in scores.items()
    }


def soup_yaml(result: MergeResult, *, weights_hash: str | None = None) -> str:
    """The machine-readable recipe and result of a merge, as YAML (format `hfsoup-soup/1`).

    Scores and weights are rounded to 6 significant digits; the recipe and a learned soup's `coefficients`
    (which its replay reuses) are kept exactly. `weights_hash`, the soup's weight files' `sha256:` as written,
    lets `hfsoup push` refuse weights that changed after the card was made.

    Example:
        ```python
        >>> yaml.safe_load(soup_yaml(result))["format"]
        'hfsoup-soup/1'
        ```
    """
    data = {
        "format": SOUP_FORMAT,
        "hfsoup_version": version("hfsoup"),
        "date": datetime.now(UTC).date().isoformat(),
        "command": result.command,
        "weights_hash": weights_hash,
        "recipe": _plain(result.recipe),
        "task": result.task,
        "dataset": result.dataset,
        "splits": dict(result.splits),
        "seed": result.seed,
        "metric": result.metric,
        "score": result.score_key,
        "labels": list(result.label_names),
        "method": {
            "name": result.method,
            "paper": result.method_paper,
            "description": result.method_description,
        },
        "ingredients": [
            {
                **asdict(record),
                "pinned_reference": record.pinned_reference,
                "weight": significant(record.weight),
                "scores": _rounded(record.scores),
            }
            for record in result.ingredients
        ],
        "soup": [
            {
                "index": index,
                "pinned_reference": record.pinned_reference,
                "weight": significant(record.weight),
            }
            for index, record in zip(result.order_added, result.selected, strict=True)
        ],
        "top_subsets": [
            {"ingredients": list(subset.indices), "selection_score": significant(subset.score)}
            for subset in result.top_subsets
        ],
        "coefficients": {group: list(values) for group, values in result.coefficients.items()},
        "best_ingredient": result.best_ingredient,
        "results": {key: _rounded(scores) for key, scores in result.candidates.items()},
        "gain": _plain(result.gain),
        "start": _plain(result.start),
        "refit_head": _plain(result.refit_head),
        "missing_runs": list(result.missing_runs),
        "shared_rows": dict(result.shared_rows),
        "rates": _plain(result.rates),
        "log": list(result.log),
        "compatibility": list(result.compatibility),
    }
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
