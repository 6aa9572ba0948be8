"""benchmarks/ema_overhead.py: its implementations agree, its smallest path runs, and the full script runs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from tiny_models import tiny_bert

from hfsoup import ModelEma

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ema_overhead.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("ema_overhead", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["ema_overhead"] = module
    spec.loader.exec_module(module)
    return module


@torch.no_grad()
def perturb(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for param in model.parameters():
        param.add_(torch.randn(param.shape, generator=generator, dtype=torch.float32).to(param.dtype) * 0.1)


def test_every_compared_implementation_computes_the_same_average(bench):
    model = tiny_bert(seed=0)
    candidates = bench.candidates(model)
    reference = [p.detach().double().clone() for p in model.parameters()]
    for seed in range(5):
        perturb(model, seed)
        for candidate in candidates:
            candidate.run()
        reference = [
            bench.DECAY * r + (1 - bench.DECAY) * p.detach().double()
            for r, p in zip(reference, model.parameters(), strict=True)
        ]
    averaging = [c for c in candidates if c.average is not None]
    assert {c.label for c in averaging} == {
        bench.HFSOUP,
        bench.BARE_LERP,
        bench.AVERAGED_MODEL,
        bench.STATE_DICT_LOOP,
    }
    for candidate in averaging:
        for value, expected in zip(candidate.average(), reference, strict=True):
            torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-6)


def test_bf16_update_is_exact_across_staging_chunks():
    """The benchmark's bf16 row times the staged conversion; a 1.3M-element embedding spans two chunks."""
    model = tiny_bert(seed=0, vocab_size=40_000).to(torch.bfloat16)
    assert model.bert.embeddings.word_embeddings.weight.numel() > (1 << 20)
    ema = ModelEma(model, decay=0.9, warmup=False)
    reference = {n: p.detach().double().clone() for n, p in model.named_parameters()}
    for step in range(1, 4):
        perturb(model, step)
        ema.update(model, step)
        for name, param in model.named_parameters():
            reference[name] = 0.9 * reference[name] + 0.1 * param.detach().double()
    for name, expected in reference.items():
        torch.testing.assert_close(ema.shadow[name].double(), expected, rtol=1e-6, atol=1e-6)


def test_smallest_path_runs_and_reports_every_ratio(bench):
    generator = np.random.default_rng(0)
    ids = generator.integers(5, 60, size=(12, 16))
    data = Dataset.from_dict(
        {"input_ids": ids.tolist(), "attention_mask": np.ones_like(ids).tolist(), "labels": [0, 1] * 6}
    )
    updates = bench.bench_update("tiny", tiny_bert(seed=0), rounds=3, warmup=1)
    trainer = bench.bench_trainer(tiny_bert(seed=1).train(), data, batch_size=4, steps=2, runs=1)

    assert all(len(times) == 3 and min(times) > 0 for times in updates.times)
    assert len(trainer.step_plain) == len(trainer.step_ema) == len(trainer.callback) == 2
    table = bench.targets_table([updates], trainer)
    assert table.count("| tiny |") == len(bench.CHECKS)
    assert "callback timed inside" in table
    assert bench.update_table([updates]).count("| tiny (") == len(updates.candidates)
    assert "difference of the medians" in bench.trainer_table(trainer)


@pytest.mark.slow
def test_quick_run_of_the_script_prints_the_tables(glue_hub_dir, minilm_dir):
    run = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--repeats",
            "3",
            "--steps",
            "1",
            "--glue-dir",
            str(glue_hub_dir),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    assert "| MiniLM (22.7M) | hfsoup `ModelEma.update` |" in run.stdout
    assert "callback timed inside / step without it" in run.stdout
