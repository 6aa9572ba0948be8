"""`hfsoup finetune` under `torchrun --nproc-per-node 2` (CPU, gloo): each run trains on both processes (DDP),
one set of folders is written, and the runs equal one process's to rounding."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file
from tiny_models import save_model_folder, tiny_bert, tiny_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dropout_free_base(tmp_path_factory) -> Path:
    """A tiny BERT without dropout: two processes draw different dropout masks, one process draws one."""
    folder = tmp_path_factory.mktemp("no_dropout")
    model = tiny_bert(seed=0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return save_model_folder(model, tiny_tokenizer(folder), folder)


def finetune(recipe: Path, runs: Path, processes: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
    command = [*launcher, "-m", "hfsoup", "--quiet", "finetune", str(recipe), "--output-dir", str(runs)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def tree(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_a_sweep_under_torchrun_writes_one_set_of_folders_equal_to_one_process_s(
    tmp_path, dropout_free_base, glue_hub_dir
):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "task": "mrpc",
                "base": str(dropout_free_base),
                "dataset": str(glue_hub_dir),
                "train_split": "train[:32]",
                "max_steps": 4,
                "batch_size": 8,  # 4 rows per process
                "max_length": 32,
                "learning_rate": 1e-3,
                "ema_decay": 0.5,
                "grid": {"seed": [1, 2]},
                "soup": {
                    "method": "uniform",
                    "selection_split": "validation[:32]",
                    "report_split": "validation[32:64]",
                },
            }
        )
    )
    one = finetune(recipe, tmp_path / "one", processes=1)
    two = finetune(recipe, tmp_path / "two", processes=2)

    assert two.stdout.count("Soup written to") == 1 and two.stdout.count("2 runs in") == 1  # printed once
    assert two.stdout.replace(str(tmp_path / "two"), "") == one.stdout.replace(str(tmp_path / "one"), "")
    assert tree(tmp_path / "two") == tree(tmp_path / "one")  # no second copy, no .partial, no lock left
    runs = [p.name for p in (tmp_path / "one").iterdir() if (p / "run.json").is_file()]
    assert len(runs) == 2
    start = next((tmp_path / "one").glob("init-*"))
    for run in runs:
        for kind in ("raw", "ema"):
            first = load_file(tmp_path / "one" / run / kind / "model.safetensors")
            second = load_file(tmp_path / "two" / run / kind / "model.safetensors")
            initial = load_file(start / "model.safetensors")
            for name, tensor in first.items():
                assert (tensor - second[name]).abs().max() <= 1e-6, (run, kind, name)
            moved = max((tensor - initial[name]).abs().max().item() for name, tensor in first.items())
            assert moved > 1e-3  # the runs trained: equal weights are not merely the start's
