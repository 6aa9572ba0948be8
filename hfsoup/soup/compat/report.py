"""The compatibility report: every problem found among ingredients, and the label alignment to apply."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..ingredient import Ingredient

__all__ = ["CompatReport", "grouped"]


@dataclass
class CompatReport:
    """Every problem found among ingredients, grouped by severity; each entry is one readable line.

    Args:
        ingredients: the ingredients' display names.
        errors: problems that make averaging impossible; non-empty means incompatible.
        warnings: averaging is possible, but the soup may be meaningless or was adjusted.
        notes: differences that do not matter for averaging, and checks that were skipped.
        base: the base model's display name, if one was given.
        label_orders: per ingredient, `None` or the permutation that reads its classifier rows in the
            common label order (see [`CompatReport.aligned`]).
        label_names: the common label order every ingredient is aligned to (empty for regression or unknown).
        weights_checked: whether the value checks (NaN/Inf, common-base distances) ran.
        independent_tensors: tensors that look independently initialized in each ingredient (typically a task
            head drawn anew in every run) while the backbones are close; found by the value checks.
    """

    ingredients: list[str]
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    base: str | None = None
    label_orders: list[list[int] | None] = field(default_factory=list)
    label_names: list[str] = field(default_factory=list)
    weights_checked: bool = False
    independent_tensors: list[str] = field(default_factory=list)

    def ok(self) -> bool:
        """Whether the ingredients can be averaged (no errors)."""
        return not self.errors

    def aligned(self, ingredients: Sequence[Ingredient]) -> list[Ingredient]:
        """The ingredients, each read in the common label order (the originals are unchanged)."""
        orders = self.label_orders or [None] * len(ingredients)
        return [i.reordered(order) for i, order in zip(ingredients, orders, strict=True)]

    def to_dict(self) -> dict:
        """The report as plain JSON types, as `hfsoup inspect --json` prints it: every field, plus `ok`.

        Example:
            ```python
            >>> report.to_dict()["errors"]
            ['num_labels differs: 2 (a) vs 3 (b); ...']
            ```
        """
        return {"ok": self.ok(), **asdict(self)}

    def summary(self) -> str:
        """One line: the verdict and the first problems."""
        if self.ok():
            return f"{len(self.ingredients)} ingredients can be averaged ({len(self.warnings)} warning(s))."
        shown = "; ".join(error.split("; ")[0] for error in self.errors[:3])
        more = f"; and {len(self.errors) - 3} more" if len(self.errors) > 3 else ""
        return (
            f"{len(self.errors)} problem(s) make these ingredients incompatible: {shown}{more}; "
            "run `hfsoup inspect` on them for the full report."
        )

    def to_text(self) -> str:
        """The full report as plain text, one problem per line, for the terminal or a log."""
        lines = [f"Compatibility of {len(self.ingredients)} ingredients: {', '.join(self.ingredients)}"]
        if self.base:
            lines.append(f"Base: {self.base}")
        notes = self.notes + (
            []
            if self.weights_checked
            else ["weights were not read: the NaN/Inf and common-base checks were skipped."]
        )
        for title, entries in (("Errors", self.errors), ("Warnings", self.warnings), ("Notes", notes)):
            if entries:
                lines += ["", f"{title} ({len(entries)}):", *(f"  - {entry}" for entry in entries)]
        if not self.ok():
            verdict = "INCOMPATIBLE: fix the errors above."
        elif self.weights_checked:
            verdict = "OK, these ingredients can be averaged."
        else:
            verdict = (
                "the metadata shows no problem; the weights were not read, so NaN/Inf, a missing common base and "
                "independently drawn heads are unchecked (add --weights)."
            )
        return "\n".join([*lines, "", f"Result: {verdict}"])


def grouped(values: Sequence[object], names: Sequence[str]) -> str | None:
    """`"32 (a, c) vs 48 (b)"` if the values differ, else `None`."""
    groups: dict[str, list[str]] = {}
    for value, name in zip(values, names, strict=True):
        groups.setdefault(json.dumps(value, sort_keys=True, default=str), []).append(name)
    if len(groups) == 1:
        return None
    return " vs ".join(f"{value} ({', '.join(members)})" for value, members in groups.items())
