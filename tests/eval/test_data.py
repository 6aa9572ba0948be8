"""Tests of hfsoup.eval.data: the held-out halves and loading labelled splits from folders and data files."""

from __future__ import annotations

import logging
from pathlib import Path

import datasets
import pytest
import yaml
from cli_helpers import user_error
from dataset_files import ratings_csv, sentences_jsonl

from hfsoup.errors import DatasetError
from hfsoup.eval import Task, get_task, halves, load_split


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


# --- data a user got wrong: one line naming the file and what is wrong ----------------------------------------


def test_a_label_column_of_mixed_json_types_names_each_type_and_a_row(tmp_path):
    path = sentences_jsonl(tmp_path, ["yes", 1, "no", 0])
    with pytest.raises(DatasetError) as error:
        load_split(get_task("sst2"), "validation", dataset=str(path))  # was a TypeError: an internal error
    message = one_line(error)
    assert f"column 'label' of '{path}' mixes strings ('yes', row 0) and integers (1, row 1)" in message
    assert "integers (class ids)" in message


@pytest.mark.parametrize(
    ("name", "content"),
    [("empty.jsonl", b""), ("blank.jsonl", b"\n\n"), ("empty.csv", b""), ("empty.parquet", b"")],
)
def test_an_empty_data_file_is_named_with_the_columns_it_needs(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DatasetError) as error:
        load_split(get_task("mrpc"), "selection", dataset=str(path))  # an empty .jsonl was a StopIteration
    assert f"'{path}' is empty" in one_line(error) and "(sentence1, sentence2, label)" in str(error.value)


def test_a_data_file_of_a_header_row_only_holds_no_rows(tmp_path):
    csv, tsv = tmp_path / "header.csv", tmp_path / "header.tsv"
    csv.write_text("sentence1,sentence2,label\n")
    tsv.write_text("sentence1\tsentence2\tlabel\n")
    datasets.Dataset.from_dict({"sentence": [], "label": []}).to_parquet(tmp_path / "header.parquet")
    for path in (csv, tsv):
        with pytest.raises(DatasetError) as error:
            load_split(get_task("mrpc"), "validation", dataset=str(path))
        message = one_line(error)
        assert message.startswith(f"'{path}' holds no rows, only the columns sentence1, sentence2, label")
    with pytest.raises(DatasetError) as error:
        load_split(get_task("sst2"), "validation", dataset=str(tmp_path / "header.parquet"))
    assert "header.parquet' is empty" in one_line(error)


def test_an_empty_split_of_a_folder_holds_no_rows(tmp_path):
    (tmp_path / "train.csv").write_text("sentence,label\na,0\nb,1\n")
    (tmp_path / "validation.csv").write_text("sentence,label\n")
    with pytest.raises(DatasetError) as error:
        load_split(get_task("sst2"), "report", dataset=str(tmp_path))
    assert f"split 'validation' of '{tmp_path}' holds no rows" in one_line(error)
    assert "score on another split" in str(error.value)


def test_a_folder_without_validation_says_how_to_name_splits(tmp_path):
    (tmp_path / "train.csv").write_text("sentence,label\na,0\nb,1\n")
    with pytest.raises(DatasetError) as error:
        load_split(get_task("sst2"), "validation[:10]", dataset=str(tmp_path))
    message = one_line(error)
    assert message.startswith(f"dataset '{tmp_path}' has no 'validation' split (its splits: train): ")
    assert "add a validation.csv (or .jsonl, .parquet) to the folder" in message
    assert "--selection-split 'train[80%:90%]' --report-split 'train[90%:]'" in message
    with pytest.raises(DatasetError) as error:
        load_split(get_task("sst2"), "train[:1]+test", dataset=str(tmp_path))
    assert "no 'test' split" in one_line(error) and "finetune" not in str(error.value)


