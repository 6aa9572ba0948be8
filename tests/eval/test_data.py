"""Tests of hfsoup.eval.data: the held-out halves and loading labelled splits from folders and data files."""

from __future__ import annotations

import logging
from pathlib import Path

import datasets
import pytest
from cli_helpers import user_error

from hfsoup.errors import DatasetError
from hfsoup.eval import get_task, halves, load_split


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# --- held-out halves -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_rows", [1, 2, 408, 1043])
def test_halves_are_deterministic_disjoint_and_cover(num_rows):
    first, again = halves(num_rows, seed=0), halves(num_rows, seed=0)
    assert first == again
    selection, report = set(first["selection"]), set(first["report"])
    assert not selection & report
    assert selection | report == set(range(num_rows))
    assert len(first["selection"]) - len(first["report"]) in (0, 1)
    assert first["selection"] == sorted(first["selection"])


def test_halves_depend_on_the_seed():
    assert halves(408, seed=0) != halves(408, seed=1)
    assert halves(408, seed=0)["selection"] != list(range(204))  # shuffled, not the first half


# --- loading splits (real data, laid out like nyu-mll/glue) ----------------------------------------------


@pytest.mark.parametrize("name,rows", [("mrpc", 408), ("stsb", 1500), ("cola", 1043)])
def test_load_split_halves_of_real_validation(glue_hub_dir, name, rows):
    task = get_task(name)
    selection = load_split(task, "selection", dataset=str(glue_hub_dir))
    report = load_split(task, "report", dataset=str(glue_hub_dir))
    assert set(task.columns) <= set(selection.column_names)
    assert selection.num_rows + report.num_rows == rows
    assert not set(selection["idx"][:]) & set(report["idx"][:])
    again = load_split(task, "selection", dataset=str(glue_hub_dir))
    assert again["idx"][:] == selection["idx"][:]
    if task.is_regression:
        assert selection.features["label"].dtype == "float32"
    else:
        assert tuple(selection.features["label"].names) == task.label_names


def test_load_split_takes_datasets_split_syntax(glue_hub_dir):
    task = get_task("mrpc")
    assert load_split(task, "validation[:50%]", dataset=str(glue_hub_dir)).num_rows == 204
    tail = load_split(task, "train[-500:]", dataset=str(glue_hub_dir))
    assert tail.num_rows == 500


