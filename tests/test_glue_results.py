"""benchmarks/glue_results.py on tiny runs: every method is scored on every split, and a rerun reuses it all."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from hfsoup.eval import get_task
from hfsoup.finetune import finetune_sweep
from hfsoup.recipe import FinetuneRecipe

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "glue_results.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("glue_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["glue_results"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_every_method_on_every_split_then_reused(bench, tmp_path, tiny_base_dir, glue_hub_dir, capsys):
    recipe = FinetuneRecipe(
        base=str(tiny_base_dir),
        grid={"seed": [1, 2], "learning_rate": [1e-3, 3e-3]},
        train_split="train[:16]",
        max_steps=2,
        batch_size=8,
        max_length=32,
        ema_decay=0.5,
    )
    finetune_sweep(recipe, get_task("mrpc"), dataset=str(glue_hub_dir), work_dir=tmp_path / "mrpc")
    bench.evaluate(["mrpc"], tmp_path, glue_hub_dir, [0, 1], runs=4)
    results = json.loads((tmp_path / "mrpc" / "results.json").read_text())["splits"]
    assert set(results) == {"0", "1"}
    line = results["0"]
    assert len(line["ingredients"]) == 8
    for method in (
        "best single",
        "best raw",
        "best EMA",
        "ensemble",
        "uniform",
        "uniform raw",
        "uniform EMA",
        "greedy",
        "greedy min-gain 0.005",
        "greedy min-gain 0.01",
        "model_stock",
        "exhaustive EMA",
        "learned",
    ):
        assert set(line[method]) >= {"selection", "report"}, method
    for method in ("uniform", "greedy", "model_stock", "learned", "ensemble"):
        gain = line[method]["gain"]
        assert gain["low"] <= gain["high"] and gain["resamples"] == 1000, method
    assert line["best single"]["selection"] == max(i["selection"] for i in line["ingredients"])
    assert line["exhaustive EMA"]["selection"] >= max(
        line["ingredients"][i]["selection"] for i in range(1, 8, 2)
    )
    assert line["exhaustive EMA"]["selection"] >= line["uniform EMA"]["selection"]
    assert all(i % 2 == 1 for i in line["exhaustive EMA"]["selected"])
    (coefficients,) = line["learned"]["coefficients"].values()
    assert len(coefficients) == 8 and abs(sum(coefficients) - 1) < 1e-5
    # Two rates: each one souped alone, and the one best on selection scored as the sweep's soup.
    per_rate = {label: line[label] for label in ("uniform lr=0.001", "uniform lr=0.003")}
    chosen = line[bench.PER_RATE]
    assert chosen["selection"] == max(soup["selection"] for soup in per_rate.values())
    assert chosen["report"] == per_rate[chosen["chosen"]]["report"] and "gain" in per_rate["uniform lr=0.001"]
    computed = len(list((tmp_path / "mrpc" / "logits").iterdir()))
    bench.evaluate(["mrpc"], tmp_path, glue_hub_dir, [0, 1, 2], runs=4)  # seed 2 reuses every soup's logits
    assert len(list((tmp_path / "mrpc" / "logits").iterdir())) <= computed + 20
    assert "2" in json.loads((tmp_path / "mrpc" / "results.json").read_text())["splits"]
    bench.evaluate(
        ["mrpc"], tmp_path, glue_hub_dir, [0], runs=4, learned_rates=(0.05,)
    )  # added to seed 0 only
    again = json.loads((tmp_path / "mrpc" / "results.json").read_text())["splits"]
    assert "learned lr=0.05" in again["0"] and "learned lr=0.05" not in again["1"]
    bench.evaluate(["mrpc"], tmp_path, glue_hub_dir, [0], runs=4, refit=True)  # added to seed 0 only
    again = json.loads((tmp_path / "mrpc" / "results.json").read_text())["splits"]
    refitted = again["0"][bench.REFITTED]
    assert refitted["refit"]["split"] == "train" and refitted["refit"]["rows"] == 3668
    assert refitted["gain"]["low"] <= refitted["gain"]["high"] and bench.REFITTED not in again["1"]
    assert (
        refitted["report"] != again["0"]["uniform"]["report"]
        or refitted["selection"] != again["0"]["uniform"]["selection"]
    )  # a new head, not the averaged one
    assert again["0"]["learned"] == results["0"]["learned"] and again["1"] == results["1"]
    (faster,) = again["0"]["learned lr=0.05"]["coefficients"].values()
    assert abs(sum(faster) - 1) < 1e-5 and faster != coefficients
    bench.report(["mrpc", "rte"], tmp_path)
    printed = capsys.readouterr().out
    assert "### mrpc: 4 runs, 3 selection/report splits" in printed and "rte: no results yet" in printed
    assert "| greedy |" in printed and "| exhaustive EMA |" in printed and "| best single | " in printed
    assert f"| {bench.PER_RATE} |" in printed and "| uniform lr=0.003 |" in printed
    assert "| learned lr=0.05 |" in printed and "| model_stock |" in printed and " of 3 |" in printed


def test_each_comparison_has_its_own_folder(bench, tmp_path):
    assert bench.variant_dir(tmp_path, "cola", *bench.PLAIN) == tmp_path / "cola"
    assert bench.variant_dir(tmp_path, "cola", "random", None, None) == tmp_path / "cola-random-head"
    assert bench.variant_dir(tmp_path, "cola", None, [5e-5, 1e-4], None) == tmp_path / "cola-lr5e-05+0.0001"
    assert bench.variant_dir(tmp_path, "cola", None, None, 0.3) == tmp_path / "cola-branch0.3"


def test_a_branched_sweeps_trunk_is_no_ingredient(bench, tmp_path):
    for name, overrides in (("seed1-a", {"seed": 1}), ("trunk-b", {"seed": 1, "trunk_until": 24})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text(json.dumps({"name": name, "overrides": overrides}))
    folders, records = bench._ingredients(tmp_path)
    assert [r["name"] for r in records] == ["seed1-a"]
    assert folders == [str(tmp_path / "seed1-a" / "raw"), str(tmp_path / "seed1-a" / "ema")]