def test_a_regression_file_with_empty_scores_is_refused_with_the_count(tmp_path):
    path = ratings_csv(tmp_path, unrated=(3, 10, 17, 30))
    task = Task(name="ratings", text_columns=("sentence",), label_column="score", label_names=())
    with pytest.raises(DatasetError) as error:
        load_split(task, "selection", dataset=str(path))  # was loaded, then scored as NaN
    message = one_line(error)
    assert message.startswith(f"'{path}' has 4 of 48 rows without a label in column 'score'")
    assert "rows 3, 10, 17, ..." in message
    with pytest.raises(DatasetError) as error:
        load_split(task, "validation[:12]", dataset=str(path))
    assert f"split 'validation[:12]' of '{path}' has 2 of 12 rows" in one_line(error)


def test_missing_class_labels_are_refused_with_the_count(tmp_path):
    csv = tmp_path / "validation.csv"
    csv.write_text("sentence1,sentence2,label\na,b,0\nc,d,\ne,f,1\n")
    with pytest.raises(DatasetError) as error:
        load_split(get_task("mrpc"), "validation", dataset=str(csv))  # was "label ids [nan] outside 0..1"
    assert "has 1 of 3 rows without a label in column 'label' (empty, null or NaN; rows 1," in one_line(error)
    jsonl = sentences_jsonl(tmp_path, ["pos", None, "neg", None])
    with pytest.raises(DatasetError) as error:
        load_split(get_task("sst2"), "validation", dataset=str(jsonl))
    assert "has 2 of 4 rows without a label" in one_line(error)


MIXED = (
    '{"sentence1": "a", "sentence2": "b", "label": 1}\n{"sentence1": "c", "sentence2": "d", "label": "yes"}\n'
)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        # Before: exit 3 with an internal StopIteration, exit 3 with an internal TypeError, a line on split syntax.
        ("empty.jsonl", "", "is empty"),
        ("mixed.jsonl", MIXED, "mixes integers (1, row 0) and strings ('yes', row 1)"),
        ("header.csv", "sentence1,sentence2,label\n", "holds no rows"),
    ],
)
def test_cli_merge_on_a_broken_data_file_is_a_user_error(
    tmp_path, capsys, tiny_ingredient_dirs, name, content, expected
):
    path, out = tmp_path / name, tmp_path / "soup"
    path.write_text(content)
    args = ["--task", "mrpc", "--dataset", path, "--output-dir", out]
    line = user_error(capsys, "merge", *tiny_ingredient_dirs[:2], *args)
    assert str(path) in line and expected in line
    assert not out.exists()


def test_cli_sweep_on_a_folder_without_validation_says_how_to_name_splits(tmp_path, capsys, tiny_base_dir):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.csv").write_text(
        "sentence,label\n" + "".join(f"sentence {i},{i % 2}\n" for i in range(40))
    )
    recipe = {
        "task": "sst2",
        "base": str(tiny_base_dir),
        "dataset": str(folder),
        "output_dir": str(tmp_path / "runs"),
        "train_split": "train[:80%]",
        "max_steps": 1,
        "runs": [{"seed": 1}],
        "soup": {"method": "uniform", "selection_split": "train[80%:90%]", "report_split": "train[90%:]"},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(recipe))
    line = user_error(
        capsys, "finetune", path
    )  # was "cannot read split 'validation' ... use e.g. 'validation'"
    assert "has no 'validation' split (its splits: train): add a validation.csv" in line
    assert "`hfsoup finetune` scores its runs on it" in line
    assert not (tmp_path / "runs").exists()


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


def test_rows_without_a_text_are_refused_in_one_line_naming_the_column(
    tmp_path, tiny_ingredient_dirs, capsys
):
    from cli_helpers import user_error

    path = tmp_path / "pairs.csv"
    rows = [f"first {i},second {i},{i % 2}" for i in range(20)]
    rows[4] = ",second 4,0"  # an empty first sentence
    path.write_text("sentence1,sentence2,label\n" + "\n".join(rows) + "\n")
    line = user_error(
        capsys, "merge", *map(str, tiny_ingredient_dirs[:2]), "--task", "mrpc", "--dataset", path
    )
    assert "has 1 of 20 rows without a text in column 'sentence1'" in line and "rows 4," in line
