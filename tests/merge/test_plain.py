"""Plain merges (no task, no dataset): checked, averaged, written with an unevaluated card, and replayable."""

from __future__ import annotations

import pytest
import torch
import yaml
from cli_helpers import copy_folders, run, user_error
from huggingface_hub import ModelCard
from safetensors.torch import load_file, save_file
from tiny_models import save_model_folder, tiny_bert, tiny_tokenizer
from transformers import AutoConfig

from hfsoup.merge.plain import plain_soup
from hfsoup.recipe import MergeRecipe
from hfsoup.soup import load_ingredients


def weights_of(folders) -> list[dict[str, torch.Tensor]]:
    return [load_file(f"{folder}/model.safetensors") for folder in folders]


def test_uniform_plain_merge_is_the_average_with_an_unevaluated_card(tmp_path, capsys, tiny_ingredient_dirs):
    out = tmp_path / "soup"
    code, printed, err = run(
        capsys, "merge", *tiny_ingredient_dirs, "--method", "uniform", "--output-dir", out
    )
    assert code == 0, err
    assert "unevaluated" in printed and printed.count("0.3333") == 3
    saved, ingredients = load_file(out / "model.safetensors"), weights_of(tiny_ingredient_dirs)
    for name, value in saved.items():
        expected = torch.stack([weights[name].double() for weights in ingredients]).mean(0)
        torch.testing.assert_close(value.double(), expected, rtol=1e-6, atol=1e-6)
    card = ModelCard.load(out / "README.md")
    assert "**This soup is unevaluated**" in card.text and "## Results" not in card.text
    assert card.data.eval_results is None and "unevaluated" in card.data.tags
    soup = yaml.safe_load((out / "soup.yaml").read_text())
    assert soup["task"] is None and soup["results"] == {} and soup["splits"] == {}
    assert [record["weight"] for record in soup["ingredients"]] == pytest.approx([1 / 3] * 3)


def test_weighted_plain_merge_replays_from_its_soup_yaml(tmp_path, capsys, tiny_ingredient_dirs):
    first, second = tmp_path / "first", tmp_path / "second"
    args = ["merge", *tiny_ingredient_dirs[:2], "--method", "weighted", "--weights", "3", "1"]
    assert run(capsys, *args, "--output-dir", first)[0] == 0
    code, _, err = run(capsys, "merge", "--recipe", first / "soup.yaml", "--output-dir", second)
    assert code == 0, err
    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert all(torch.equal(a[name], b[name]) for name in a)
    ingredients = weights_of(tiny_ingredient_dirs[:2])
    expected = 0.75 * ingredients[0]["classifier.bias"] + 0.25 * ingredients[1]["classifier.bias"]
    torch.testing.assert_close(a["classifier.bias"], expected)


@pytest.mark.parametrize("method", ["greedy", "exhaustive", "learned"])
def test_a_method_that_chooses_by_score_needs_a_task_or_dataset(
    tmp_path, capsys, tiny_ingredient_dirs, method
):
    out = tmp_path / "soup"
    line = user_error(capsys, "merge", *tiny_ingredient_dirs, "--method", method, "--output-dir", out)
    assert f"method {method!r} needs data to score on" in line and "--task" in line and "--dataset" in line
    assert not out.exists()


def test_columns_without_a_dataset_are_refused(capsys, tiny_ingredient_dirs):
    line = user_error(capsys, "merge", *tiny_ingredient_dirs, "--method", "uniform", "--text-column", "text")
    assert "add --dataset" in line


def test_labels_align_to_the_first_ingredients_order(tmp_path, capsys, tiny_ingredient_dirs):
    folders = copy_folders(tiny_ingredient_dirs[:2], tmp_path / "named")
    for folder, labels in zip(folders, (["neg", "pos"], ["pos", "neg"]), strict=True):
        config = AutoConfig.from_pretrained(folder)
        config.id2label, config.label2id = dict(enumerate(labels)), {n: i for i, n in enumerate(labels)}
        config.save_pretrained(folder)
    # The second was trained with the other label order: its classifier rows are stored the other way round.
    swapped = load_file(folders[1] / "model.safetensors")
    for name in ("classifier.weight", "classifier.bias"):
        swapped[name] = swapped[name][[1, 0]].contiguous()
    save_file(swapped, folders[1] / "model.safetensors", metadata={"format": "pt"})
    out = tmp_path / "soup"
    code, _, err = run(capsys, "merge", *folders, "--method", "uniform", "--output-dir", out)
    assert code == 0, err
    assert AutoConfig.from_pretrained(out).id2label == {0: "neg", 1: "pos"}
    first, second = weights_of(folders)
    expected = (first["classifier.weight"] + second["classifier.weight"][[1, 0]]) / 2
    torch.testing.assert_close(load_file(out / "model.safetensors")["classifier.weight"], expected)
    assert "0 = neg, 1 = pos" in (out / "README.md").read_text()


def test_incompatible_ingredients_are_refused_as_in_a_scored_merge(tmp_path, capsys, tiny_ingredient_dirs):
    folder = tmp_path / "three"
    save_model_folder(tiny_bert(seed=0, num_labels=3), tiny_tokenizer(folder), folder)
    line = user_error(capsys, "merge", tiny_ingredient_dirs[0], folder, "--method", "uniform")
    assert "incompatible" in line and "num_labels differs: 2" in line


def test_plain_soup_records_weights_and_no_score(tiny_ingredient_dirs):
    recipe = MergeRecipe(models=[str(f) for f in tiny_ingredient_dirs[:2]], method="uniform")
    ingredients = load_ingredients(recipe.models)
    model = tiny_bert(seed=9)
    souped = plain_soup(recipe, ingredients, model)
    assert souped.candidates == {} and souped.best is None
    assert [record.weight for record in souped.records] == [0.5, 0.5]
    assert all(record.scores == {} and record.content_hash for record in souped.records)
    first, second = weights_of(tiny_ingredient_dirs[:2])
    mean = (first["classifier.bias"] + second["classifier.bias"]) / 2
    torch.testing.assert_close(model.classifier.bias.detach(), mean)
