"""The Hub round trip through the `hfsoup` command, against the Hub-compatible test server."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hub_server import HubServer, read_folder
from huggingface_hub import ModelCard
from tiny_models import save_model_folder, tiny_bert, tiny_tokenizer

from hfsoup.cli import main

WEIGHTS = "model.safetensors"


@pytest.fixture
def alice(hub, monkeypatch, tiny_stsb_dirs):
    """Alice's STS-B runs on the test Hub: run-1 with its raw weights on main and its EMA on branch `ema`."""
    monkeypatch.setenv("HF_TOKEN", HubServer.ALICE)
    raw1, ema1, raw2, _ = tiny_stsb_dirs
    hub.add_model("alice/stsb-run1", Path(raw1))
    hub.create_branch("alice/stsb-run1", "ema")
    hub.commit("alice/stsb-run1", read_folder(Path(ema1)), branch="ema", message="EMA weights")
    hub.add_model("alice/stsb-run2", Path(raw2))
    return hub


def run(capsys, *argv):
    code = main(["--quiet", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_merge_from_the_hub_and_push_the_soup_in_one_commit(tmp_path, capsys, alice, glue_hub_dir):
    out_dir = tmp_path / "soup"
    models = ["alice/stsb-run1", "alice/stsb-run1@ema", "alice/stsb-run2"]
    code, out, err = run(
        capsys,
        "merge",
        *models,
        "--task",
        "stsb",
        "--dataset",
        glue_hub_dir,
        "--max-length",
        "64",
        "--output-dir",
        out_dir,
        "--push-to-hub",
        "alice/soup",
    )
    assert code == 0, err
    assert "Pushed to alice/soup" in out
    repo = alice.repos["alice/soup"]
    assert len(repo.history(repo.resolve("main"))) == 2  # the repo's initial commit, then the soup in one

    soup = yaml.safe_load((out_dir / "soup.yaml").read_text())
    pinned = [i["pinned_reference"] for i in soup["ingredients"]]
    ema_sha = alice.repos["alice/stsb-run1"].resolve("ema").sha
    assert pinned[1] == f"alice/stsb-run1@{ema_sha}"
    assert all("@" in reference and len(reference.split("@")[1]) == 40 for reference in pinned)

    card = ModelCard.load("alice/soup")
    in_soup = {i["repo_id"] for i in soup["ingredients"] if i["selected"]}
    assert in_soup and set(card.data.base_model) == in_soup  # only what is in the soup
    assert card.data.to_dict()["base_model_relation"] == "merge"
    assert {"model-soup", "hfsoup"} <= set(card.data.tags)
    pearson = next(r.metric_value for r in card.data.eval_results if r.metric_type == "pearson")
    assert pearson == pytest.approx(soup["results"]["soup"]["report"]["pearson"], abs=1e-6)


def test_inspect_and_a_doomed_merge_download_no_weights(tmp_path, capsys, alice):
    folder = tmp_path / "three"
    save_model_folder(tiny_bert(seed=0, num_labels=3), tiny_tokenizer(folder), folder)
    alice.add_model("alice/three-labels", folder)

    code, out, _ = run(capsys, "inspect", "alice/stsb-run1", "alice/stsb-run2", "--metadata-only")
    assert code == 0 and "the metadata shows no problem" in out
    code, _, err = run(capsys, "merge", "alice/stsb-run1", "alice/three-labels", "--task", "stsb")
    assert code == 1 and "incompatible" in err
    for repo in ("alice/stsb-run1", "alice/stsb-run2", "alice/three-labels"):
        assert WEIGHTS not in alice.downloaded_files(repo)


def test_failed_push_keeps_the_output_and_says_how_to_retry(tmp_path, capsys, alice, glue_hub_dir):
    out_dir = tmp_path / "soup"
    code, _, err = run(
        capsys,
        "merge",
        "alice/stsb-run1",
        "alice/stsb-run2",
        "--method",
        "uniform",
        "--task",
        "stsb",
        "--dataset",
        glue_hub_dir,
        "--output-dir",
        out_dir,
        "--push-to-hub",
        "bob/not-yours",
    )
    assert code == 1
    assert f"hfsoup push {out_dir} bob/not-yours" in err
    assert (out_dir / WEIGHTS).is_file() and (out_dir / "soup.yaml").is_file()

    code, _out, err = run(capsys, "push", out_dir, "alice/retried")
    assert code == 0, err
    assert ModelCard.load("alice/retried").data.tags


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("alice/nope", "not found"),
        ("alice/stsb-run1@no-such-branch", "no-such-branch"),
    ],
)
def test_hub_errors_are_one_line(capsys, alice, reference, expected):
    code, _, err = run(capsys, "inspect", reference, "--metadata-only")
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("hfsoup: error:")]
    assert len(lines) == 1 and expected in lines[0].lower(), err


@pytest.fixture
def two_repos(hub, tiny_ingredient_dirs):
    """`alice/a` and `alice/b`: two compatible tiny fine-tunes of one base, public on the test Hub."""
    for repo, folder in zip(("alice/a", "alice/b"), tiny_ingredient_dirs, strict=False):
        hub.add_model(repo, folder)
    return hub


def test_inspect_of_hub_repos_reads_only_metadata_by_default(capsys, two_repos):
    code, out, err = run(capsys, "inspect", "alice/a", "alice/b")

    assert code == 0, err
    assert "the metadata shows no problem" in out and "Add --weights" in out
    for repo in ("alice/a", "alice/b"):
        assert WEIGHTS not in two_repos.downloaded_files(repo)
        weight_gets = [r for r in two_repos.file_requests(repo) if r.path.endswith(f"/{WEIGHTS}")]
        assert weight_gets and all(r.range == "bytes=0-100000" for r in weight_gets)  # the header only


def test_inspect_with_weights_downloads_and_checks_them(capsys, two_repos):
    code, out, err = run(capsys, "inspect", "alice/a", "alice/b", "--weights")

    assert code == 0, err
    assert "backbones are close" in out and "Add --weights" not in out
    for repo in ("alice/a", "alice/b"):
        assert WEIGHTS in two_repos.downloaded_files(repo)
