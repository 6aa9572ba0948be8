"""benchmarks/scoring.py: its dtype table from a tiny model, and its whole `--tiny` run (slow: three launches)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "scoring.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_scoring", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_ingredients_and_the_dtype_table(bench, tmp_path, glue_hub_dir):
    model, tokenizer = bench.base_model_and_tokenizer(True, tmp_path)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    folders = bench.make_ingredients(model, tokenizer, 2, tmp_path)
    assert [folder.name for folder in folders] == ["ingredient-0", "ingredient-1"]
    for folder in folders:  # loadable model folders, tokenizer included
        assert AutoTokenizer.from_pretrained(folder)("a b").input_ids == tokenizer("a b").input_ids
        assert AutoModelForSequenceClassification.from_pretrained(folder).config.id2label == bench.LABELS
    for name, tensor in model.state_dict().items():  # the base is restored after the perturbed copies
        assert torch.equal(tensor, before[name]), name

    result = bench.bench_dtypes(model, tokenizer, glue_hub_dir, "validation[:16]", rounds=2)
    assert result["rows"] == 16 and all(
        len(times) == 2 and min(times) > 0 for times in result["times"].values()
    )
    assert 0.0 <= result["agree"] <= 1.0
    table = bench.dtype_table(result)
    assert "| float32 |" in table and "| bfloat16 |" in table and "16 rows, 2 timed passes" in table


@pytest.mark.slow
def test_tiny_run_of_the_script_prints_both_tables(glue_hub_dir):
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--glue-dir", str(glue_hub_dir)],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    assert "| bfloat16 |" in run.stdout
    for setup in ("| 1 x 2 |" if torch.get_num_threads() == 2 else "| 1 x", "| 1 x 1 |", "| 2 x 1 |"):
        assert setup in run.stdout
    assert "the same choices and scores (bit for bit) in every run: yes." in run.stdout