def test_default_dataset_is_the_hub(monkeypatch):
    """Offline (as in every test), the default `nyu-mll/glue` fails with a one-line DatasetError."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetError) as error:
        load_split(get_task("mrpc"), "validation")
    assert "nyu-mll/glue" in one_line(error)


def test_unknown_split_is_one_line_error(glue_hub_dir):
    with pytest.raises(DatasetError) as error:
        load_split(get_task("mrpc"), "test", dataset=str(glue_hub_dir))
    message = one_line(error)
    assert "'test'" in message and "validation" in message


def test_missing_config_names_the_configs(glue_hub_dir):
    with pytest.raises(DatasetError) as error:
        load_split(get_task("qqp"), "validation", dataset=str(glue_hub_dir))
    assert "qqp" in one_line(error) and "mrpc" in str(error.value)


def test_missing_columns_name_expected_and_found(tmp_path):
    path = tmp_path / "validation.csv"
    path.write_text("text,label\nhello,0\nworld,1\n")
    with pytest.raises(DatasetError) as error:
        load_split(get_task("mrpc"), "validation", dataset=str(path))
    message = one_line(error)
    assert "['sentence1', 'sentence2', 'label']" in message and "['text', 'label']" in message


def test_data_file_is_the_named_split_and_unlabelled_rows_are_dropped(tmp_path, caplog):
    path = tmp_path / "mine.tsv"
    path.write_text("sentence\tlabel\ngood\t1\nbad\t0\nhidden\t-1\nfine\t1\n")
    with caplog.at_level(logging.WARNING, logger="hfsoup.eval.data"):
        rows = load_split(get_task("sst2"), "validation", dataset=str(path))
    assert rows["sentence"][:] == ["good", "bad", "fine"]
    assert "Dropped 1 unlabelled" in caplog.text
    halves_ = [
        load_split(get_task("sst2"), half, dataset=str(path)).num_rows for half in ("selection", "report")
    ]
    assert halves_ == [2, 1]


def test_unsupported_data_file_is_refused(tmp_path):
    path = tmp_path / "validation.xlsx"
    path.write_bytes(b"")
    with pytest.raises(DatasetError) as error:
        load_split(get_task("sst2"), "validation", dataset=str(path))
    assert ".csv" in one_line(error) and "validation.xlsx" in str(error.value)


def test_test_split_without_labels_is_refused(tmp_path):
    path = tmp_path / "test.csv"
    path.write_text("sentence,label\na,-1\nb,-1\n")
    with pytest.raises(DatasetError) as error:
        load_split(get_task("cola"), "test", dataset=str(path))
    assert "no labelled rows" in one_line(error)


def test_plain_folder_without_configs(tmp_path):
    (tmp_path / "validation.csv").write_text("sentence,label\na,0\nb,1\n")
    assert load_split(get_task("sst2"), "validation", dataset=str(tmp_path)).num_rows == 2


def test_label_names_in_another_order_are_refused(tmp_path):
    features = datasets.Features(
        {"sentence1": datasets.Value("string"), "sentence2": datasets.Value("string"),
         "label": datasets.ClassLabel(names=["entailment", "not_entailment"])}
    )  # fmt: skip
    rows = datasets.Dataset.from_dict(
        {"sentence1": ["a"], "sentence2": ["b"], "label": [0]}, features=features
    )
    rows.to_parquet(tmp_path / "validation.parquet")
    with pytest.raises(DatasetError) as error:
        load_split(get_task("wnli"), "validation", dataset=str(tmp_path / "validation.parquet"))
    assert "['not_entailment', 'entailment']" in one_line(error)


def test_label_ids_out_of_range_are_refused(tmp_path):
    path = tmp_path / "validation.csv"
    path.write_text("sentence1,sentence2,label\na,b,0\nc,d,3\n")
    with pytest.raises(DatasetError) as error:
        load_split(get_task("rte"), "validation", dataset=str(path))
    assert "[3]" in one_line(error)


# --- the original GLUE files (not the Hub layout): one clear line ---------------------------------------------

RAW_GLUE = Path(__file__).resolve().parents[3] / "shared" / "data" / "glue"


@pytest.fixture(scope="module")
def raw_glue() -> Path:
    if not RAW_GLUE.is_dir():
        pytest.skip(f"the original GLUE files are not at {RAW_GLUE}")
    return RAW_GLUE


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mrpc", ["cannot parse", "Expected 5 fields", "sentence1, sentence2, label"]),
        ("stsb", ["cannot parse", "Expected 10 fields", "sentence1, sentence2, label"]),
        ("cola", ["lacks column(s) ['sentence', 'label']"]),
    ],
)
def test_original_glue_tsv_is_one_clear_line(raw_glue, name, expected):
    path = raw_glue / name / "validation.tsv"
    with pytest.raises(DatasetError) as error:
        load_split(get_task(name), "validation", dataset=str(path))
    message = one_line(error)
    assert str(path) in message
    for part in expected:
        assert part in message, message


def test_original_rte_tsv_names_its_labels_and_they_become_the_task_ids(raw_glue, glue_hub_dir):
    rows = load_split(get_task("rte"), "validation", dataset=str(raw_glue / "rte" / "validation.tsv"))
    hub = load_split(get_task("rte"), "validation", dataset=str(glue_hub_dir))
    assert rows.features["label"].names == ["entailment", "not_entailment"]
    assert rows["sentence1"][:50] == hub["sentence1"][:50] and rows["label"][:] == hub["label"][:]


def test_cli_with_the_original_mrpc_tsv_is_a_user_error(capsys, raw_glue, tiny_ingredient_dirs):
    path = raw_glue / "mrpc" / "validation.tsv"
    line = user_error(capsys, "merge", *tiny_ingredient_dirs[:2], "--task", "mrpc", "--dataset", path)
    assert str(path) in line and "cannot parse" in line
