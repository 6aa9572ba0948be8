"""Tests of hfsoup.soup.compat.labels: one label order for every ingredient, whoever is listed first."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_models import save_model_folder, tiny_bert, tiny_tokenizer

from hfsoup.soup import load_ingredients
from hfsoup.soup.compat import check_compatibility
from hfsoup.soup.compat.labels import is_generic

NLI = ["contradiction", "entailment", "neutral"]
CLASSIFIER = ("classifier.weight", "classifier.bias")


def _save(model, folder: Path, labels: list[str] | None) -> str:
    if labels is not None:
        model.config.id2label = dict(enumerate(labels))
        model.config.label2id = {label: index for index, label in enumerate(labels)}
    save_model_folder(model, tiny_tokenizer(folder), folder)
    return str(folder)


def _rows_by_label(model, labels: list[str]) -> dict[str, dict[str, torch.Tensor]]:
    """Each label's classifier row (weight and bias), as the model stores them in the order `labels`."""
    state = model.state_dict()
    return {label: {name: state[name][i].clone() for name in CLASSIFIER} for i, label in enumerate(labels)}


@pytest.fixture(scope="module")
def three(tmp_path_factory) -> tuple[list[str], dict[str, dict[str, dict[str, torch.Tensor]]]]:
    """[generic labels, NLI order, reversed NLI order], and the named ones' classifier rows by label name."""
    root = tmp_path_factory.mktemp("labels")
    generic = _save(tiny_bert(seed=1, num_labels=3), root / "generic", None)
    in_order = tiny_bert(seed=2, num_labels=3)
    reversed_model = tiny_bert(seed=3, num_labels=3)
    rows = {"in-order": _rows_by_label(in_order, NLI)}
    # The reversed model stores the rows of NLI[2], NLI[1], NLI[0], and says so in its id2label.
    with torch.no_grad():
        for name in CLASSIFIER:
            parameter = reversed_model.get_parameter(name)
            parameter.copy_(parameter[[2, 1, 0]])
    rows["reversed"] = _rows_by_label(reversed_model, NLI[::-1])
    folders = [
        generic,
        _save(in_order, root / "in-order", NLI),
        _save(reversed_model, root / "reversed", NLI[::-1]),
    ]
    return folders, rows


def _assert_rows_in(ingredient, order: list[str], rows: dict[str, dict[str, torch.Tensor]]) -> None:
    read = dict(ingredient.tensors(list(CLASSIFIER)))
    for index, label in enumerate(order):
        for name in CLASSIFIER:
            assert torch.equal(read[name][index], rows[label][name]), (ingredient.name, label, name)


def test_named_ingredients_are_aligned_even_when_the_first_has_generic_labels(three):
    # The old check stopped at a generic first ingredient: the two named ones were averaged row against row.
    folders, rows = three
    ingredients = load_ingredients(folders)

    report = check_compatibility(ingredients, check_values=False)

    assert report.ok(), report.to_text()
    assert report.label_names == NLI  # the first ingredient that names its labels
    assert report.label_orders == [None, None, [2, 1, 0]]
    assert any(
        warning.startswith("generic name no labels (LABEL_0, LABEL_1, ...)") and "in-order's order" in warning
        for warning in report.warnings
    ), report.warnings
    assert any("reversed orders its labels" in warning for warning in report.warnings), report.warnings
    aligned = report.aligned(ingredients)
    assert aligned[0] is ingredients[0] and aligned[1] is ingredients[1]
    _assert_rows_in(aligned[1], NLI, rows["in-order"])
    _assert_rows_in(aligned[2], NLI, rows["reversed"])
    _assert_rows_in(ingredients[2], NLI[::-1], rows["reversed"])  # the ingredient itself is unchanged


def test_the_tasks_label_order_wins_over_every_ingredients(three):
    folders, rows = three
    ingredients = load_ingredients(folders)
    task = ["entailment", "neutral", "contradiction"]  # the order of neither named ingredient

    report = check_compatibility(ingredients, check_values=False, task_labels=task)

    assert report.ok(), report.to_text()
    assert report.label_names == task
    assert report.label_orders == [None, [1, 2, 0], [1, 0, 2]]
    assert any("generic" in warning and "the task's order" in warning for warning in report.warnings)
    aligned = report.aligned(ingredients)
    _assert_rows_in(aligned[1], task, rows["in-order"])
    _assert_rows_in(aligned[2], task, rows["reversed"])


def test_task_labels_of_another_set_are_an_error_naming_both(three):
    folders, _ = three

    report = check_compatibility(load_ingredients(folders), check_values=False, task_labels=["a", "b", "c"])

    assert any(
        error.startswith("label sets differ: the task has ['a', 'b', 'c'], in-order has")
        for error in report.errors
    ), report.errors


def test_only_generic_labels_are_matched_by_index(three):
    folders, _ = three

    report = check_compatibility(load_ingredients([folders[0], folders[0]]), check_values=False)

    assert report.label_names == [] and report.label_orders == [None, None]
    assert any("every ingredient has generic labels" in note for note in report.notes)


@pytest.mark.parametrize(
    ("labels", "generic"),
    [
        (["LABEL_0", "LABEL_1"], True),
        (["label_0", "label_1"], True),
        (["LABEL_1", "LABEL_0"], False),
        (["a"], False),
    ],
)
def test_is_generic(labels, generic):
    assert is_generic(labels) is generic
