"""Processes: one process needs nothing, devices are checked, and a launched split scores as one process does."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hfsoup.errors import InvalidSettingError
from hfsoup.eval.processes import Processes

HERE = Path(__file__).parent


def test_one_process_is_the_whole_machinery(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    processes = Processes.from_environment("cpu")
    assert (processes.count, processes.index, processes.is_main) == (1, 0, True)
    assert processes.device == torch.device("cpu")
    assert processes.share(3) == range(3)
    tensor = torch.ones(2, 2)
    assert processes.gather(tensor, [2]) == [tensor] and processes.reduce(tensor) is tensor
    processes.close()  # nothing to tear down


def test_auto_picks_the_cpu_on_a_machine_without_gpu(monkeypatch):
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert Processes.from_environment("auto").device == torch.device("cpu")


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cpu:1", "mps:0", ""])
def test_an_unknown_device_is_refused_with_the_valid_ones(device):
    with pytest.raises(InvalidSettingError, match="auto, cpu, cuda, cuda:N or mps"):
        Processes.from_environment(device)


def test_a_missing_gpu_is_refused_in_one_line(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    for device in ("cuda", "cuda:1"):
        with pytest.raises(InvalidSettingError, match="no CUDA GPU; use --device cpu") as error:
            Processes.from_environment(device)
        assert "\n" not in str(error.value)


def test_one_gpu_for_several_processes_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for device in ("cuda:1", "mps"):
        with pytest.raises(InvalidSettingError, match="names one device, but a launcher started several"):
            Processes.from_environment(device)


def test_a_launched_split_scores_bit_for_bit_as_one_process(tmp_path, glue_hub_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run(
        [*command, str(HERE.parent / "launched" / "split_scoring.py"), str(glue_hub_dir), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{index}.json").read_text()) for index in (0, 1)]
    assert [rank["is_main"] for rank in ranks] == [True, False]
    # 45 rows in batches of 7, sorted longest first: process 0 runs batches 0, 2, 4, 6 and process 1
    # batches 1, 3, 5; together they run each batch once.
    assert [rank["split_batches"] for rank in ranks] == [[7, 7, 7, 3], [7, 7, 7]]
    for rank in ranks:
        assert rank["count"] == 2 and rank["has_bound"]
        assert rank["same_logits"] and rank["same_bf16_logits"]
        assert rank["loss_close"]  # the learned soup's batch loss and gradients, split, equal one process's
        for beat, split, alone, _ in rank["scores"]:
            assert split == alone, beat  # the same score, or the same early stop (None)
        stopped = rank["scores"][-1]  # beat 0.99: the pass stops after the first round that proves it lost
        assert stopped[1] is None and stopped[3] < len(rank["split_batches"])
        assert rank["gathered"] == [[[0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]]
        assert (rank["sum"], rank["mean"]) == (3.0, 1.5)


def test_accelerate_s_cpu_launch_of_one_process_says_how_to_launch_several(monkeypatch, caplog):
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")  # what `accelerate launch --cpu --num_processes 2` sets
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with caplog.at_level(logging.WARNING, logger="hfsoup"):
        processes = Processes.from_environment("auto")
    assert processes.count == 1
    assert (
        "`accelerate launch --cpu` starts a single one" in caplog.text
        and "torchrun --nproc-per-node" in caplog.text
    )
