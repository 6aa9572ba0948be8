"""`hfsoup merge` precisions and files: the soup is saved in its ingredients' dtype, or --output-dtype, sharded
past --max-shard-size, scored in --dtype; bad values fail in one line before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from cli_helpers import quick_mrpc, run, user_error
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer


@pytest.fixture(scope="module")
def bf16_dirs(tmp_path_factory, tiny_ingredient_dirs) -> list[Path]:
    """The tiny fine-tunes saved in bfloat16."""
    folders = []
    for source in tiny_ingredient_dirs[:2]:
        folder = tmp_path_factory.mktemp(f"bf16-{Path(source).name}")
        model = AutoModelForSequenceClassification.from_pretrained(source, dtype=torch.bfloat16)
        model.save_pretrained(folder)
        AutoTokenizer.from_pretrained(source).save_pretrained(folder)
        folders.append(folder)
    return folders


def fp32_average(folders: list[Path]) -> dict[str, torch.Tensor]:
    weights = [load_file(folder / "model.safetensors") for folder in folders]
    return {name: sum(w[name].float() for w in weights) / len(weights) for name in weights[0]}


def stored(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a soup folder's weight files, sharded or not."""
    tensors = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(path, "pt") as weights:
            tensors.update({name: weights.get_tensor(name) for name in weights.keys()})  # noqa: SIM118
    return tensors


def test_a_bf16_ingredient_set_gives_a_bf16_soup_of_the_same_size(capsys, tmp_path, bf16_dirs, glue_hub_dir):
    output = tmp_path / "soup"
    code, _, err = run(
        capsys, "merge", *quick_mrpc(bf16_dirs, glue_hub_dir), "--method", "uniform", "--output-dir", output
    )
    assert code == 0, err
    ingredient = bf16_dirs[0] / "model.safetensors"
    assert (output / "model.safetensors").stat().st_size == ingredient.stat().st_size
    soup = stored(output)
    assert {tensor.dtype for tensor in soup.values() if tensor.is_floating_point()} == {torch.bfloat16}
    for name, expected in fp32_average(bf16_dirs).items():
        torch.testing.assert_close(soup[name].float(), expected.to(torch.bfloat16).float(), msg=name)
    assert json.loads((output / "config.json").read_text())["dtype"] == "bfloat16"
    assert AutoModelForSequenceClassification.from_pretrained(output).dtype == torch.bfloat16


def test_output_dtype_and_shards_of_a_soup_scored_in_bf16(capsys, tmp_path, bf16_dirs, glue_hub_dir):
    output = tmp_path / "soup"
    flags = [
        "--method",
        "uniform",
        "--dtype",
        "bfloat16",
        "--output-dtype",
        "float32",
        "--max-shard-size",
        "40KB",
    ]
    code, _, err = run(capsys, "merge", *quick_mrpc(bf16_dirs, glue_hub_dir), *flags, "--output-dir", output)
    assert code == 0, err
    index = json.loads((output / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and sorted(p.name for p in output.glob("*.safetensors")) == shards
    assert all((output / shard).stat().st_size < 40_000 + 10_000 for shard in shards)
    soup = stored(output)
    average = fp32_average(bf16_dirs)
    assert soup.keys() == average.keys()
    for name, expected in average.items():  # averaged in float32, saved in float32: not rounded to bf16
        assert soup[name].dtype == torch.float32
        torch.testing.assert_close(soup[name], expected, atol=1e-6, rtol=1e-6, msg=name)
    loaded = AutoModelForSequenceClassification.from_pretrained(output)
    assert loaded.dtype == torch.float32
    recipe = yaml.safe_load((output / "soup.yaml").read_text())["recipe"]
    assert (recipe["dtype"], recipe["output_dtype"]) == ("bfloat16", "float32")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-shard-size", "5XB"], "--max-shard-size must be a number of bytes or a size such as 500MB"),
        (["--dtype", "float64"], "dtype must be one of float32, bfloat16, float16, got 'float64'"),
        (["--output-dtype", "int8"], "output_dtype must be one of float32, bfloat16, float16"),
        (["--device", "gpu"], "--device must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
    ],
)
def test_bad_precision_and_file_flags_fail_in_one_line(
    capsys, tmp_path, flags, message, tiny_ingredient_dirs, glue_hub_dir
):
    output = tmp_path / "soup"
    line = user_error(
        capsys, "merge", *quick_mrpc(tiny_ingredient_dirs[:2], glue_hub_dir), *flags, "--output-dir", output
    )
    assert message in line
    assert not output.exists()


def test_a_missing_gpu_fails_in_one_line(capsys, tmp_path, tiny_ingredient_dirs, glue_hub_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    line = user_error(
        capsys, "merge", *quick_mrpc(tiny_ingredient_dirs[:2], glue_hub_dir), "--device", "cuda"
    )
    assert "--device cuda: this machine's torch sees no CUDA GPU; use --device cpu" in line
