"""Tests of hfsoup.eval.resolve: a registered task, or the task a dataset's columns and labels define."""

from __future__ import annotations

import datasets
import pytest
from dataset_files import NLI_LABELS, nli_jsonl, ratings_csv, sentences_jsonl, sentiment_parquet

from hfsoup.errors import DatasetError, InvalidSettingError, UnknownNameError
from hfsoup.eval import MeanOf, Task, get_task, load_split, register_task, resolve_task
from hfsoup.eval import tasks as task_registry


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_class_label_gives_its_names_and_accuracy(tmp_path):
    task = resolve_task(dataset=str(sentiment_parquet(tmp_path)), text_columns=["text"])
    assert (task.name, task.text_columns, task.label_column) == ("reviews", ("text",), "label")
    assert task.label_names == ("neg", "pos") and task.metric_name == "accuracy"
    assert task.leaderboard_score({"accuracy": 0.75}) == 0.75


def test_string_labels_are_sorted_and_become_ids_in_that_order(tmp_path):
    path = nli_jsonl(tmp_path)
    task = resolve_task(dataset=str(path), text_columns=["premise", "hypothesis"])
    assert task.label_names == tuple(sorted(NLI_LABELS)) == ("contradiction", "entailment", "neutral")
    rows = load_split(task, "validation", dataset=str(path))
    assert [task.label_names[i] for i in rows["label"][:3]] == list(NLI_LABELS)  # the file's own strings


def test_a_float_label_is_a_regression_scored_by_both_correlations(tmp_path):
    task = resolve_task(dataset=str(ratings_csv(tmp_path)), text_columns=["sentence"], label_column="score")
    assert task.is_regression and task.num_labels == 1 and task.metric_name == "pearson_spearman"
    assert task.selection_key == MeanOf(("pearson", "spearmanr"))


def test_integer_ids_without_names_are_generic_labels(tmp_path):
    path = tmp_path / "ids.csv"
    path.write_text("text,label\na,0\nb,2\nc,1\nd,-1\n")
    task = resolve_task(dataset=str(path), text_columns=["text"])
    assert task.label_names == ("LABEL_0", "LABEL_1", "LABEL_2")


def test_labels_come_from_every_split_scored_read_whole(tmp_path):
    folder = tmp_path / "hub-like"
    folder.mkdir()
    (folder / "train.csv").write_text("text,label\na,bad\nb,good\n")
    (folder / "test.csv").write_text("text,label\nc,good\nd,neutral\n")
    task = resolve_task(dataset=str(folder), text_columns=["text"], splits=["train[:1]", "test[:1]"])
    assert task.label_names == ("bad", "good", "neutral") and task.name == "hub-like"


def test_a_dataset_without_validation_needs_explicit_splits(tmp_path):
    folder = tmp_path / "hub-like"
    folder.mkdir()
    (folder / "train.csv").write_text("text,label\na,bad\nb,good\n")
    with pytest.raises(DatasetError) as error:
        resolve_task(dataset=str(folder), text_columns=["text"], splits=["selection", "report"])
    message = one_line(error)
    assert "no 'validation' split to cut the selection and report halves from (its splits: train)" in message
    assert "--selection-split 'train[80%:90%]' --report-split 'train[90%:]'" in message
    assert "add a validation.csv (or .jsonl, .parquet) to the folder" in message


def test_a_registered_task_is_found_and_its_columns_can_be_renamed(monkeypatch):
    monkeypatch.setattr(task_registry, "TASKS", dict(task_registry.TASKS))
    imdb = Task(name="imdb", text_columns=("text",), label_names=("neg", "pos"), metric_name="accuracy")
    assert register_task(imdb) is imdb and get_task("IMDB") is imdb and resolve_task("imdb") == imdb
    renamed = resolve_task("sst2", text_columns=["review"], label_column="stars")
    assert renamed.columns == ("review", "stars") and renamed.label_names == get_task("sst2").label_names
    with pytest.raises(UnknownNameError):
        resolve_task("imdbb")


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, ["--task", "--dataset", "--text-column"]),
        ({"dataset": "reviews.csv"}, ["reviews.csv", "--text-column"]),
        ({"dataset": "reviews.csv", "text_columns": ["a", "b", "c"]}, ["one or two", "['a', 'b', 'c']"]),
    ],
)
def test_what_to_score_on_must_be_named(kwargs, expected):
    with pytest.raises(InvalidSettingError) as error:
        resolve_task(**kwargs)
    message = one_line(error)
    for part in expected:
        assert part in message, message


