"""Tests of hfsoup.merge.checks: the task against the models, the shard size, the local inputs."""

from __future__ import annotations

import pytest

from hfsoup.errors import InvalidSettingError
from hfsoup.eval import get_task
from hfsoup.merge.checks import checked_shard_size, fit_task, local_inputs
from hfsoup.recipe import MergeRecipe
from hfsoup.soup import load_ingredient


def test_a_task_with_another_number_of_labels_than_the_models_is_one_line(tiny_ingredient_dirs):
    first = load_ingredient(str(tiny_ingredient_dirs[0]))  # 2 logits
    with pytest.raises(InvalidSettingError) as caught:
        fit_task(get_task("mnli"), first, None)
    message = str(caught.value)
    assert "2 logit(s)" in message and "3 classes" in message and "--task" in message and "\n" not in message
    assert fit_task(get_task("mrpc"), first, None).name == "mrpc"


@pytest.mark.parametrize("size", ["5GB", 1000])
def test_a_shard_size_save_pretrained_reads_is_kept(size):
    assert checked_shard_size(size) == size


@pytest.mark.parametrize("size", ["five", 0])
def test_a_shard_size_save_pretrained_would_not_read_is_refused(size):
    with pytest.raises(InvalidSettingError, match="--max-shard-size"):
        checked_shard_size(size)


def test_local_inputs_are_the_recipe_s_existing_paths(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "data.csv").write_text("text,label\n")
    recipe = MergeRecipe(
        models=[str(tmp_path / "model"), "user/hub-model"],
        dataset=str(tmp_path / "data.csv"),
        text_columns=["text"],
    )
    assert local_inputs(recipe) == [tmp_path / "model", tmp_path / "data.csv"]


def test_a_report_split_that_shares_rows_with_the_selection_split_is_refused_or_said(
    tiny_ingredient_dirs, glue_hub_dir, tmp_path, capsys
):
    from cli_helpers import run, user_error

    args = [*map(str, tiny_ingredient_dirs[:2]), "--task", "mrpc", "--dataset", str(glue_hub_dir)]
    args += [
        "--selection-split",
        "validation[:50%]",
        "--method",
        "uniform",
    ]  # the default report half overlaps
    line = user_error(capsys, "merge", *args)
    assert "the report split 'report' shares" in line and "of its 204 rows with the selection split" in line
    assert "--allow-overlapping-splits" in line

    code, out, err = run(
        capsys, "merge", *args, "--allow-overlapping-splits", "--output-dir", tmp_path / "soup"
    )
    assert code == 0, err
    assert "Not held out:" in out and "rows of the report split 'report' are selection rows too" in out
    card = (tmp_path / "soup" / "README.md").read_text()
    assert "never chosen" not in card and "are **not** held out" in card
    import yaml

    shared = yaml.safe_load((tmp_path / "soup" / "soup.yaml").read_text())["shared_rows"]
    assert list(shared) == ["report"] and 0 < shared["report"] < 204


def test_disjoint_splits_keep_the_held_out_sentence(tiny_ingredient_dirs, glue_hub_dir, tmp_path, capsys):
    from cli_helpers import quick_mrpc, run

    code, _out, err = run(
        capsys, "merge", *quick_mrpc(tiny_ingredient_dirs[:2], glue_hub_dir), "--output-dir", tmp_path / "s"
    )
    assert code == 0, err
    assert "on which it was never chosen" in (tmp_path / "s" / "README.md").read_text()
