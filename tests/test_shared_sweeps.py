"""End-to-end tests of sweeps shared by processes: `--shard K/N`, two plain sweeps on one folder, dead claims,
`--soup-only` (issue "Sweeps beyond one machine"). Each process is a real `python -m hfsoup finetune`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml
from cli_helpers import run, user_error

REPO_ROOT = Path(__file__).resolve().parents[1]


def _recipe(tmp_path, tiny_base_dir, glue_hub_dir, seeds=(1, 2, 3, 4)) -> Path:
    data = {
        "task": "mrpc",
        "base": str(tiny_base_dir),
        "dataset": str(glue_hub_dir),
        "train_split": "train[:32]",
        "max_steps": 4,
        "batch_size": 8,
        "max_length": 32,
        "learning_rate": 1e-3,
        "ema_decay": 0.5,
        "grid": {"seed": list(seeds)},
        "soup": {
            "method": "uniform",
            "selection_split": "validation[:32]",
            "report_split": "validation[32:64]",
        },
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _start(recipe: Path, runs: Path, *flags) -> subprocess.Popen:
    """`python -m hfsoup finetune RECIPE --output-dir RUNS FLAGS`, started (one thread, as beside another)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "hfsoup", "finetune", str(recipe), "--output-dir", str(runs), *flags]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    return out + err


def _trained(log: str) -> list[str]:
    """The runs a process trained, from its log lines `Run <name> done: ...`."""
    return [line.split("Run ", 1)[1].split(" done:")[0] for line in log.splitlines() if " done: " in line]


def _runs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and (p / "run.json").is_file())


def test_two_shards_at_once_train_disjoint_runs_and_their_soup_is_the_one_process_soup_bit_for_bit(
    tmp_path, tiny_base_dir, glue_hub_dir
):
    recipe = _recipe(tmp_path, tiny_base_dir, glue_hub_dir)
    shards = [_start(recipe, tmp_path / "shared", "--shard", f"{k}/2") for k in (1, 2)]
    logs = [_finish(process) for process in shards]
    taken = [_trained(log) for log in logs]
    assert all(len(share) == 2 for share in taken) and not set(taken[0]) & set(taken[1])
    assert sorted(taken[0] + taken[1]) == _runs(tmp_path / "shared")
    assert "This is shard 1/2 (--shard 1/2): it takes 2 of the 4 runs" in logs[0]
    assert not (tmp_path / "shared" / "soup").exists()  # shards do not soup
    assert not list((tmp_path / "shared").glob("*.lock")) and not list((tmp_path / "shared").glob(".*"))

    _finish(_start(recipe, tmp_path / "shared", "--soup-only"))
    _finish(_start(recipe, tmp_path / "alone"))
    assert _runs(tmp_path / "alone") == _runs(tmp_path / "shared")
    soups = [tmp_path / where / "soup" for where in ("shared", "alone")]
    assert (soups[0] / "model.safetensors").read_bytes() == (soups[1] / "model.safetensors").read_bytes()
    results = [yaml.safe_load((soup / "soup.yaml").read_text())["results"] for soup in soups]
    assert results[0] == results[1]


def test_two_plain_sweeps_on_one_folder_share_the_runs_each_trained_once(
    tmp_path, tiny_base_dir, glue_hub_dir
):
    recipe = _recipe(tmp_path, tiny_base_dir, glue_hub_dir)
    processes = [_start(recipe, tmp_path / "runs") for _ in range(2)]
    logs = [_finish(process) for process in processes]
    trained = _trained(logs[0]) + _trained(logs[1])
    assert sorted(trained) == _runs(tmp_path / "runs") and len(trained) == 4  # each run once, none lost
    assert (tmp_path / "runs" / "soup" / "model.safetensors").is_file()
    assert sum("Soup written to" in log for log in logs) == 1  # one soup; the other process says who made it
    assert sum("made by" in log for log in logs) == 1
    assert not list((tmp_path / "runs").glob("*.lock")) and not list((tmp_path / "runs").glob(".*"))


