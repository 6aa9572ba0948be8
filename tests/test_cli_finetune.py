"""End-to-end tests of `hfsoup finetune RECIPE`: a 2-run sweep trains, soups, resumes, and retrains only changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from cli_helpers import run, user_error
from safetensors.torch import load_file
from transformers import Trainer

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.fixture
def trained(monkeypatch) -> list[str]:
    """The runs that really train (`Trainer.train`), by output folder; `stop_at` interrupts one at that step."""
    calls, real_train, real_save = [], Trainer.train, Trainer._save_checkpoint

    def train(self, *args, **kwargs):
        calls.append(Path(self.args.output_dir).parent.name)
        return real_train(self, *args, **kwargs)

    class Calls(list):
        stop_at = None

    calls = Calls()

    def save_then_stop(self, *args, **kwargs):
        real_save(self, *args, **kwargs)
        if self.state.global_step == calls.stop_at:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "train", train)
    monkeypatch.setattr(Trainer, "_save_checkpoint", save_then_stop)
    return calls


def _recipe(tmp_path, tiny_base_dir, glue_hub_dir, runs=({"seed": 1}, {"seed": 2}), **changes) -> Path:
    data = {
        "task": "mrpc",
        "base": str(tiny_base_dir),
        "dataset": str(glue_hub_dir),
        "output_dir": str(tmp_path / "runs"),
        "train_split": "train[:32]",
        "max_steps": 4,
        "batch_size": 8,
        "max_length": 32,
        "learning_rate": 1e-3,
        "ema_decay": 0.5,
        "runs": list(runs),
        "soup": {
            "method": "uniform",
            "selection_split": "validation[:32]",
            "report_split": "validation[32:64]",
            "output_dir": str(tmp_path / "soup"),
        },
        **changes,
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _weights(folder: Path) -> dict:
    return load_file(folder / "model.safetensors")


def _assert_same_runs(folder: Path, other: Path) -> None:
    """A run folder's raw and EMA weights equal another's, bit for bit."""
    for kind in ("raw", "ema"):
        left, right = _weights(folder / kind), _weights(other / kind)
        assert all(torch.equal(left[name], right[name]) for name in left), (folder.name, kind)


def _finished(runs: Path) -> list[Path]:
    return sorted(p for p in runs.iterdir() if not p.name.startswith(("init-", ".")))


def test_a_sweep_trains_soups_resumes_and_retrains_only_what_changed(
    tmp_path, tiny_base_dir, glue_hub_dir, trained, capsys
):
    runs = tmp_path / "runs"
    # Stopped within the first run, after its checkpoint of step 2: exit 130, no finished run, no soup.
    trained.stop_at = 2
    code, _out, err = run(capsys, "finetune", _recipe(tmp_path, tiny_base_dir, glue_hub_dir))
    assert code == 130 and "interrupted" in err
    assert _finished(runs) == [] and len(list(runs.glob(".seed1-*.partial"))) == 1
    assert not (tmp_path / "soup").exists()
    # Stopped between runs: a sweep of seed 1 alone resumes that run and finishes it.
    trained.stop_at = None
    code, _out, err = run(
        capsys, "finetune", _recipe(tmp_path, tiny_base_dir, glue_hub_dir, runs=[{"seed": 1}]), "--no-soup"
    )
    assert code == 0, err
    assert len(trained) == 2 and trained[0] == trained[1]  # the same run, resumed
    # The whole sweep: only seed 2 trains; both runs are souped.
    code, out, err = run(capsys, "finetune", _recipe(tmp_path, tiny_base_dir, glue_hub_dir))
    assert code == 0, err
    assert len(trained) == 3 and trained[2] != trained[0]
    assert "2 runs in" in out and "Soup written to" in out
    soup = yaml.safe_load((tmp_path / "soup" / "soup.yaml").read_text())
    assert len(soup["ingredients"]) == 4 and soup["recipe"]["method"] == "uniform"
    first, _second = _finished(runs)
    assert not list(runs.glob(".*"))
    # The resumed run equals an uninterrupted one, raw and EMA.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    code, _out, err = run(
        capsys, "finetune", _recipe(fresh, tiny_base_dir, glue_hub_dir, runs=[{"seed": 1}]), "--no-soup"
    )
    assert code == 0, err
    _assert_same_runs(first, fresh / "runs" / first.name)
    # One run's settings changed: that run alone trains again.
    before = len(trained)
    changed = _recipe(
        tmp_path, tiny_base_dir, glue_hub_dir, runs=[{"seed": 1}, {"seed": 2, "learning_rate": 2e-3}]
    )
    code, out, err = run(capsys, "finetune", changed, "--no-soup")
    assert code == 0, err
    assert len(trained) == before + 1 and trained[-1].startswith(".lr0.002-seed2-")
    assert first in _finished(runs) and len(_finished(runs)) == 3


def test_every_shipped_sweep_recipe_parses_and_validates():
    from hfsoup.recipe.sweep import load_sweep

    names = sorted(p.stem for p in RECIPES.glob("*.yaml") if not p.stem.startswith("mrpc-"))
    assert names == ["cola", "mrpc", "rte", "sst2", "stsb"]
    for name in names:
        sweep = load_sweep(
            RECIPES / f"{name}.yaml", dataset="../shared/data/glue-hub", base="package:x/model"
        )
        assert (
            sweep.task == name and len(sweep.finetune.points) == 8 and sweep.finetune.ingredients_per_run == 2
        )
        assert sweep.ingredient_count == 16 and sweep.finetune.base == "package:x/model"
        assert sweep.dataset == "../shared/data/glue-hub"
        hub = load_sweep(RECIPES / f"{name}.yaml")
        assert hub.dataset is None and hub.finetune.base == "sentence-transformers/all-MiniLM-L6-v2"


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"runs": [{"seed": 1}, {"seed": 1}]}, "same settings"),
        ({"grid": {"seed": []}}, "finetune.grid.seed"),
        ({"ingredients": ["raw", "shadow"]}, "ingredients"),
        ({"soup": {"method": "stew"}}, "stew"),
        ({"ema_schedule": "linear"}, "ema_schedule"),
        ({"push_to_hub": "no-namespace"}, "push_to_hub"),
        ({"training": {"warmup_ratio": 0.1}}, "warmup_ratio"),
        ({"task": "imdb"}, "imdb"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_sweep_recipe_is_one_line_before_any_work(
    tmp_path, tiny_base_dir, glue_hub_dir, trained, capsys, change, fragment
):
    line = user_error(capsys, "finetune", _recipe(tmp_path, tiny_base_dir, glue_hub_dir, **change))
    assert fragment in line
    assert trained == [] and not (tmp_path / "runs").exists() and not (tmp_path / "soup").exists()


def test_json_prints_one_document_with_the_runs(tmp_path, tiny_base_dir, glue_hub_dir, capsys):
    recipe = _recipe(tmp_path, tiny_base_dir, glue_hub_dir, runs=[{"seed": 1}], max_steps=2)
    code, out, err = run(capsys, "finetune", recipe, "--no-soup", "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["ok"] is True and document["command"] == "finetune" and document["soup"] is None
    (record,) = document["runs"]
    assert record["steps"] == 2 and set(record["scores"]) == {"raw", "ema"}
    assert [Path(folder).name for folder in record["folders"]] == ["raw", "ema"]


def test_a_sweep_on_a_dataset_s_own_columns_trains_labels_and_soups(tmp_path, tiny_base_dir, capsys):
    """A JSON lines file of sentence pairs with string labels, named by its columns instead of a task."""
    from dataset_files import nli_jsonl

    data = nli_jsonl(tmp_path, rows=60)
    recipe = {
        "dataset": str(data),
        "text_columns": ["premise", "hypothesis"],
        "label_column": "label",
        "base": str(tiny_base_dir),
        "output_dir": str(tmp_path / "runs"),
        "train_split": "train[:36]",
        "max_steps": 3,
        "batch_size": 12,
        "max_length": 32,
        "learning_rate": 1e-3,
        "runs": [{"seed": 1}, {"seed": 2}],
        "soup": {
            "method": "uniform",
            "selection_split": "train[36:48]",
            "report_split": "train[48:]",
            "output_dir": str(tmp_path / "soup"),
        },
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(recipe))
    code, out, err = run(capsys, "finetune", path, "--json")
    assert code == 0, err
    document = json.loads(out)
    assert len(document["runs"]) == 2 and all(record["steps"] == 3 for record in document["runs"])
    sorted_labels = {"0": "contradiction", "1": "entailment", "2": "neutral"}  # string labels, sorted
    for record in document["runs"]:
        for folder in record["folders"]:
            config = json.loads((Path(folder) / "config.json").read_text())
            assert config["id2label"] == sorted_labels
    soup = yaml.safe_load((tmp_path / "soup" / "soup.yaml").read_text())
    assert len(soup["ingredients"]) == 4
    assert soup["recipe"]["text_columns"] == ["premise", "hypothesis"]
    assert soup["recipe"]["label_column"] == "label" and soup["recipe"]["dataset"] == str(data)
    # The soup replays from its soup.yaml to the same weights.
    code, _out, err = run(
        capsys, "merge", "--recipe", tmp_path / "soup" / "soup.yaml", "--output-dir", tmp_path / "again"
    )
    assert code == 0, err
    left, right = _weights(tmp_path / "soup"), _weights(tmp_path / "again")
    assert all(torch.equal(left[name], right[name]) for name in left)


def test_a_run_stopped_mid_epoch_in_its_second_epoch_resumes_bit_for_bit(
    tmp_path, tiny_base_dir, glue_hub_dir, trained, capsys
):
    # 32 rows in batches of 8: 4 steps an epoch; 8 steps with a checkpoint every 2: step 6 is mid-epoch 2, whose
    # order a resumed run must draw as the uninterrupted one did.
    recipe = _recipe(tmp_path, tiny_base_dir, glue_hub_dir, runs=[{"seed": 1}], max_steps=8)
    trained.stop_at = 6
    code, _out, err = run(capsys, "finetune", recipe, "--no-soup")
    assert code == 130, err
    trained.stop_at = None
    code, _out, err = run(capsys, "finetune", recipe, "--no-soup")
    assert code == 0, err
    (resumed,) = _finished(tmp_path / "runs")
    assert json.loads((resumed / "run.json").read_text())["resumed_from"] == "checkpoint-6"

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    code, _out, err = run(
        capsys,
        "finetune",
        _recipe(fresh, tiny_base_dir, glue_hub_dir, runs=[{"seed": 1}], max_steps=8),
        "--no-soup",
    )
    assert code == 0, err
    _assert_same_runs(resumed, fresh / "runs" / resumed.name)


def test_a_run_stopped_after_training_before_its_folder_is_moved_is_not_trained_a_step_more(
    tmp_path, tiny_base_dir, glue_hub_dir, trained, capsys, monkeypatch
):
    import hfsoup.finetune.train as train_module

    real_card = train_module.write_run_card

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    recipe = _recipe(tmp_path, tiny_base_dir, glue_hub_dir, runs=[{"seed": 1}], max_steps=6)
    monkeypatch.setattr(train_module, "write_run_card", stop)
    code, _out, _err = run(capsys, "finetune", recipe, "--no-soup")
    assert code == 130 and _finished(tmp_path / "runs") == []
    monkeypatch.setattr(train_module, "write_run_card", real_card)
    code, _out, err = run(capsys, "finetune", recipe, "--no-soup")
    assert code == 0, err
    assert len(trained) == 1  # scored from the saved weights, not trained again
    (run_folder,) = _finished(tmp_path / "runs")
    assert json.loads((run_folder / "run.json").read_text())["steps"] == 6

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    code, _out, err = run(
        capsys,
        "finetune",
        _recipe(fresh, tiny_base_dir, glue_hub_dir, runs=[{"seed": 1}], max_steps=6),
        "--no-soup",
    )
    assert code == 0, err
    _assert_same_runs(run_folder, fresh / "runs" / run_folder.name)


def test_a_soup_of_runs_with_their_own_heads_is_refused_in_the_sweep_s_terms(tmp_path, tiny_base_dir, capsys):
    from dataset_files import nli_jsonl

    # Three labels: the 2-label tiny base lacks the head, so each run draws its own 3 x 32 one.
    data = str(nli_jsonl(tmp_path, rows=48))
    recipe = _recipe(
        tmp_path, tiny_base_dir, data, head_seed=None, head_init="random", task=None,
        text_columns=["premise", "hypothesis"], train_split="train",
    )  # fmt: skip
    line = user_error(capsys, "finetune", recipe)
    assert "each run drew its own head" in line and "drop head_seed: null" in line
    assert "soup: {method: greedy}" in line and "--allow-independent-heads" in line
    code, out, err = run(capsys, "finetune", recipe, "--allow-independent-heads")
    assert code == 0, err
    assert "Soup written to" in out


def test_every_output_of_a_sweep_is_checked_before_any_work(tmp_path, tiny_base_dir, glue_hub_dir, capsys):
    finished = tmp_path / "other" / "seed1-0123456789"
    finished.mkdir(parents=True)
    (finished / "run.json").write_text("{}")
    (tmp_path / "afile").write_text("x")
    recipe = _recipe(tmp_path, tiny_base_dir, glue_hub_dir)
    cases = {
        "inside the finished run": ["--output-dir", finished / "runs"],
        "is not a writable folder": ["--output-dir", tmp_path / "afile" / "runs"],
        "is a file; choose a folder": ["--output-dir", tmp_path / "afile"],
    }
    for fragment, flags in cases.items():
        assert fragment in user_error(capsys, "finetune", recipe, *flags)
    soup_inside = _recipe(tmp_path, tiny_base_dir, glue_hub_dir)
    data = yaml.safe_load(soup_inside.read_text())
    data["soup"]["output_dir"] = str(finished / "soup")
    soup_inside.write_text(yaml.safe_dump(data))
    assert "the soup's folder" in user_error(capsys, "finetune", soup_inside)
    assert not (tmp_path / "runs").exists() and not (finished / "soup").exists()


def test_runs_at_several_rates_are_souped_rate_by_rate_and_the_best_on_selection_is_kept(
    tmp_path, tiny_base_dir, glue_hub_dir, capsys
):
    runs = [
        {"seed": 1, "learning_rate": 1e-3},
        {"seed": 2, "learning_rate": 1e-3},
        {"seed": 1, "learning_rate": 5e-3},
    ]
    code, out, err = run(capsys, "finetune", _recipe(tmp_path, tiny_base_dir, glue_hub_dir, runs=runs))
    assert code == 0, err
    rates = yaml.safe_load((tmp_path / "soup" / "soup.yaml").read_text())["rates"]
    assert rates["mixed"] is False and rates["rates"] == [0.001, 0.005]
    chosen = max(rates["selection"], key=lambda rate: (rates["selection"][rate], -float(rate)))
    assert rates["chosen"] == float(chosen)
    ingredients = yaml.safe_load((tmp_path / "soup" / "soup.yaml").read_text())["ingredients"]
    assert len(ingredients) == (
        4 if rates["chosen"] == 0.001 else 2
    )  # the chosen rate's runs only, raw and EMA
    lr = "lr0.001-" if rates["chosen"] == 0.001 else "lr0.005-"
    assert all(lr in ingredient["reference"] for ingredient in ingredients)
    assert "each rate's runs were souped alone" in out
    assert "## Learning rates" in (tmp_path / "soup" / "README.md").read_text()

    (tmp_path / "mixed").mkdir()
    mixed = _recipe(tmp_path / "mixed", tiny_base_dir, glue_hub_dir, runs=runs, mix_rates=True)
    code, out, err = run(capsys, "finetune", mixed, "--output-dir", tmp_path / "runs")
    assert code == 0, err
    assert "souped together (`mix_rates: true`)" in out
    soup = yaml.safe_load((tmp_path / "mixed" / "soup" / "soup.yaml").read_text())
    assert soup["rates"] == {"mixed": True, "rates": [0.001, 0.005]} and len(soup["ingredients"]) == 6


def test_branched_runs_share_the_trunk_s_steps_then_differ_and_resume_bit_for_bit(
    tmp_path, tiny_base_dir, glue_hub_dir, trained, capsys
):
    # 8 steps; the runs share the first 4 (branch_at 0.5), trained once by the trunk.
    def recipe(folder):
        folder.mkdir(exist_ok=True)
        return _recipe(folder, tiny_base_dir, glue_hub_dir, max_steps=8, branch_at=0.5)

    runs = tmp_path / "runs"
    trained.stop_at = 6  # the second branch to train stops after its own checkpoint of step 6
    code, _out, _err = run(capsys, "finetune", recipe(tmp_path), "--no-soup")
    assert code == 130
    trained.stop_at = None
    code, _out, err = run(capsys, "finetune", recipe(tmp_path), "--no-soup")
    assert code == 0, err
    (trunk,) = runs.glob("trunk-*")
    assert json.loads((trunk / "run.json").read_text())["steps"] == 4 and (trunk / "checkpoint-4").is_dir()
    assert sum(name.startswith(".trunk-") for name in trained) == 1  # the trunk trained once
    finished = [p for p in _finished(runs) if not p.name.startswith("trunk-")]
    records = [json.loads((p / "run.json").read_text()) for p in finished]
    assert [r["branched_from"] for r in records] == [f"{trunk.name}/checkpoint-4"] * 2
    assert all(r["steps"] == 8 for r in records)
    assert sorted(r["resumed_from"] for r in records) == [
        "checkpoint-4",
        "checkpoint-6",
    ]  # a branch, a resume
    first, second = (_weights(p / "raw") for p in finished)
    assert not all(torch.equal(first[n], second[n]) for n in first)  # each branch went its own way
    assert not list(runs.glob(".*"))

    # The trunk's 4 steps are the first run's: an unbranched seed-1 run stopped at step 4 holds the same weights.
    plain = tmp_path / "plain"
    plain.mkdir()
    trained.stop_at = 4
    code, _out, _err = run(
        capsys,
        "finetune",
        _recipe(plain, tiny_base_dir, glue_hub_dir, runs=[{"seed": 1}], max_steps=8),
        "--no-soup",
    )
    assert code == 130
    trained.stop_at = None
    (stopped,) = (plain / "runs").glob(".seed1-*.partial/trainer/checkpoint-4")
    shared, alone = _weights(trunk / "checkpoint-4"), _weights(stopped)
    assert all(torch.equal(shared[n], alone[n]) for n in shared)

    # Uninterrupted, the same sweep ends bit for bit where the stopped and resumed one did.
    fresh = tmp_path / "fresh"
    code, _out, err = run(capsys, "finetune", recipe(fresh), "--no-soup")
    assert code == 0, err
    for folder in finished:
        _assert_same_runs(folder, fresh / "runs" / folder.name)
