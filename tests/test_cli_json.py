"""`hfsoup merge --json` and `hfsoup inspect --json`: one JSON document on stdout, logs on stderr; --version, --help."""

from __future__ import annotations

import json
from importlib.metadata import version

import pytest
import transformers
import yaml
from cli_helpers import quick_mrpc, run, user_error
from tiny_models import save_model_folder, tiny_bert, tiny_tokenizer

from hfsoup.cli import main


@pytest.fixture
def three_labels_dir(tmp_path):
    folder = tmp_path / "three-labels"
    return save_model_folder(tiny_bert(seed=0, num_labels=3), tiny_tokenizer(folder), folder)


def assert_same_scores(full: dict, rounded: dict) -> None:
    """The JSON's scores are soup.yaml's, at full precision where soup.yaml rounds to 6 decimals."""
    assert full.keys() == rounded.keys()
    for split, metrics in full.items():
        assert metrics == pytest.approx(rounded[split], abs=5e-7)


def test_merge_json_is_one_document_with_scores_choices_findings_and_folder(
    tmp_path, capsys, tiny_ingredient_dirs, glue_hub_dir
):
    out_dir = tmp_path / "soup"
    args = quick_mrpc(tiny_ingredient_dirs[:2], glue_hub_dir)
    code, out, err = run(capsys, "merge", *args, "--output-dir", out_dir, "--json")
    assert code == 0, err
    document = json.loads(out)  # the whole of stdout: nothing else is there
    assert set(document) == {"command", "ok", "output_dir", "pushed_to", "compatibility", "result"}
    assert document["command"] == "merge" and document["ok"] is True
    assert document["output_dir"] == str(out_dir) and document["pushed_to"] is None
    compatibility = document["compatibility"]
    assert compatibility["ok"] is True and compatibility["errors"] == []
    assert compatibility["ingredients"] == [folder.name for folder in tiny_ingredient_dirs[:2]]
    assert compatibility["label_names"] == ["not_equivalent", "equivalent"]
    assert compatibility["label_orders"] == [None, None]
    result = document["result"]
    assert (result["task"], result["method"]) == ("mrpc", "greedy")
    soup = yaml.safe_load((out_dir / "soup.yaml").read_text())  # what was written, as the JSON says
    assert_same_scores(result["candidates"]["soup"], soup["results"]["soup"])
    names = [record["name"] for record in result["ingredients"]]
    assert names == [record["name"] for record in soup["ingredients"]]
    for record, saved in zip(result["ingredients"], soup["ingredients"], strict=True):
        assert_same_scores(record["scores"], saved["scores"])
        assert record["selected"] == saved["selected"]
        assert record["pinned_reference"] == record["reference"]  # local folders
    assert result["order_added"] and result["order_added"][0] == result["best_ingredient"]
    assert "Soup written" not in out and "greedy soup" not in out


def test_merge_json_without_output_dir_says_nothing_was_written(capsys, tiny_ingredient_dirs, glue_hub_dir):
    code, out, err = run(capsys, "merge", *quick_mrpc(tiny_ingredient_dirs[:2], glue_hub_dir), "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["output_dir"] is None and document["result"]["candidates"]["soup"]["report"]["score"] >= 0


def error_document(capsys, *argv) -> tuple[dict, str]:
    """Run a command that fails as a user error with --json: the JSON on stdout and the stderr line."""
    code, out, err = run(capsys, *argv, "--json")
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.startswith("hfsoup: error: ")]
    assert len(lines) == 1, err
    return json.loads(out), lines[0].removeprefix("hfsoup: error: ")


def test_a_user_error_with_json_gives_the_line_on_stderr_and_an_error_document(tmp_path, capsys):
    document, line = error_document(capsys, "merge", tmp_path / "missing", "--task", "mrpc")
    assert document == {
        "command": "merge",
        "ok": False,
        "error": {"type": "IngredientNotFoundError", "message": line, "exit_code": 1},
    }
    assert "No model folder" in line


