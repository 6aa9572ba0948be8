"""Tests of hfsoup.soup.compat.report: the report's verdict, text, and the label alignment it applies."""

from __future__ import annotations

import json

import pytest
import torch

from hfsoup.soup import load_ingredient
from hfsoup.soup.compat.report import CompatReport, grouped


def test_aligned_reads_each_ingredient_in_its_label_order_and_changes_none(tiny_ingredient_dirs):
    first, second = (load_ingredient(str(folder)) for folder in tiny_ingredient_dirs[:2])
    report = CompatReport(ingredients=["a", "b"], label_orders=[None, [1, 0]])

    aligned = report.aligned([first, second])

    assert aligned[0] is first
    assert aligned[1] is not second and aligned[1].label_permutation == [1, 0]
    assert second.label_permutation is None
    stored = second.tensor("classifier.weight")
    assert torch.equal(aligned[1].tensor("classifier.weight"), stored[[1, 0]])
    assert CompatReport(ingredients=["a", "b"]).aligned([first, second]) == [first, second]
    with pytest.raises(ValueError):  # one order per ingredient, never silently fewer
        report.aligned([first])


def test_summary_is_one_line_with_the_first_three_problems():
    ok = CompatReport(ingredients=["a", "b", "c"], warnings=["w"])
    broken = CompatReport(
        ingredients=["a", "b"], errors=["e1; how to fix it", "e2", "e3", "e4", "e5; more detail"]
    )

    assert ok.summary() == "3 ingredients can be averaged (1 warning(s))."
    assert broken.summary() == (
        "5 problem(s) make these ingredients incompatible: e1; e2; e3; and 2 more; "
        "run `hfsoup inspect` on them for the full report."
    )


def test_to_text_lists_every_entry_by_severity_and_ends_with_the_verdict():
    report = CompatReport(ingredients=["a", "b"], base="base", errors=["E"], warnings=["W"], notes=["N"])

    lines = report.to_text().splitlines()

    assert lines[:2] == ["Compatibility of 2 ingredients: a, b", "Base: base"]
    assert "Errors (1):" in lines and "  - E" in lines and "Warnings (1):" in lines and "  - W" in lines
    assert "Notes (2):" in lines and "  - N" in lines  # and the note that the weights were not read
    assert any("weights were not read" in line for line in lines)
    assert lines[-1] == "Result: INCOMPATIBLE: fix the errors above."
    checked = CompatReport(ingredients=["a"], weights_checked=True).to_text()
    assert "weights were not read" not in checked and "Notes" not in checked
    assert checked.endswith("Result: OK, these ingredients can be averaged.")


def test_grouped_names_who_has_which_value():
    assert grouped([32, 32], ["a", "b"]) is None
    assert grouped([32, 48, 32], ["a", "b", "c"]) == "32 (a, c) vs 48 (b)"
    assert grouped([{"y": 1, "x": 2}, {"x": 2, "y": 1}], ["a", "b"]) is None  # key order does not matter


def test_to_dict_holds_the_verdict_every_finding_and_the_alignment():
    report = CompatReport(
        ingredients=["a", "b"],
        errors=["E"],
        warnings=["W"],
        notes=["N"],
        label_orders=[None, [1, 0]],
        label_names=["no", "yes"],
    )
    data = report.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["ok"] is False and CompatReport(ingredients=["a"]).to_dict()["ok"] is True
    assert (data["errors"], data["warnings"], data["notes"]) == (["E"], ["W"], ["N"])
    assert data["label_orders"] == [None, [1, 0]] and data["label_names"] == ["no", "yes"]
    assert data["weights_checked"] is False and data["base"] is None


def test_a_report_that_read_no_weight_does_not_say_ok():
    text = CompatReport(ingredients=["a", "b"]).to_text()
    assert "Result: OK" not in text and "the metadata shows no problem" in text and "--weights" in text
