"""Tests of hfsoup.card_tables: score cells, Markdown tables, and the subset and coefficient sections."""

from __future__ import annotations

import math

from hfsoup.publish.tables import coefficients_section, number, subsets_section, table
from hfsoup.result import IngredientRecord, MergeResult, SubsetScore


def result_of(names: list[str], **fields) -> MergeResult:
    records = [IngredientRecord(name, name, None, None, {}) for name in names]
    return MergeResult(
        "mrpc", "nyu-mll/glue", {}, "glue", "accuracy", "learned", "", "", records, [], [], {}, 0, **fields
    )


def test_number_shows_four_decimals_nan_and_missing():
    scores = {"report": {"accuracy": 0.81234, "f1": math.nan}}
    assert number(scores, "report", "accuracy") == "0.8123"
    assert number(scores, "report", "f1") == "n/a"
    assert number(scores, "report", "score") == "–" and number(scores, "selection", "accuracy") == "–"


def test_table_is_markdown_and_escapes_pipes():
    assert table(["a", "b"], [["1", "x|y"]]).splitlines() == ["| a | b |", "| --- | --- |", "| 1 | x\\|y |"]


def test_subsets_section_ranks_the_subsets():
    result = result_of(["a", "b"], top_subsets=[SubsetScore([0, 1], 0.9), SubsetScore([1], 0.8)])
    text = subsets_section(result)
    assert "all 3 non-empty subsets" in text and "best 2" in text
    assert "| 1 | #0 a, #1 b | 0.9000 |" in text and "| 2 | #1 b | 0.8000 |" in text


def test_coefficients_section_has_a_row_per_group_and_a_column_per_ingredient():
    result = result_of(["a", "b"], coefficients={"bert.embeddings": [0.25, 0.75], "classifier": [0.6, 0.4]})
    text = coefficients_section(result)
    assert "## Learned coefficients" in text and "each of 2 tensor groups" in text
    assert "| Tensor group | #0 a | #1 b |" in text
    assert "| bert.embeddings | 0.2500 | 0.7500 |" in text and "| classifier | 0.6000 | 0.4000 |" in text
    assert "uniform soup, one per ingredient." in coefficients_section(
        result_of(["a"], coefficients={"all": [1.0]})
    )
