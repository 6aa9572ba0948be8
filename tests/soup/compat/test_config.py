"""Tests of hfsoup.soup.compat.config: custom code is refused unless allowed (and never run); config fields."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hfsoup.errors import IncompatibleIngredientsError
from hfsoup.soup import load_ingredient, load_ingredients
from hfsoup.soup.compat import check_compatibility, ensure_compatible

CODE = "from pathlib import Path\nPath({marker!r}).write_text('ran')\n"


def _with_config(source: Path, folder: Path, **fields) -> str:
    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **fields}))
    return str(folder)


@pytest.fixture(params=["auto_map", "trust_remote_code"])
def custom(request, tiny_ingredient_dirs, tmp_path) -> tuple[str, Path]:
    """A fine-tune whose config asks for code shipped with it (which writes `marker` if it ever runs)."""
    marker = tmp_path / "code-ran"
    if request.param == "auto_map":
        fields = {
            "auto_map": {
                "AutoConfig": "configuration_evil.EvilConfig",
                "AutoModelForSequenceClassification": "modeling_evil.EvilModel",
            }
        }
    else:
        fields = {"trust_remote_code": True}
    folder = _with_config(tiny_ingredient_dirs[1], tmp_path / "custom", **fields)
    for module in ("configuration_evil.py", "modeling_evil.py"):
        (Path(folder) / module).write_text(CODE.format(marker=str(marker)))
    return folder, marker


def test_custom_code_is_refused_by_default(tiny_ingredient_dirs, custom):
    folder, marker = custom
    ingredients = load_ingredients([str(tiny_ingredient_dirs[0]), folder])

    report = check_compatibility(ingredients, check_values=False)

    assert not report.ok()
    assert report.errors == [
        "custom declares custom code (auto_map / trust_remote_code in config.json); hfsoup never runs or copies "
        "it, so the soup only loads where that code is installed: pass --allow-custom-code to average them anyway."
    ]
    with pytest.raises(IncompatibleIngredientsError, match="custom declares custom code"):
        ensure_compatible(ingredients, check_values=False)
    assert not marker.exists()


def test_custom_code_is_a_warning_when_allowed_and_is_never_run(tiny_ingredient_dirs, custom):
    folder, marker = custom
    ingredients = load_ingredients([str(tiny_ingredient_dirs[0]), folder])

    report = check_compatibility(ingredients, allow_custom_code=True)
    tensors = dict(ingredients[1].tensors())

    assert report.ok(), report.to_text()
    assert any(
        w.startswith("custom declares custom code") and "--allow-custom-code" not in w
        for w in report.warnings
    )
    assert tensors and ingredients[1].config.model_type == "bert"
    assert not marker.exists()


def test_custom_code_in_the_base_counts_too(tiny_ingredient_dirs, custom):
    folder, _ = custom

    report = check_compatibility(
        load_ingredients([str(d) for d in tiny_ingredient_dirs[:2]]),
        base=load_ingredient(folder),
        check_values=False,
    )

    assert any(error.startswith("custom declares custom code") for error in report.errors), report.errors


def test_several_ingredients_with_custom_code_are_listed_in_one_line(tiny_ingredient_dirs, tmp_path):
    folders = [
        _with_config(tiny_ingredient_dirs[i], tmp_path / f"custom{i}", auto_map={"AutoModel": "m.M"})
        for i in (0, 1)
    ]

    report = check_compatibility(load_ingredients(folders), check_values=False)

    assert next(e for e in report.errors if "custom code" in e).startswith(
        "custom0, custom1 declare custom code"
    )


def test_training_only_fields_are_notes_and_others_errors(tiny_ingredient_dirs, tmp_path):
    dropout = _with_config(tiny_ingredient_dirs[1], tmp_path / "dropout", hidden_dropout_prob=0.3)
    activation = _with_config(tiny_ingredient_dirs[2], tmp_path / "activation", hidden_act="relu")

    report = check_compatibility(
        load_ingredients([str(tiny_ingredient_dirs[0]), dropout, activation]), check_values=False
    )

    assert any(
        n.startswith("config hidden_dropout_prob differs") and "only in training" in n for n in report.notes
    )
    assert report.errors == [
        f'config hidden_act differs: "gelu" ({tiny_ingredient_dirs[0].name}, dropout) vs "relu" (activation); '
        "it changes the model's computation."
    ]
