"""hfsoup.ema.state: the EMA state file, written and read back exactly, and checked before it is used."""

from __future__ import annotations

import pytest
import torch

from hfsoup.ema.state import STATE_FORMAT, check_state_tensors, read_state, write_state
from hfsoup.errors import InvalidSettingError


def state(**tensors) -> dict:
    return {
        "format": STATE_FORMAT,
        "tensors": tensors,
        "num_updates": 3,
        "last_step": 7,
        "settings": {"decay": 0.99},
    }


def test_write_then_read_gives_the_same_state(tmp_path):
    written = state(a=torch.arange(6.0).reshape(2, 3), b=torch.tensor([1, 2]))
    write_state(written, tmp_path / "ema.safetensors")

    read = read_state(tmp_path / "ema.safetensors")

    assert {k: v for k, v in read.items() if k != "tensors"} == {
        k: v for k, v in written.items() if k != "tensors"
    }
    assert read["tensors"].keys() == written["tensors"].keys()
    for name, tensor in written["tensors"].items():
        assert torch.equal(read["tensors"][name], tensor)


def test_a_state_of_another_format_is_refused(tmp_path):
    write_state({**state(a=torch.zeros(1)), "format": "other/9"}, tmp_path / "ema.safetensors")
    with pytest.raises(InvalidSettingError, match="format 'other/9'"):
        read_state(tmp_path / "ema.safetensors")


def test_check_state_tensors_names_what_differs():
    expected = {"a": torch.zeros(2), "b": torch.zeros(3)}
    check_state_tensors({"a": torch.ones(2), "b": torch.ones(3)}, expected)
    with pytest.raises(InvalidSettingError, match=r"1 tensors missing \(first: \['b'\]\)"):
        check_state_tensors({"a": torch.ones(2)}, expected)
    with pytest.raises(InvalidSettingError, match=r"tensor 'b' has shape \(4,\) in the state but \(3,\)"):
        check_state_tensors({"a": torch.ones(2), "b": torch.ones(4)}, expected)
