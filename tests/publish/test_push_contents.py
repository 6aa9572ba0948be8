"""What `hfsoup push` sends: the files a merge wrote, and a refusal naming anything else in the folder."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from hfsoup.cli import main
from hfsoup.publish.push import MERGE_FILES

_SOURCES = Path(__file__).resolve().parents[1] / "sources"
sys.path.insert(0, str(_SOURCES))  # hub_server.py
_spec = importlib.util.spec_from_file_location("sources_conftest", _SOURCES / "conftest.py")
_hub_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_hub_fixtures)
hub, hub_server = _hub_fixtures.hub, _hub_fixtures.hub_server  # the test Hub of tests/sources

from cli_helpers import quick_mrpc, user_error  # noqa: E402
from hub_server import HubServer  # noqa: E402


@pytest.fixture(scope="module")
def merged(tmp_path_factory, tiny_ingredient_dirs, glue_hub_dir) -> Path:
    """A soup folder as `hfsoup merge` writes it, its weights in shards (so with a shards index)."""
    soup = tmp_path_factory.mktemp("merged") / "soup"
    merge = quick_mrpc(tiny_ingredient_dirs[:2], glue_hub_dir)
    assert main(["--quiet", "merge", *merge, "--max-shard-size", "40000", "--output-dir", str(soup)]) == 0
    return soup


@pytest.fixture
def soup(merged, tmp_path) -> Path:
    """A copy of the merged soup, for a test to add files to."""
    return Path(shutil.copytree(merged, tmp_path / "soup"))


@pytest.fixture
def alice(hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", HubServer.ALICE)
    return hub


def nothing_pushed(hub) -> bool:
    return "alice/soup" not in hub.repos and not [r for r in hub.requests if r.method == "POST"]


def test_a_merge_writes_only_files_a_push_sends_and_all_of_them_go(alice, soup, capsys):
    shards = sorted(path.name for path in soup.glob("model-*.safetensors"))
    assert len(shards) > 1 and (soup / "model.safetensors.index.json").is_file()
    assert {path.name for path in soup.iterdir()} - {*shards, "model.safetensors.index.json"} <= MERGE_FILES
    (soup / ".DS_Store").write_bytes(b"\0")  # hidden files are never uploaded, so they are not refused

    code = main(["--quiet", "push", str(soup), "alice/soup"])

    assert code == 0, capsys.readouterr().err
    repo = alice.repos["alice/soup"]
    pushed = set(repo.commits[repo.resolve("main").sha].files)
    assert pushed == {".gitattributes", *(path.name for path in soup.iterdir() if path.name != ".DS_Store")}


def test_a_nested_model_folder_is_refused_and_nothing_is_pushed(alice, soup, capsys, tiny_ingredient_dirs):
    shutil.copytree(tiny_ingredient_dirs[0], soup / "checkpoint")
    count = len(list((soup / "checkpoint").iterdir()))

    line = user_error(capsys, "push", soup, "alice/soup")

    assert f"{soup} holds files that hfsoup merge did not write" in line
    assert f"checkpoint/ ({count} files)" in line and "config.json" not in line
    assert f"move them out of {soup}" in line and "hf upload alice/soup" in line
    assert nothing_pushed(alice)


def test_stray_data_files_are_refused_by_name_and_nothing_is_pushed(alice, soup, capsys):
    (soup / "data.csv").write_text("sentence,label\nhello,1\n")
    (soup / "notes.txt").write_text("try a lower learning rate\n")

    line = user_error(capsys, "push", soup, "alice/soup")

    assert "which the push would upload too: data.csv, notes.txt;" in line
    assert nothing_pushed(alice)


def test_a_shard_the_index_does_not_name_is_refused(alice, soup, capsys):
    """A shard left by an earlier save: not in the soup's weights (nor in its hash), it would still go."""
    shutil.copy(next(soup.glob("model-*.safetensors")), soup / "model-00009-of-00009.safetensors")

    line = user_error(capsys, "push", soup, "alice/soup")

    assert ": model-00009-of-00009.safetensors;" in line
    assert nothing_pushed(alice)


def test_the_refusal_names_three_entries_then_counts_the_rest(soup):
    from hfsoup.errors import InvalidSettingError
    from hfsoup.publish import push_soup

    for name in ("a.txt", "b.csv", "c.json", "d.txt", "e.txt"):
        (soup / name).write_text("x")
    (soup / "runs" / "seed1").mkdir(parents=True)
    (soup / "runs" / "seed1" / "log.txt").write_text("x")
    (soup / "helper.py").write_text("")  # code is never uploaded: not counted

    with pytest.raises(InvalidSettingError) as caught:
        push_soup(soup, "you/soup")  # refused before any network call (the tests run offline)

    message = str(caught.value)
    assert "\n" not in message
    assert ": a.txt, b.csv, c.json and 3 more;" in message and "helper.py" not in message