def test_a_missing_column_lists_the_columns_there_are(tmp_path):
    with pytest.raises(DatasetError) as error:
        resolve_task(dataset=str(sentiment_parquet(tmp_path)), text_columns=["review"])
    message = one_line(error)
    assert "['review']" in message and "text, label" in message and "--text-column" in message


def test_a_single_class_or_an_unusable_label_column_is_refused(tmp_path):
    path = nli_jsonl(tmp_path, labels=("entailment",))
    with pytest.raises(DatasetError) as error:
        resolve_task(dataset=str(path), text_columns=["premise"])
    assert "1 class(es) ['entailment']" in one_line(error)
    listed = tmp_path / "listed.parquet"
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.Sequence(datasets.Value("int32"))}
    )
    datasets.Dataset.from_dict({"text": ["a"], "label": [[1, 2]]}, features=features).to_parquet(listed)
    with pytest.raises(DatasetError) as error:
        resolve_task(dataset=str(listed), text_columns=["text"])
    assert "--label-column" in one_line(error)


def test_a_label_outside_the_task_labels_is_refused_when_loading(tmp_path):
    task = resolve_task(dataset=str(nli_jsonl(tmp_path)), text_columns=["premise", "hypothesis"])
    (tmp_path / "other").mkdir()
    other = nli_jsonl(tmp_path / "other", labels=("entailment", "unrelated"))
    with pytest.raises(DatasetError) as error:
        load_split(task, "validation", dataset=str(other))
    assert "['unrelated']" in one_line(error)


def test_a_label_column_of_mixed_json_types_is_named_not_its_arrow_type(tmp_path):
    path = sentences_jsonl(tmp_path, [1, "yes", 0, "no"])
    with pytest.raises(DatasetError) as error:
        resolve_task(dataset=str(path), text_columns=["sentence"])  # was "holds Json(decode=True)"
    message = one_line(error)
    assert message.startswith(
        f"column 'label' of '{path}' mixes integers (1, row 0) and strings ('yes', row 1)"
    )
    assert "Json" not in message


def test_an_empty_file_or_a_header_row_only_is_one_line(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DatasetError) as error:
        resolve_task(dataset=str(empty), text_columns=["text"])  # was an internal StopIteration
    assert f"'{empty}' is empty" in one_line(error) and "(text, label)" in str(error.value)
    header = tmp_path / "header.csv"
    header.write_text("text,label\n")
    with pytest.raises(DatasetError) as error:
        resolve_task(dataset=str(header), text_columns=["text"])
    assert f"'{header}' holds no rows, only the columns text, label" in one_line(error)


def test_a_regression_with_empty_scores_is_refused_not_scored_as_nan(tmp_path):
    path = ratings_csv(tmp_path, unrated=(5, 6))
    with pytest.raises(DatasetError) as error:
        resolve_task(dataset=str(path), text_columns=["sentence"], label_column="score")
    assert "has 2 of 48 rows without a label in column 'score'" in one_line(error)


def test_integer_labels_with_an_empty_cell_are_refused_not_taken_for_a_regression(tmp_path):
    path = tmp_path / "ids.csv"
    path.write_text("text,label\na,0\nb,\nc,1\n")  # pandas reads the column as floats: 0.0, NaN, 1.0
    with pytest.raises(DatasetError) as error:
        resolve_task(dataset=str(path), text_columns=["text"])
    assert f"'{path}' has 1 of 3 rows without a label in column 'label'" in one_line(error)
