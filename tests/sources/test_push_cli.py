"""`hfsoup merge --push-to-hub` through the real client and the local Hub server: where the soup goes."""

from __future__ import annotations

import tempfile

from cli_helpers import quick_mrpc, run
from hub_server import HubServer


def test_successful_push_removes_the_temporary_folder(
    hub, tmp_path, capsys, monkeypatch, tiny_ingredient_dirs, glue_hub_dir
):
    monkeypatch.setenv("HF_TOKEN", HubServer.ALICE)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    merge = quick_mrpc(tiny_ingredient_dirs[:2], glue_hub_dir)

    code, out, err = run(capsys, "merge", *merge, "--push-to-hub", "alice/soup", "--private")

    assert code == 0, err
    repo = hub.repos["alice/soup"]
    files = set(repo.commits[repo.resolve("main").sha].files)
    assert {"README.md", "soup.yaml", "model.safetensors", "config.json"} <= files
    assert repo.private
    assert "Pushed to alice/soup" in out
    assert "Soup written to" not in out  # the temporary folder is not a result
    assert list(tmp_path.iterdir()) == []  # the temporary copy is gone


def test_push_with_output_dir_keeps_the_output(
    hub, tmp_path, capsys, monkeypatch, tiny_ingredient_dirs, glue_hub_dir
):
    monkeypatch.setenv("HF_TOKEN", HubServer.ALICE)
    out_dir = tmp_path / "soup"
    merge = quick_mrpc(tiny_ingredient_dirs[:2], glue_hub_dir)

    code, out, err = run(capsys, "merge", *merge, "--output-dir", out_dir, "--push-to-hub", "alice/soup")

    assert code == 0, err
    assert "alice/soup" in hub.repos
    assert (out_dir / "soup.yaml").is_file()
    assert f"Soup written to {out_dir}" in out
