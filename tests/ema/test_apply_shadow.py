"""ModelEma.apply_shadow / restore: EMA weights in, raw weights back bitwise, misuse refused in one line."""

from __future__ import annotations

import pytest
import torch
from tiny_models import tiny_bert
from torch import nn

from hfsoup import InvalidSettingError, ModelEma


class Net(nn.Module):
    def __init__(self, dtype=torch.float32):
        super().__init__()
        self.linear = nn.Linear(8, 4, dtype=dtype)
        self.norm = nn.BatchNorm1d(4, dtype=dtype)


@torch.no_grad()
def trained(dtype=torch.float32, bias_correction=False) -> tuple[nn.Module, ModelEma]:
    """A model and an EMA of it that differ: three random steps, batch statistics included."""
    model = Net(dtype)
    ema = ModelEma(model, decay=0.7, warmup=False, bias_correction=bias_correction)
    generator = torch.Generator().manual_seed(0)
    for step in range(1, 4):
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator).to(dtype))
        model.train()
        model.norm(model.linear(torch.randn(16, 8, generator=generator).to(dtype)))
        ema.update(model, step)
    return model, ema


def raw_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in model.state_dict().items()}


def assert_bitwise(model: nn.Module, expected: dict[str, torch.Tensor]) -> None:
    for name, value in model.state_dict().items():
        assert value.dtype == expected[name].dtype and torch.equal(value, expected[name]), name


def assert_holds_ema(model: nn.Module, ema: ModelEma) -> None:
    state = model.state_dict()
    for name, value in {**ema.shadow, **ema.copied}.items():
        assert torch.equal(state[name], value.to(state[name].dtype)), name


@pytest.mark.parametrize("bias_correction", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_apply_then_restore_gives_the_raw_weights_back_bitwise(dtype, bias_correction):
    model, ema = trained(dtype, bias_correction)
    raw = raw_state(model)
    ema.apply_shadow(model)
    assert_holds_ema(model, ema)
    assert not torch.equal(model.linear.weight, raw["linear.weight"])
    ema.restore(model)
    assert_bitwise(model, raw)
    assert ema._applied is None  # the copy of the raw weights is freed
    ema.apply_shadow(model)  # and the EMA can be applied again
    ema.restore(model)
    assert_bitwise(model, raw)


def test_apply_twice_without_restore_is_refused_and_restore_still_works():
    model, ema = trained()
    raw = raw_state(model)
    ema.apply_shadow(model)
    with pytest.raises(InvalidSettingError, match=r"already applied.*call ema\.restore\(model\)") as error:
        ema.apply_shadow(model)
    assert "\n" not in str(error.value)
    assert_holds_ema(model, ema)
    ema.restore(model)
    assert_bitwise(model, raw)  # the kept copy is the raw weights, not the EMA ones


def test_restore_without_apply_is_refused():
    model, ema = trained()
    raw = raw_state(model)
    with pytest.raises(InvalidSettingError, match=r"not applied; call ema\.apply_shadow\(model\) first"):
        ema.restore(model)
    ema.apply_shadow(model)
    ema.restore(model)
    with pytest.raises(InvalidSettingError, match="not applied"):
        ema.restore(model)  # a second restore too
    assert_bitwise(model, raw)


def test_update_while_applied_is_refused_and_changes_nothing():
    model, ema = trained()
    before = {name: value.clone() for name, value in ema.shadow.items()}
    counters = (ema.num_updates, ema.last_step)
    ema.apply_shadow(model)
    with pytest.raises(InvalidSettingError, match=r"call ema\.restore\(model\) before ema\.update") as error:
        ema.update(model, 4)
    assert "\n" not in str(error.value)
    assert (ema.num_updates, ema.last_step) == counters
    assert all(torch.equal(ema.shadow[name], value) for name, value in before.items())
    ema.restore(model)
    ema.update(model, 4)
    assert ema.num_updates == counters[0] + 1


def test_update_inside_swapped_into_is_refused():
    model, ema = trained()
    raw = raw_state(model)
    with pytest.raises(InvalidSettingError, match="restore"), ema.swapped_into(model):
        ema.update(model)
    assert_bitwise(model, raw)


def test_restore_into_another_model_is_refused():
    model, ema = trained()
    other, _ = trained()
    ema.apply_shadow(model)
    with pytest.raises(InvalidSettingError, match="another model"):
        ema.restore(other)
    ema.restore(model)


def test_apply_to_a_model_of_other_shapes_changes_nothing_and_leaves_the_ema_free():
    ema = ModelEma(tiny_bert(seed=0, num_labels=2), decay=0.9)
    other = tiny_bert(seed=2, num_labels=1)
    raw = raw_state(other)
    with pytest.raises(InvalidSettingError, match=r"'classifier.weight'"):
        ema.apply_shadow(other)
    assert_bitwise(other, raw)
    with pytest.raises(InvalidSettingError, match="not applied"):
        ema.restore(other)
    model = tiny_bert(seed=1, num_labels=2)
    ema.apply_shadow(model)  # not left half-applied
    ema.restore(model)


def test_nested_swap_is_refused_and_the_outer_one_still_restores():
    model, ema = trained()
    raw = raw_state(model)
    with ema.swapped_into(model):
        with pytest.raises(InvalidSettingError, match="already applied"), ema.swapped_into(model):
            pytest.fail("the inner block must not run")
        assert_holds_ema(model, ema)
    assert_bitwise(model, raw)
