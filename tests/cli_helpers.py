"""Helpers of the end-to-end CLI tests: run `hfsoup`, read its one-line errors, make quick MRPC merges."""

from __future__ import annotations

import shutil
from pathlib import Path

from hfsoup.cli import main

# Two small slices of MRPC validation: a merge of the tiny BERTs on them takes a few seconds.
QUICK_SPLITS = ("--selection-split", "validation[:32]", "--report-split", "validation[32:64]")


def run(capsys, *argv) -> tuple[int, str, str]:
    """Run `hfsoup --quiet ARGV`; the exit code, stdout and stderr."""
    code = main(["--quiet", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def user_error(capsys, *argv) -> str:
    """Run a command that must fail as a user error: exit 1, no traceback, one `hfsoup: error:` line."""
    code, _out, err = run(capsys, *argv)
    assert code == 1, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("hfsoup: error:")]
    assert len(lines) == 1, err
    return lines[0]


def quick_mrpc(models, glue_hub_dir: Path) -> list[str]:
    """Arguments of a quick MRPC merge of `models` on two slices of the local GLUE data."""
    return [*map(str, models), "--task", "mrpc", "--dataset", str(glue_hub_dir), *QUICK_SPLITS]


def copy_folders(folders, destination: Path) -> list[Path]:
    """Copies of model folders inside `destination` (which is created), for tests that change or hide them."""
    destination.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copytree(folder, destination / Path(folder).name)) for folder in folders]


def listing(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes, to check a folder was left untouched."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
