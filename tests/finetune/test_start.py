"""Tests of hfsoup.finetune.start: one shared head for every run, and a training split without padding."""

from __future__ import annotations

import shutil

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

from hfsoup.eval import get_task, load_split
from hfsoup.finetune.start import encoded_split, shared_start, start_record
from hfsoup.recipe import FinetuneRecipe


def test_the_shared_head_is_drawn_once_from_head_seed_and_reused(tmp_path, tiny_base_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_base_dir)
    stsb = get_task("stsb")  # 1 output: the tiny base's 2-label head is drawn anew
    first = shared_start(
        tiny_base_dir,
        tokenizer,
        FinetuneRecipe(base="b", head_seed=7, head_init="random"),
        stsb,
        tmp_path / "a",
    )
    again = shared_start(
        tiny_base_dir,
        tokenizer,
        FinetuneRecipe(base="b", head_seed=7, head_init="random"),
        stsb,
        tmp_path / "b",
    )
    other = shared_start(
        tiny_base_dir,
        tokenizer,
        FinetuneRecipe(base="b", head_seed=8, head_init="random"),
        stsb,
        tmp_path / "a",
    )
    heads = [load_file(folder / "model.safetensors")["classifier.weight"] for folder in (first, again, other)]
    assert heads[0].shape == (1, heads[0].shape[1])
    assert torch.equal(heads[0], heads[1]) and not torch.equal(heads[0], heads[2])
    mtime = (first / "model.safetensors").stat().st_mtime_ns
    assert (
        shared_start(
            tiny_base_dir,
            tokenizer,
            FinetuneRecipe(base="b", head_seed=7, head_init="random"),
            stsb,
            tmp_path / "a",
        )
        == first
    )
    assert (first / "model.safetensors").stat().st_mtime_ns == mtime


def test_the_training_split_is_tokenized_without_padding(tiny_base_dir, glue_hub_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_base_dir)
    recipe = FinetuneRecipe(base="b", train_split="train[:16]", max_length=512)
    rows = encoded_split(recipe, get_task("mrpc"), str(glue_hub_dir), 0, tokenizer)
    lengths = {len(ids) for ids in rows["input_ids"]}
    assert rows.num_rows == 16 and "labels" in rows.column_names and max(lengths) <= 512 and len(lengths) > 1


def probed(tiny_base_dir, glue_hub_dir, work_dir, task="mrpc", **settings):
    tokenizer = AutoTokenizer.from_pretrained(tiny_base_dir)
    recipe = FinetuneRecipe(base="b", train_split="train[:200]", max_length=32, **settings)
    task = get_task(task)
    validation = load_split(task, "validation[:40]", dataset=str(glue_hub_dir))
    return shared_start(
        tiny_base_dir, tokenizer, recipe, task, work_dir, dataset=str(glue_hub_dir), validation=validation
    )


def test_the_default_start_is_a_linear_probe_recorded_with_its_scores(tmp_path, tiny_base_dir, glue_hub_dir):
    start = probed(tiny_base_dir, glue_hub_dir, tmp_path)
    record = start_record(start)
    assert record["head_init"] == "linear_probe" and record["projection"] == "classifier"
    assert record["train_rows"] == 200 and 0 <= record["train"]["score"] <= 1
    assert 0 <= record["validation"]["score"] <= 1
    assert "linear-probed head" in (start / "README.md").read_text()
    drawn = load_file(shared_start_random(tiny_base_dir, tmp_path / "random") / "model.safetensors")
    fitted = load_file(start / "model.safetensors")
    assert not torch.equal(drawn["classifier.weight"], fitted["classifier.weight"])  # the head was fitted
    body = [name for name in fitted if not name.startswith("classifier.")]
    assert all(torch.equal(drawn[name], fitted[name]) for name in body)  # the backbone is the base's


def shared_start_random(tiny_base_dir, work_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_base_dir)
    recipe = FinetuneRecipe(base="b", head_init="random")
    return shared_start(tiny_base_dir, tokenizer, recipe, get_task("mrpc"), work_dir)


def test_changing_a_probe_setting_or_the_base_weights_re_keys_the_start(
    tmp_path, tiny_base_dir, glue_hub_dir
):
    first = probed(tiny_base_dir, glue_hub_dir, tmp_path)
    assert probed(tiny_base_dir, glue_hub_dir, tmp_path) == first
    assert probed(tiny_base_dir, glue_hub_dir, tmp_path, probe_l2=0.1) != first
    assert probed(tiny_base_dir, glue_hub_dir, tmp_path, head_init="random") != first
    base = tmp_path / "base"
    shutil.copytree(tiny_base_dir, base)
    weights = load_file(base / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 1e-3
    save_file(weights, base / "model.safetensors", metadata={"format": "pt"})
    assert probed(base, glue_hub_dir, tmp_path).name != first.name


def test_a_head_drawn_on_purpose_is_one_log_line_not_transformers_load_report(tiny_base_dir, capfd, caplog):
    import logging

    from hfsoup.eval import get_task
    from hfsoup.finetune.start import new_head_model

    with caplog.at_level(logging.INFO, logger="hfsoup"):
        model = new_head_model(tiny_base_dir, get_task("stsb"))  # 1 output where the base has 2: drawn anew
    assert model.classifier.out_features == 1
    assert "LOAD REPORT" not in capfd.readouterr().err
    assert (
        "Drawn anew for stsb (the base has no such head): classifier.bias, classifier.weight" in caplog.text
    )
