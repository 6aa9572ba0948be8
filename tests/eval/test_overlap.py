"""Tests of hfsoup.eval.overlap: the rows a split reads, resolved as `datasets` resolves them."""

from __future__ import annotations

from dataset_files import sentiment_parquet

from hfsoup.eval import get_task
from hfsoup.eval.overlap import shared_rows, split_rows


def test_the_default_halves_are_disjoint_and_cover_the_validation_split(glue_hub_dir):
    task = get_task("mrpc")
    selection = split_rows(task, "selection", dataset=str(glue_hub_dir))
    report = split_rows(task, "report", dataset=str(glue_hub_dir))
    assert shared_rows(selection, report) == 0
    assert selection["validation"] | report["validation"] == set(range(408))


def test_a_first_half_slice_shares_rows_with_the_default_report_half(glue_hub_dir):
    task = get_task("mrpc")
    first_half = split_rows(task, "validation[:50%]", dataset=str(glue_hub_dir))
    assert first_half == {"validation": set(range(204))}
    report = split_rows(task, "report", dataset=str(glue_hub_dir))
    assert shared_rows(first_half, report) == len(report["validation"] & set(range(204))) > 0


def test_slices_of_two_splits_and_a_sum_resolve_to_their_rows(glue_hub_dir):
    rows = split_rows(get_task("mrpc"), "validation[-3:]+train[:2]", dataset=str(glue_hub_dir))
    assert rows == {"validation": {405, 406, 407}, "train": {0, 1}}


def test_a_data_file_is_one_table_whatever_its_split_is_called(tmp_path):
    task = get_task("sst2")
    path = str(sentiment_parquet(tmp_path, rows=40))
    train = split_rows(task, "train", dataset=path)
    validation = split_rows(task, "validation[:10]", dataset=path)
    assert train == {"file": set(range(40))} and shared_rows(train, validation) == 10
