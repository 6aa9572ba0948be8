"""End-to-end runs of the `hfsoup` command on tiny BERTs and the shared GLUE data."""

from __future__ import annotations

import shutil

import pytest
import torch
import yaml
from cli_helpers import quick_mrpc, run, user_error
from safetensors.torch import load_file
from tiny_models import save_model_folder, tiny_bert, tiny_tokenizer
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hfsoup.eval import get_task, load_split
from hfsoup.eval.scoring import Scorer


@pytest.fixture
def merge_args(tiny_stsb_dirs, glue_hub_dir):
    return [
        *map(str, tiny_stsb_dirs),
        "--task",
        "stsb",
        "--dataset",
        str(glue_hub_dir),
        "--max-length",
        "64",
    ]


def test_greedy_merge_writes_a_loadable_soup_that_reproduces_its_score(
    tmp_path, capsys, merge_args, glue_hub_dir
):
    out_dir = tmp_path / "soup"
    code, out, err = run(capsys, "merge", *merge_args, "--output-dir", out_dir)
    assert code == 0, err
    assert "greedy soup" in out and "logit ensemble" in out and "uniform soup" in out
    for name in ("config.json", "model.safetensors", "tokenizer_config.json", "README.md", "soup.yaml"):
        assert (out_dir / name).is_file(), name
    soup = yaml.safe_load((out_dir / "soup.yaml").read_text())
    model = AutoModelForSequenceClassification.from_pretrained(out_dir)
    assert model.config.num_labels == 1
    assert len({round(r["scores"]["selection"]["score"], 6) for r in soup["ingredients"]}) > 1  # real choices
    task = get_task("stsb")
    scorer = Scorer(
        model,
        AutoTokenizer.from_pretrained(out_dir),
        task,
        load_split(task, "report", dataset=str(glue_hub_dir)),
        max_length=64,
    )
    assert scorer()[0]["score"] == pytest.approx(soup["results"]["soup"]["report"]["score"], abs=1e-5)
    assert not list(tmp_path.glob(".soup.partial-*"))


def test_uniform_merge_equals_the_hand_computed_average(tmp_path, capsys, merge_args, tiny_stsb_dirs):
    out_dir = tmp_path / "uniform"
    code, _, err = run(capsys, "merge", *merge_args, "--method", "uniform", "--output-dir", out_dir)
    assert code == 0, err
    saved = load_file(out_dir / "model.safetensors")
    ingredients = [load_file(f"{folder}/model.safetensors") for folder in tiny_stsb_dirs]
    for name, value in saved.items():
        expected = torch.stack([weights[name].double() for weights in ingredients]).mean(0)
        torch.testing.assert_close(value.double(), expected, rtol=1e-6, atol=1e-6)


def test_soup_yaml_replays_to_the_same_soup(tmp_path, capsys, merge_args):
    first, second = tmp_path / "first", tmp_path / "second"
    assert run(capsys, "merge", *merge_args, "--output-dir", first)[0] == 0
    code, _, err = run(capsys, "merge", "--recipe", first / "soup.yaml", "--output-dir", second)
    assert code == 0, err
    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert all(torch.equal(a[name], b[name]) for name in a)


@pytest.fixture
def three_labels_dir(tmp_path):
    folder = tmp_path / "three-labels"
    return save_model_folder(tiny_bert(seed=0, num_labels=3), tiny_tokenizer(folder), folder)


def test_user_errors_give_one_line_and_write_nothing(
    tmp_path, capsys, merge_args, tiny_ingredient_dirs, three_labels_dir
):
    out_dir = tmp_path / "out"
    assert "unknown task 'nope'" in user_error(
        capsys, "merge", *merge_args, "--task", "nope", "--output-dir", out_dir
    )
    assert "No model folder" in user_error(
        capsys, "merge", tmp_path / "missing", *merge_args, "--output-dir", out_dir
    )
    line = user_error(capsys, "merge", three_labels_dir, *merge_args, "--output-dir", out_dir)
    assert "incompatible" in line
    assert "--weights has 1 values for 4 models" in user_error(
        capsys, "merge", *merge_args, "--method", "weighted", "--weights", "1", "--output-dir", out_dir
    )
    assert not out_dir.exists()
    out_dir.mkdir()
    assert "--overwrite" in user_error(capsys, "merge", *merge_args, "--output-dir", out_dir)


def test_wrong_dataset_columns(tmp_path, capsys, tiny_ingredient_dirs):
    data = tmp_path / "data.csv"
    data.write_text("text,label\nhello,1\nworld,0\n")
    line = user_error(
        capsys,
        "merge",
        *tiny_ingredient_dirs,
        "--task",
        "mrpc",
        "--dataset",
        data,
        "--selection-split",
        "validation[:1]",
        "--report-split",
        "validation[1:]",
    )
    assert "lacks column" in line and "sentence1" in line


def test_pickle_only_ingredient_is_refused(tmp_path, capsys, tiny_ingredient_dirs, glue_hub_dir):
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_ingredient_dirs[0], pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    line = user_error(
        capsys, "merge", pickled, tiny_ingredient_dirs[1], "--task", "mrpc", "--dataset", glue_hub_dir
    )
    assert "pickle" in line


def test_inspect_prints_the_report_and_geometry(capsys, tiny_ingredient_dirs, tiny_base_dir):
    code, out, err = run(capsys, "inspect", *tiny_ingredient_dirs, "--base", tiny_base_dir, "--weights")
    assert code == 0, err
    assert "can be averaged" in out
    assert "angle" in out.lower()


def test_inspect_reads_only_metadata_by_default_and_says_so(capsys, tiny_ingredient_dirs, tiny_base_dir):
    code, out, err = run(capsys, "inspect", *tiny_ingredient_dirs, "--base", tiny_base_dir)
    assert code == 0, err
    assert (
        "the metadata shows no problem" in out and "can be averaged" not in out and "angle" not in out.lower()
    )
    assert "Only metadata was read" in out and "--weights" in out


def test_inspect_incompatible_exits_non_zero(capsys, tiny_ingredient_dirs, three_labels_dir):
    code, out, _err = run(capsys, "inspect", tiny_ingredient_dirs[0], three_labels_dir)
    assert code == 1
    assert "INCOMPATIBLE" in out and "num_labels" in out


def test_exhaustive_merge_prints_the_top_subsets(capsys, tiny_ingredient_dirs, glue_hub_dir):
    code, out, err = run(
        capsys, "merge", *quick_mrpc(tiny_ingredient_dirs[:2], glue_hub_dir), "--method", "exhaustive"
    )
    assert code == 0, err
    assert "exhaustive soup" in out and "Best of 3 subsets by selection score (the first is the soup):" in out
    assert sum(line.startswith(("  1. ", "  2. ", "  3. ")) for line in out.splitlines()) == 3


def test_exhaustive_merge_of_thirteen_models_is_refused_before_reading_any(tmp_path, capsys):
    out_dir = tmp_path / "out"
    models = [tmp_path / f"not-read-{i}" for i in range(13)]
    line = user_error(
        capsys, "merge", *models, "--task", "mrpc", "--method", "exhaustive", "--output-dir", out_dir
    )
    assert (
        "13 ingredients make 8191 subsets" in line and "limit of 12 ingredients" in line and "greedy" in line
    )
    assert not out_dir.exists()
