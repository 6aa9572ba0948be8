"""`import hfsoup` and the CLI's quick answers load none of the heavy libraries (hfsoup/_lazy.py).

Each check runs in a fresh interpreter, as the test process has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "datasets", "evaluate")


def python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, check=False)


def heavy_loaded(modules) -> list[str]:
    return sorted({name.split(".")[0] for name in modules} & set(HEAVY))


IMPORT_THEN_USE = """
import json, sys
import hfsoup
before = sorted(sys.modules)
names = dir(hfsoup)
try:
    hfsoup.NoSuchName
except AttributeError as error:
    missing = str(error)
import torch
ema = hfsoup.ModelEma(torch.nn.Linear(2, 2), decay=0.5)
print(json.dumps({"before": before, "names": names, "missing": missing, "ema": type(ema).__name__,
                  "cached": "ModelEma" in vars(hfsoup)}))
"""


def test_import_hfsoup_loads_no_heavy_library_and_names_load_on_use():
    done = python("-c", IMPORT_THEN_USE)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert heavy_loaded(found["before"]) == []
    assert {"ModelEma", "load_ingredients", "Scorer", "MergeRecipe"} <= set(found["names"])
    assert "has no attribute 'NoSuchName'" in found["missing"]
    assert found["ema"] == "ModelEma" and found["cached"]


CLI_ANSWERS = """
import json, sys
from hfsoup.cli import main
codes = []
for argv in (["--help"], ["--version"], ["merge", "--help"], ["merge", "--no-such-flag"], ["nope"]):
    try:
        main(argv)
    except SystemExit as exit:
        codes.append(exit.code)
print(json.dumps({"codes": codes, "modules": sorted(sys.modules)}))
"""


def test_help_version_and_usage_errors_load_no_heavy_library():
    done = python("-c", CLI_ANSWERS)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["codes"] == [0, 0, 0, 2, 2]
    assert heavy_loaded(found["modules"]) == []


@pytest.mark.parametrize(
    "argv", [["--help"], ["--version"], ["push"]], ids=["help", "version", "usage-error"]
)
def test_python_m_hfsoup_imports_no_heavy_library(argv):
    done = python("-X", "importtime", "-m", "hfsoup", *argv)
    assert done.returncode == (2 if argv == ["push"] else 0), done.stderr
    imported = [
        line.rsplit("|", 1)[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    ]
    assert "hfsoup.cli" in imported
    assert heavy_loaded(imported) == []
