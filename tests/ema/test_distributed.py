"""EMA under real multi-process training: two CPU processes on gloo, launched with torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hfsoup.ema.callback import EMA_STATE_NAME

HERE = Path(__file__).parent / "distributed"


def torchrun(script: str, *args: str) -> None:
    # The tests folder (tiny_models) and the checkout under test, not whichever hfsoup is installed.
    paths = [str(HERE.parent.parent), str(HERE.parents[2])]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(paths)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = subprocess.run(
        [*command, str(HERE / script), *args], env=env, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr[-4000:]


def test_ddp_ema_is_identical_on_both_ranks_and_written_once(tmp_path):
    torchrun("ddp_train.py", str(tmp_path))
    rank0, rank1 = (
        load_file(tmp_path / "ema-rank0.safetensors"),
        load_file(tmp_path / "ema-rank1.safetensors"),
    )
    assert rank0.keys() == rank1.keys()
    for name, value in rank0.items():
        assert torch.equal(value, rank1[name]), name
    # The EMA moved away from the initial weights, and each checkpoint holds it once, from the main process.
    for step in (4, 8):
        assert (tmp_path / f"checkpoint-{step}" / EMA_STATE_NAME).is_file()
    saved = load_file(tmp_path / "checkpoint-8" / EMA_STATE_NAME)
    torch.testing.assert_close(saved["classifier.weight"], rank0["classifier.weight"])
    logs = [(tmp_path / f"log-rank{rank}.txt").read_text() for rank in (0, 1)]
    assert logs[0].count("Saved the EMA state") == 2
    assert "Saved the EMA state" not in logs[1]


def test_fsdp2_sharded_ema_equals_the_unsharded_ema(tmp_path):
    torchrun("fsdp_ema.py", str(tmp_path))
    results = [json.loads((tmp_path / f"fsdp-rank{rank}.json").read_text()) for rank in (0, 1)]
    for result in results:
        assert result["sharded"] is True
        assert result["moved"] > 1e-3  # training changed the weights, so the comparison means something
        assert result["worst"] < 1e-6  # the gathered shards equal the EMA of an unsharded replica
        assert result["swapped_in"] and result["restored"]
    # Each rank holds only its shard of the shadow: about half of the model.
    assert sum(r["shard_fraction"] for r in results) == pytest.approx(1.0)
    assert all(0.4 < r["shard_fraction"] < 0.6 for r in results)