def test_incompatible_ingredients_with_json_give_the_findings(capsys, tiny_ingredient_dirs, three_labels_dir):
    for command in ("merge", "inspect"):
        extra = ["--task", "mrpc"] if command == "merge" else []
        document, line = error_document(capsys, command, tiny_ingredient_dirs[0], three_labels_dir, *extra)
        assert document["ok"] is False and document["command"] == command
        assert document["error"]["type"] == "IncompatibleIngredientsError"
        assert document["error"]["message"] == line
        findings = document["compatibility"]
        assert findings["ok"] is False and any("num_labels" in error for error in findings["errors"])
        assert findings["ingredients"] == [tiny_ingredient_dirs[0].name, "three-labels"]


def test_inspect_json_holds_the_report_and_the_geometry(capsys, tiny_ingredient_dirs, tiny_base_dir):
    code, out, err = run(
        capsys, "inspect", *tiny_ingredient_dirs, "--base", tiny_base_dir, "--weights", "--json"
    )
    assert code == 0, err
    document = json.loads(out)
    assert set(document) == {"command", "ok", "compatibility", "geometry"}
    assert document["command"] == "inspect" and document["ok"] is True
    report = document["compatibility"]
    assert report["ok"] is True and report["weights_checked"] is True and report["base"] == tiny_base_dir.name
    assert set(report) >= {
        "errors",
        "warnings",
        "notes",
        "label_orders",
        "label_names",
        "independent_tensors",
    }
    geometry = document["geometry"]
    assert geometry["ingredients"] == [folder.name for folder in tiny_ingredient_dirs]
    assert len(geometry["angles"]) == 3 and all(len(row) == 3 for row in geometry["angles"])
    assert geometry["distances"][0][1] == geometry["distances"][1][0] > 0


def test_inspect_json_of_metadata_only(capsys, tiny_ingredient_dirs):
    code, out, err = run(capsys, "inspect", *tiny_ingredient_dirs[:2], "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["geometry"] is None and document["compatibility"]["weights_checked"] is False
    assert "Only metadata was read" not in out


@pytest.mark.parametrize(
    ("raised", "code", "kind"),
    [(KeyboardInterrupt, 130, "KeyboardInterrupt"), (RuntimeError, 3, "RuntimeError")],
)
def test_interrupts_and_internal_errors_with_json_give_an_error_document(
    capsys, monkeypatch, tmp_path, tiny_ingredient_dirs, glue_hub_dir, raised, code, kind
):
    """A Ctrl-C, or a fault inside a library, while a real merge reads its ingredients' configs."""

    def fail(*args, **kwargs):
        raise raised("stop")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", fail)
    out_dir = tmp_path / "soup"
    args = quick_mrpc(tiny_ingredient_dirs[:2], glue_hub_dir)
    exit_code, out, err = run(capsys, "merge", *args, "--output-dir", out_dir, "--json")
    assert exit_code == code and len(err.strip().splitlines()) == 1
    document = json.loads(out)
    assert (
        document["ok"] is False
        and document["error"]["type"] == kind
        and document["error"]["exit_code"] == code
    )
    assert list(tmp_path.iterdir()) == []  # no soup folder, nor a half-written one


def test_a_usage_error_with_json_prints_no_document(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["merge", "--json", "--no-such-flag"])
    out, err = capsys.readouterr()
    assert exit.value.code == 2 and out == "" and "unrecognized arguments: --no-such-flag" in err


def test_version_and_the_exit_codes_in_help(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out.strip() == f"hfsoup {version('hfsoup')}"
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for code in ("0 success", "1 user error", "2 usage error", "3 internal error", "130 interrupted"):
        assert code in text
    assert "--json" in text
    with pytest.raises(SystemExit):
        main(["inspect", "--help"])
    assert "--json" in capsys.readouterr().out


def test_push_has_no_json_flag(capsys, tmp_path):
    assert "No soup folder" in user_error(capsys, "push", tmp_path / "missing", "alice/soup")
    with pytest.raises(SystemExit):
        main(["push", str(tmp_path), "alice/soup", "--json"])
