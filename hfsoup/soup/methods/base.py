"""What every soup method shares: the ingredient protocol, the result, a greedy step, argument checks."""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from ...errors import InvalidSettingError
from ...result import SubsetScore

__all__ = [
    "SOUPS_PAPER",
    "SoupIngredient",
    "SoupResult",
    "SoupStep",
    "SubsetScore",
    "is_number",
    "refuse_weights",
    "takes_beat",
]

SOUPS_PAPER = "https://arxiv.org/abs/2203.05482"


class SoupIngredient(Protocol):
    """What a soup needs of an ingredient (implemented by `hfsoup.soup.Ingredient`)."""

    name: str

    def tensors(self, names: Iterable[str] | None = None) -> Iterator[tuple[str, torch.Tensor]]: ...


@dataclass
class SoupStep:
    """One decision of a greedy soup.

    Args:
        index: the ingredient's position in the list given to the method.
        name: the ingredient's display name.
        candidate_score: the selection score of the soup with this ingredient added (for the first ingredient,
            its individual score).
        score_before: the selection score of the soup before this step (`None` for the first ingredient).
        accepted: whether the ingredient joined the soup.
        min_gain: the margin a candidate had to beat the soup by (0: the paper's strict rule).
    """

    index: int
    name: str
    candidate_score: float
    score_before: float | None
    accepted: bool
    min_gain: float = 0.0

    def describe(self) -> str:
        """The step as one line of text, as it is logged."""
        who = f"#{self.index} {self.name!r}"
        if self.score_before is None:
            return f"start with {who}: best individual score {self.candidate_score:.4f}"
        bar = f"{self.score_before:.4f}" + (f" + {self.min_gain:g}" if self.min_gain else "")
        if self.accepted:
            return f"accept {who}: candidate soup scores {self.candidate_score:.4f} > {bar}"
        tie = " (a tie is not an improvement)" if self.candidate_score == self.score_before else ""
        return f"reject {who}: candidate soup scores {self.candidate_score:.4f}, not > {bar}{tie}"


@dataclass
class SoupResult:
    """What a soup method did; the soup itself is in the target.

    Args:
        method: the method's registry name.
        selected: indices of the ingredients in the soup, in the order they were added.
        weights: the weight of each selected ingredient (same order), summing to 1.
        log: every accept and reject of a greedy soup, every epoch of a learned soup's fit (empty for the
            others); each step has `describe()`, its line of text.
        selection_score: the soup's selection score, if it was computed.
        top_subsets: the best subsets a subset search scored, best first (empty for the other methods).
        coefficients: a learned soup's mixing coefficients, tensor group -> one per ingredient (empty for the
            other methods).
    """

    method: str
    selected: list[int]
    weights: list[float]
    log: list = field(default_factory=list)
    selection_score: float | None = None
    top_subsets: list[SubsetScore] = field(default_factory=list)
    coefficients: dict[str, list[float]] = field(default_factory=dict)


def refuse_weights(method: str, weights: Sequence[float] | None) -> None:
    if weights is not None:
        raise InvalidSettingError(
            f"Soup method {method!r} takes no weights; use method 'weighted' to give each ingredient a weight."
        )


def is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def takes_beat(score: Callable[..., float | None]) -> bool:
    """Whether `score` has a `beat` parameter, so `score(beat=x)` may stop early (see [`SoupMethod.__call__`])."""
    return "beat" in inspect.signature(score).parameters
