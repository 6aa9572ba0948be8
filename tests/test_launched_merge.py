"""`hfsoup merge` launched on two CPU processes (torchrun, gloo) makes the same soup as one process, bit for bit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from safetensors import safe_open
from safetensors.torch import load_file

REPO_ROOT = Path(__file__).resolve().parents[1]


def merge(cwd: Path, args: list[str], processes: int) -> subprocess.CompletedProcess:
    """`hfsoup merge ARGS --output-dir soup` in `cwd`, as one process or under `torchrun`."""
    cwd.mkdir()
    # One thread per process in both runs, as torchrun sets it, so only the split of the batches differs.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
    command = [*launcher, "-m", "hfsoup", "merge", *args, "--output-dir", "soup"]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def soup_yaml(folder: Path) -> dict:
    data = yaml.safe_load((folder / "soup.yaml").read_text())
    data.pop("date")
    return data


def test_two_processes_choose_score_and_write_the_same_greedy_soup(tmp_path, tiny_stsb_dirs, glue_hub_dir):
    # Batches of 7 rows: 7 batches per split, so the last round gives the second process no batch, and the
    # last batch is short.
    args = [*map(str, tiny_stsb_dirs), "--task", "stsb", "--dataset", str(glue_hub_dir), "--batch-size", "7"]
    args += [
        "--selection-split",
        "validation[:45]",
        "--report-split",
        "validation[45:90]",
        "--max-length",
        "64",
    ]
    one = merge(tmp_path / "one", args, processes=1)
    two = merge(tmp_path / "two", args, processes=2)

    assert two.stdout == one.stdout  # the score table, printed once, by the main process
    assert one.stdout.count("Task stsb") == 1
    first, second = soup_yaml(tmp_path / "one" / "soup"), soup_yaml(tmp_path / "two" / "soup")
    assert second == first  # every score, every greedy decision, the recipe
    assert len(first["log"]) == len(tiny_stsb_dirs)
    assert len({ingredient["scores"]["selection"]["score"] for ingredient in first["ingredients"]}) > 1
    written = [tmp_path / run / "soup" / "model.safetensors" for run in ("one", "two")]
    assert written[0].read_bytes() == written[1].read_bytes()
    with safe_open(written[0], "pt") as weights:
        assert weights.keys()  # a real weight file
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["soup"]  # nothing else was written


def test_a_learned_soup_on_two_processes_equals_one_process_s_to_rounding(
    tmp_path, tiny_stsb_dirs, glue_hub_dir
):
    # The learned soup's gradient is summed over the processes (an all-reduce), whose additions come in another
    # order than one process's: its coefficients and weights may differ in their last bits, never more.
    args = [
        *map(str, tiny_stsb_dirs),
        "--task",
        "stsb",
        "--dataset",
        str(glue_hub_dir),
        "--method",
        "learned",
    ]
    args += [
        "--selection-split",
        "validation[:40]",
        "--report-split",
        "validation[40:80]",
        "--learned-epochs",
        "2",
    ]
    merge(tmp_path / "one", args, processes=1)
    merge(tmp_path / "two", args, processes=2)
    first, second = soup_yaml(tmp_path / "one" / "soup"), soup_yaml(tmp_path / "two" / "soup")
    for group, values in first["coefficients"].items():
        assert max(abs(a - b) for a, b in zip(values, second["coefficients"][group], strict=True)) <= 1e-6
    left = load_file(tmp_path / "one" / "soup" / "model.safetensors")
    right = load_file(tmp_path / "two" / "soup" / "model.safetensors")
    relative = max(
        ((left[n] - right[n]).abs().max() / left[n].abs().max().clamp(min=1e-12)).item() for n in left
    )
    assert relative <= 1e-6  # measured: 7.8e-8, one float32 rounding step of the largest weight