def test_a_claim_left_by_a_killed_process_is_taken_over_and_a_finished_run_is_never_retrained(
    tmp_path, tiny_base_dir, glue_hub_dir
):
    recipe = _recipe(tmp_path, tiny_base_dir, glue_hub_dir, seeds=(1, 2))
    runs = tmp_path / "runs"
    first = _start(recipe, runs, "--no-soup", "--shard", "1/2")
    first_log = _finish(first)
    (done,) = _trained(first_log)
    before = (runs / done / "run.json").stat().st_mtime_ns
    # A process that claimed the other run, then was killed (SIGKILL leaves its lock file behind).
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    victim.kill()
    victim.wait()
    other = next(plan.name for plan in _planned(recipe, runs) if plan.name != done)
    lock = {
        "host": socket.gethostname(),
        "pid": victim.pid,
        "since": 0.0,
        "token": "x",
        "process_start": None,
    }
    (runs / f"{other}.lock").write_text(json.dumps(lock))

    log = _finish(_start(recipe, runs))
    assert f"Taking over {other}.lock" in log and f"process {victim.pid} is gone" in log
    assert _trained(log) == [other]  # the finished run is reused, not retrained
    assert (runs / done / "run.json").stat().st_mtime_ns == before
    assert (runs / "soup" / "model.safetensors").is_file()


def _planned(recipe: Path, runs: Path):
    from hfsoup.eval.resolve import resolve_task
    from hfsoup.finetune import plan_runs
    from hfsoup.recipe import load_sweep

    sweep = load_sweep(recipe, output_dir=str(runs))
    task = resolve_task("mrpc", dataset=sweep.dataset)
    return plan_runs(sweep.finetune, task, sweep.dataset, runs)


def test_soup_only_with_a_missing_run_refuses_and_names_it_and_allow_missing_soups_the_rest(
    tmp_path, tiny_base_dir, glue_hub_dir, capsys
):
    recipe = _recipe(tmp_path, tiny_base_dir, glue_hub_dir, seeds=(1, 2, 3))
    runs = tmp_path / "runs"
    code, _out, err = run(capsys, "finetune", recipe, "--output-dir", runs, "--shard", "1/2")
    assert code == 0, err
    missing = sorted(p.name for p in _planned(recipe, runs) if not p.done)
    assert len(missing) == 1

    line = user_error(capsys, "finetune", recipe, "--output-dir", runs, "--soup-only")
    assert f"1 of 3 runs are not finished in {runs}: {missing[0]}" in line and "--allow-missing" in line
    assert not (runs / "soup").exists()

    code, out, err = run(capsys, "finetune", recipe, "--output-dir", runs, "--soup-only", "--allow-missing")
    assert code == 0, err
    assert f"Not finished here (1): {missing[0]}" in out
    card = (runs / "soup" / "README.md").read_text()
    assert "## Runs missing from the soup" in card and f"`{missing[0]}`" in card
    assert yaml.safe_load((runs / "soup" / "soup.yaml").read_text())["missing_runs"] == missing
    assert (
        len(yaml.safe_load((runs / "soup" / "soup.yaml").read_text())["ingredients"]) == 4
    )  # 2 runs x raw, ema


def test_wrong_sharing_flags_are_one_line_each(tmp_path, tiny_base_dir, glue_hub_dir, capsys):
    recipe = _recipe(tmp_path, tiny_base_dir, glue_hub_dir)
    assert "--allow-missing goes with --soup-only" in user_error(
        capsys, "finetune", recipe, "--allow-missing"
    )
    assert "pass one" in user_error(capsys, "finetune", recipe, "--shard", "1/2", "--soup-only")
    assert "--shard takes K/N" in user_error(capsys, "finetune", recipe, "--shard", "x")
    assert "--stale-after must be" in user_error(capsys, "finetune", recipe, "--stale-after", "0")
