"""Tests of hfsoup.finetune.start: one shared head for every run, and a training split without padding."""

from __future__ import annotations

import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from hfsoup.eval import get_task
from hfsoup.finetune.start import encoded_split, shared_start
from hfsoup.recipe import FinetuneRecipe


def test_the_shared_head_is_drawn_once_from_head_seed_and_reused(tmp_path, tiny_base_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_base_dir)
    stsb = get_task("stsb")  # 1 output: the tiny base's 2-label head is drawn anew
    first = shared_start(
        tiny_base_dir, tokenizer, FinetuneRecipe(base="b", head_seed=7), stsb, tmp_path / "a"
    )
    again = shared_start(
        tiny_base_dir, tokenizer, FinetuneRecipe(base="b", head_seed=7), stsb, tmp_path / "b"
    )
    other = shared_start(
        tiny_base_dir, tokenizer, FinetuneRecipe(base="b", head_seed=8), stsb, tmp_path / "a"
    )
    heads = [load_file(folder / "model.safetensors")["classifier.weight"] for folder in (first, again, other)]
    assert heads[0].shape == (1, heads[0].shape[1])
    assert torch.equal(heads[0], heads[1]) and not torch.equal(heads[0], heads[2])
    mtime = (first / "model.safetensors").stat().st_mtime_ns
    assert (
        shared_start(tiny_base_dir, tokenizer, FinetuneRecipe(base="b", head_seed=7), stsb, tmp_path / "a")
        == first
    )
    assert (first / "model.safetensors").stat().st_mtime_ns == mtime


def test_the_training_split_is_tokenized_without_padding(tiny_base_dir, glue_hub_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_base_dir)
    recipe = FinetuneRecipe(base="b", train_split="train[:16]", max_length=512)
    rows = encoded_split(recipe, get_task("mrpc"), str(glue_hub_dir), 0, tokenizer)
    lengths = {len(ids) for ids in rows["input_ids"]}
    assert rows.num_rows == 16 and "labels" in rows.column_names and max(lengths) <= 512 and len(lengths) > 1
