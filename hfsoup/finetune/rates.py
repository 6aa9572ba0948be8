"""The soup of a sweep whose runs span several learning rates: each rate souped alone, the best one kept.

Runs at different rates end in different places: in RESULTS.md ("Soups that pay"), runs at one rate souped
while the uniform soup of runs at 5e-5 and 1e-4 fell below its best run. So when a sweep's runs span several
rates, each rate's runs are souped alone (scored, not written), and the soup that scores best on the selection
split is the one written; the table, the card and `soup.yaml` (`rates`) give every rate's selection score. The
report split stays held out: it takes no part in the choice. A recipe with `mix_rates: true` soups every run
together, and the table says that it mixed rates, and why that may cost.
"""

from __future__ import annotations

import logging

from ..result import SOUP

__all__ = ["rate_groups", "rates_record", "selection_score"]

logger = logging.getLogger(__name__)


def rate_groups(
    records: list[tuple[dict, list[str]]], default: float
) -> dict[float, list[tuple[dict, list[str]]]]:
    """The finished runs by learning rate (a run's own `learning_rate`, else the recipe's), in ascending rate."""
    groups: dict[float, list] = {}
    for record, folders in records:
        groups.setdefault(float(record["overrides"].get("learning_rate", default)), []).append(
            (record, folders)
        )
    return dict(sorted(groups.items()))


def rates_record(scores: dict[float, float] | None, rates: list[float]) -> dict:
    """What `soup.yaml` and the card say of the rates: each one's soup selection score and the one kept, or `mixed`."""
    if scores is None:
        return {"mixed": True, "rates": rates}
    chosen = max(scores, key=lambda rate: (scores[rate], -rate))
    logger.info(
        "The runs span %d learning rates; each souped alone, on selection: %s; keeping the soup of rate %g",
        len(scores), ", ".join(f"{rate:g} {score:.4f}" for rate, score in scores.items()), chosen,
    )  # fmt: skip
    return {
        "mixed": False,
        "rates": rates,
        "selection": {str(rate): scores[rate] for rate in rates},
        "chosen": chosen,
    }


def selection_score(result) -> float:
    """A soup's score on the selection split (what picks among the rates' soups)."""
    return result.candidates[SOUP]["selection"]["score"]
