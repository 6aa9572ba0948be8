"""The CLI's promises about secrets, temporary folders, pushes and failures, end to end."""

from __future__ import annotations

import json
import logging
import socket
import tempfile
from pathlib import Path

import pytest
from cli_helpers import quick_mrpc, run, user_error
from huggingface_hub import constants

import hfsoup.cli.command
from hfsoup.cli.command import EXIT_INTERNAL_ERROR, EXIT_INTERRUPTED, main, public_command
from hfsoup.errors import RecipeError

SECRET = "hf_s3cretTokenValue0123456789"


# --- tokens are never recorded ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token_args",
    [["--token", SECRET], [f"--token={SECRET}"], ["--tok", SECRET], [f"--toke={SECRET}"]],
    ids=["separate", "equals", "abbreviated", "abbreviated-equals"],
)
def test_token_is_in_no_file_no_output_and_no_log(
    tmp_path, capsys, caplog, token_args, tiny_ingredient_dirs, glue_hub_dir
):
    out_dir = tmp_path / "soup"
    argv = ["-v", "merge", *quick_mrpc(tiny_ingredient_dirs[:2], glue_hub_dir), *token_args]
    with caplog.at_level(logging.DEBUG):
        code = main([*argv, "--output-dir", str(out_dir)])
    out, err = capsys.readouterr()
    assert code == 0, err
    files = [path for path in out_dir.rglob("*") if path.is_file()]
    assert {"README.md", "soup.yaml", "model.safetensors"} <= {path.name for path in files}
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in out and SECRET not in err and SECRET not in caplog.text
    assert "--task mrpc" in (out_dir / "soup.yaml").read_text()  # the rest of the command is recorded


def test_public_command_drops_secret_flags_and_their_values():
    argv = ["merge", "a", "--token", "X1", "--task", "mrpc", "--token=X2", "--to", "X3", "--t=X4", "--tokens"]
    assert public_command(argv) == "hfsoup merge a --task mrpc --tokens"
    assert public_command(["merge", "--trust-remote-metric", "--task", "t"]) == (
        "hfsoup merge --trust-remote-metric --task t"
    )


# --- --push-to-hub without --output-dir: the temporary folder ---------------------------------------------------


@pytest.fixture
def scratch_root(tmp_path, monkeypatch) -> Path:
    """Where `tempfile.mkdtemp` creates its folders during the test."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


@pytest.fixture
def closed_hub(monkeypatch) -> str:
    """Point huggingface_hub at a port on which nothing listens, online: any push fails to connect."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return url


def test_failed_push_keeps_the_soup_and_names_it(
    capsys, scratch_root, closed_hub, tiny_ingredient_dirs, glue_hub_dir
):
    line = user_error(
        capsys,
        "merge",
        *quick_mrpc(tiny_ingredient_dirs[:2], glue_hub_dir),
        "--push-to-hub",
        "alice/soup",
        "--token",
        SECRET,
    )
    (scratch,) = scratch_root.iterdir()
    soup = scratch / "soup"
    assert (soup / "soup.yaml").is_file() and (soup / "model.safetensors").is_file()
    assert f"hfsoup push {soup} alice/soup" in line and closed_hub in line
    assert SECRET not in line


def test_merge_that_fails_before_the_push_leaves_no_temporary_folder(
    capsys, scratch_root, tiny_ingredient_dirs
):
    # A Hub ingredient while offline: a Hub error, but from the merge, not from the push.
    line = user_error(
        capsys,
        "merge",
        "alice/tiny",
        *tiny_ingredient_dirs[:1],
        "--task",
        "mrpc",
        "--push-to-hub",
        "alice/soup",
    )
    assert "HF_HUB_OFFLINE" in line
    assert list(scratch_root.iterdir()) == []


# --- `hfsoup push` pushes only soups ----------------------------------------------------------------------------


def test_push_without_soup_yaml_fails_offline_with_the_soup_yaml_line(capsys, tiny_ingredient_dirs):
    """Offline (HF_HUB_OFFLINE, as in every test) a network call would fail with another message."""
    line = user_error(capsys, "push", tiny_ingredient_dirs[0], "alice/soup")
    assert "no soup.yaml" in line and "HF_HUB_OFFLINE" not in line


# --- interrupts and internal errors ----------------------------------------------------------------------------


def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("where", ["build_parser", "_recipe"])
def test_ctrl_c_at_start_up_prints_one_line_and_exits_130(capsys, monkeypatch, tmp_path, where):
    monkeypatch.setattr(hfsoup.cli.command, where, interrupt)
    code, out, err = run(capsys, "merge", tmp_path / "model", "--task", "mrpc")
    assert code == EXIT_INTERRUPTED == 130
    assert err.strip() == "hfsoup: interrupted" and out == ""


def boom(*args, **kwargs):
    raise RuntimeError("an unexpected bug")


def test_internal_error_exits_3_with_a_line_asking_to_report_it(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(hfsoup.cli.command, "_recipe", boom)
    code, _out, err = run(capsys, "merge", tmp_path / "model", "--task", "mrpc")
    assert code == EXIT_INTERNAL_ERROR == 3
    (line,) = err.strip().splitlines()
    assert "internal error" in line and "an unexpected bug" in line and "report" in line and "-v" in line


def test_verbose_reraises_internal_and_user_errors(monkeypatch, tmp_path):
    with monkeypatch.context() as patch:
        patch.setattr(hfsoup.cli.command, "_recipe", boom)
        with pytest.raises(RuntimeError, match="an unexpected bug"):
            main(["-v", "merge", str(tmp_path / "model"), "--task", "mrpc"])
    with pytest.raises(RecipeError, match="needs data to score on"):
        main(["-v", "merge", str(tmp_path / "model")])


def test_push_of_a_missing_folder_names_it(capsys, tmp_path):
    line = user_error(capsys, "push", tmp_path / "missing", "alice/soup")
    assert f"No soup folder at {tmp_path / 'missing'}" in line


def test_sigterm_during_the_write_is_one_line_exit_143_and_leaves_nothing(
    capsys, monkeypatch, tmp_path, tiny_ingredient_dirs, glue_hub_dir
):
    import os
    import signal

    from cli_helpers import quick_mrpc
    from transformers import PreTrainedTokenizerBase

    def killed(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler stopping the job while the soup is written

    monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", killed)
    code, out, err = run(
        capsys,
        "merge",
        *quick_mrpc(tiny_ingredient_dirs[:2], glue_hub_dir),
        "--output-dir",
        tmp_path / "soup",
        "--json",
    )
    assert code == 143
    assert err.strip().splitlines()[-1].startswith("hfsoup: terminated")
    assert json.loads(out)["error"]["exit_code"] == 143
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no soup, no hidden staging folder
    assert signal.getsignal(signal.SIGTERM) is not None


def test_under_a_launcher_only_rank_0_prints_the_json_document(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("RANK", "1")
    code, out, _err = run(capsys, "merge", tmp_path / "missing", "--task", "mrpc", "--json")
    assert code == 1 and out == ""
    monkeypatch.setenv("RANK", "0")
    code, out, _err = run(capsys, "merge", tmp_path / "missing", "--task", "mrpc", "--json")
    assert code == 1 and json.loads(out)["ok"] is False
