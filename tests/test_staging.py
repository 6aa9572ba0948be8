"""Tests of hfsoup.staging: which output folders a merge refuses, and how it replaces one safely.

The refusals run through the CLI on real tiny ingredients, so a check that let the merge through would
really write (and, with --overwrite, replace) the folder; the assertions then see it changed.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from pathlib import Path

import pytest
from cli_helpers import copy_folders, listing, quick_mrpc, run, user_error

from hfsoup.errors import InvalidSettingError, OutputExistsError
from hfsoup.staging import check_output, refuse_containing, staged


def siblings(folder: Path) -> list[str]:
    """The hidden staging (`.partial-`) and replaced (`.old-`) folders left next to `folder`."""
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


# --- refused outputs, through the CLI -----------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A working folder with a file and a subfolder in it, made the current folder."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("precious")
    (work / "sub").mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.mark.parametrize("output", [".", "..", "../work", "sub/.."])
def test_overwrite_refuses_the_working_folder_and_those_holding_it(
    capsys, workdir, output, tiny_ingredient_dirs, glue_hub_dir
):
    before = listing(workdir.parent)
    line = user_error(
        capsys,
        "merge",
        *quick_mrpc(tiny_ingredient_dirs, glue_hub_dir),
        "--output-dir",
        output,
        "--overwrite",
    )
    assert "working folder" in line and output in line
    assert listing(workdir.parent) == before
    assert (workdir / "notes.txt").read_text() == "precious"


def test_overwrite_refuses_an_output_holding_an_ingredient(
    capsys, tmp_path, tiny_ingredient_dirs, glue_hub_dir
):
    models = copy_folders(tiny_ingredient_dirs[:2], tmp_path / "models")
    before = listing(tmp_path / "models")
    for output in (tmp_path / "models", models[1]):
        line = user_error(
            capsys, "merge", *quick_mrpc(models, glue_hub_dir), "--output-dir", output, "--overwrite"
        )
        assert "holds" in line and str(models[0] if output != models[1] else models[1]) in line
    assert listing(tmp_path / "models") == before
    assert siblings(models[1]) == [] and siblings(tmp_path / "models") == []


def test_overwrite_refuses_an_output_holding_the_base(
    capsys, tmp_path, tiny_ingredient_dirs, tiny_base_dir, glue_hub_dir
):
    (base,) = copy_folders([tiny_base_dir], tmp_path / "project")
    before = listing(tmp_path / "project")
    line = user_error(
        capsys,
        "merge",
        *quick_mrpc(tiny_ingredient_dirs[:2], glue_hub_dir),
        "--base",
        base,
        "--output-dir",
        tmp_path / "project",
        "--overwrite",
    )
    assert str(base) in line
    assert listing(tmp_path / "project") == before


def test_overwrite_refuses_an_output_holding_the_dataset(capsys, tmp_path, tiny_ingredient_dirs):
    data = tmp_path / "data" / "mrpc.csv"
    data.parent.mkdir()
    data.write_text("sentence1,sentence2,label\n" + "a b,b a,1\nc d,e f,0\n" * 8)
    line = user_error(
        capsys,
        "merge",
        *tiny_ingredient_dirs[:2],
        "--task",
        "mrpc",
        "--dataset",
        data,
        "--selection-split",
        "validation[:8]",
        "--report-split",
        "validation[8:]",
        "--output-dir",
        data.parent,
        "--overwrite",
    )
    assert str(data) in line
    assert data.is_file()


def test_check_output_refuses_without_touching_anything(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "soup").mkdir()
    with pytest.raises(OutputExistsError):
        check_output(tmp_path / "soup", overwrite=False)
    assert check_output(tmp_path / "soup", overwrite=True) == tmp_path / "soup"
    assert check_output(tmp_path / "new" / "soup", overwrite=False) == tmp_path / "new" / "soup"
    for output in (".", tmp_path, tmp_path.parent):
        with pytest.raises(InvalidSettingError, match="working folder"):
            check_output(output, overwrite=True)
    with pytest.raises(InvalidSettingError, match="holds the model folder"):
        refuse_containing(tmp_path, [tmp_path / "soup" / "ft1"], "model folder")
    refuse_containing(tmp_path / "soup", [tmp_path / "other"], "model folder")  # a sibling is fine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["soup"]


# --- outputs that cannot be written: refused before any model is read -----------------------------------------


def test_output_under_a_file_or_that_is_a_file_is_refused_first(capsys, tmp_path):
    a_file = tmp_path / "somefile"
    a_file.write_text("not a folder")
    missing = [
        tmp_path / "missing-1",
        tmp_path / "missing-2",
    ]  # reading them would fail: they must not be read
    line = user_error(capsys, "merge", *missing, "--task", "mrpc", "--output-dir", a_file / "out")
    assert "not a writable folder" in line and str(a_file) in line
    for flags in ([], ["--overwrite"]):
        line = user_error(capsys, "merge", *missing, "--task", "mrpc", "--output-dir", a_file, *flags)
        assert "is a file" in line and str(a_file) in line
    assert a_file.read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["somefile"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_output_in_a_read_only_folder_is_refused_first(capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    line = user_error(
        capsys, "merge", tmp_path / "missing", "--task", "mrpc", "--output-dir", locked / "soup"
    )
    assert "not a writable folder" in line


# --- the umask ---------------------------------------------------------------------------------------------------


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield 0o027
    os.umask(previous)


def test_staged_output_honours_the_umask(tmp_path, umask_027):
    with staged(tmp_path / "soup", overwrite=False) as staging:
        (staging / "weights").write_text("w")
    assert stat.S_IMODE((tmp_path / "soup").stat().st_mode) == 0o777 & ~umask_027


def test_merged_soup_folder_honours_the_umask(
    capsys, tmp_path, umask_027, tiny_ingredient_dirs, glue_hub_dir
):
    out_dir = tmp_path / "soup"
    code, _, err = run(
        capsys, "merge", *quick_mrpc(tiny_ingredient_dirs[:2], glue_hub_dir), "--output-dir", out_dir
    )
    assert code == 0, err
    assert stat.S_IMODE(out_dir.stat().st_mode) == 0o777 & ~umask_027 == 0o750
    assert siblings(out_dir) == []


# --- interrupting the replacement of an existing output -------------------------------------------------------


@pytest.fixture
def old_output(tmp_path) -> Path:
    output = tmp_path / "soup"
    output.mkdir()
    (output / "old-1.txt").write_text("old")
    (output / "old-2.txt").write_text("old")
    return output


OLD = {"old-1.txt": b"old", "old-2.txt": b"old"}
NEW = {"new.txt": b"new"}


def interrupt_rename(monkeypatch, call: int, *, after: bool) -> None:
    """Make the `call`-th `Path.rename` raise KeyboardInterrupt, before it renames or just after."""
    real_rename, calls = Path.rename, []

    def rename(self, target):
        calls.append(self)
        if len(calls) == call and not after:
            raise KeyboardInterrupt
        moved = real_rename(self, target)
        if len(calls) == call:
            raise KeyboardInterrupt
        return moved

    monkeypatch.setattr(Path, "rename", rename)
    return calls


def replace_with_new(output: Path) -> None:
    with staged(output, overwrite=True) as staging:
        (staging / "new.txt").write_text("new")


@pytest.mark.parametrize(
    ("call", "after"),
    [
        (1, False),  # before the old folder moves aside
        (1, True),  # the old folder is aside, nothing is at the output yet
        (2, False),  # before the new folder moves in
    ],
)
def test_interrupted_swap_puts_the_old_folder_back(monkeypatch, old_output, call, after):
    interrupt_rename(monkeypatch, call, after=after)
    with pytest.raises(KeyboardInterrupt):
        replace_with_new(old_output)
    assert listing(old_output) == OLD
    assert siblings(old_output) == []


def test_interrupt_once_the_new_folder_is_in_keeps_it_and_names_the_old(monkeypatch, caplog, old_output):
    interrupt_rename(monkeypatch, 2, after=True)
    with caplog.at_level(logging.WARNING, logger="hfsoup.staging"), pytest.raises(KeyboardInterrupt):
        replace_with_new(old_output)
    assert listing(old_output) == NEW
    (left,) = siblings(old_output)
    assert left.startswith(".soup.old-") and left in caplog.text
    assert listing(old_output.parent / left) == OLD


def test_interrupt_while_deleting_the_old_folder_keeps_the_new_one(monkeypatch, caplog, old_output):
    """The old folder is deleted last: an interrupt then leaves the new soup whole and what is left of the old."""
    real_rmtree = shutil.rmtree

    def rmtree(path, *args, **kwargs):
        if Path(path).name.startswith(".soup.old-"):
            (Path(path) / "old-1.txt").unlink()  # half-way through
            raise KeyboardInterrupt
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", rmtree)
    with caplog.at_level(logging.WARNING, logger="hfsoup.staging"), pytest.raises(KeyboardInterrupt):
        replace_with_new(old_output)
    assert listing(old_output) == NEW
    (left,) = siblings(old_output)  # no .partial- folder: only the old folder's remains, named in a warning
    assert left.startswith(".soup.old-") and left in caplog.text
    assert listing(old_output.parent / left) == {"old-2.txt": b"old"}


def test_a_failed_delete_of_the_old_folder_is_no_failure(monkeypatch, caplog, old_output):
    def rmtree(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(shutil, "rmtree", rmtree)
    with caplog.at_level(logging.WARNING, logger="hfsoup.staging"):
        replace_with_new(old_output)
    assert listing(old_output) == NEW
    (left,) = siblings(old_output)
    assert left in caplog.text


def test_interrupted_first_write_leaves_nothing(monkeypatch, tmp_path):
    interrupt_rename(monkeypatch, 1, after=False)
    with pytest.raises(KeyboardInterrupt):
        replace_with_new(tmp_path / "soup")
    assert list(tmp_path.iterdir()) == []


def test_uninterrupted_swap_leaves_only_the_new_folder(old_output):
    replace_with_new(old_output)
    assert listing(old_output) == NEW
    assert siblings(old_output) == []


def test_an_interrupt_right_after_the_staging_folder_is_created_leaves_nothing(monkeypatch, tmp_path):
    real_mkdir = Path.mkdir

    def mkdir_then_interrupt(self, *args, **kwargs):
        real_mkdir(self, *args, **kwargs)
        if ".partial-" in self.name:  # the signal lands between the staging folder's mkdir and the next line
            raise KeyboardInterrupt

    monkeypatch.setattr(Path, "mkdir", mkdir_then_interrupt)
    with pytest.raises(KeyboardInterrupt), staged(tmp_path / "soup", overwrite=False):
        pass
    assert list(tmp_path.iterdir()) == []
