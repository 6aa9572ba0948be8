"""hfsoup.ema.selection: the trainable parameters by default, for plain models with frozen layers too."""

from __future__ import annotations

import pytest
import torch
from tiny_models import tiny_bert
from torch import nn

from hfsoup import InvalidSettingError, ModelEma
from hfsoup.ema.selection import averaged_tensors, copied_tensors, model_tensors
from hfsoup.ema.settings import EmaSettings


def frozen_embeddings_bert() -> nn.Module:
    model = tiny_bert(seed=0)
    model.bert.embeddings.requires_grad_(False)
    return model


def move_trainable(model: nn.Module, steps: int) -> None:
    """Random changes of the trainable parameters only, as an optimizer makes."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(steps):
            for param in model.parameters():
                if param.requires_grad:
                    param.add_(torch.randn(param.shape, generator=generator) * 0.1)


def shadow_bytes(ema: ModelEma) -> int:
    return sum(tensor.numel() * tensor.element_size() for tensor in ema.shadow.values())


def test_frozen_parameters_are_left_out_by_default_and_averaged_on_request():
    model = frozen_embeddings_bert()
    frozen = {name for name, param in model.named_parameters() if not param.requires_grad}
    assert frozen and all(".embeddings." in name for name in frozen)
    names = {name for name, _ in averaged_tensors(model, EmaSettings())}
    assert names == {name for name, param in model.named_parameters() if param.requires_grad}
    every = {name for name, _ in averaged_tensors(model, EmaSettings(trainable_only=False))}
    assert every == names | frozen


def test_trainable_only_gives_the_same_ema_weights_for_less_memory():
    """A frozen parameter's EMA is itself: leaving it out changes no weight the EMA gives back."""
    model = frozen_embeddings_bert()
    lean, full = (
        ModelEma(model, decay=0.7, warmup=False),
        ModelEma(model, decay=0.7, trainable_only=False, warmup=False),
    )
    for step in range(1, 6):
        move_trainable(model, 1)
        lean.update(model, step)
        full.update(model, step)
    frozen_bytes = sum(p.numel() * 4 for p in model.parameters() if not p.requires_grad)
    assert shadow_bytes(full) - shadow_bytes(lean) == frozen_bytes
    with lean.swapped_into(model):
        through_lean = {name: param.detach().clone() for name, param in model.named_parameters()}
    with full.swapped_into(model):
        for name, param in model.named_parameters():
            assert torch.equal(param, through_lean[name]), name


def test_a_model_with_nothing_trainable_is_refused_in_one_line():
    model = tiny_bert(seed=0).requires_grad_(False)
    with pytest.raises(InvalidSettingError, match="no trainable parameter") as error:
        ModelEma(model)
    assert "\n" not in str(error.value) and "trainable_only=False" in str(error.value)
    assert len(ModelEma(model, trainable_only=False).shadow) == len(list(model.parameters()))


def test_freezing_after_construction_changes_nothing_the_ema_holds():
    model = tiny_bert(seed=0)
    ema = ModelEma(model, decay=0.5, warmup=False)
    names = set(ema.shadow)
    model.classifier.requires_grad_(False)
    move_trainable(model, 1)
    ema.update(model, 1)
    assert set(ema.shadow) == names
    torch.testing.assert_close(ema.shadow["classifier.weight"], model.classifier.weight.detach())


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.norm = nn.BatchNorm1d(2)


def test_buffers_follow_include_buffers_whatever_trainable_only():
    model = Net().requires_grad_(False)
    model.linear.weight.requires_grad_(True)
    averaged = [name for name, _ in averaged_tensors(model, EmaSettings())]
    assert averaged == ["linear.weight", "norm.running_mean", "norm.running_var"]
    assert [name for name, _ in copied_tensors(model, EmaSettings())] == ["norm.num_batches_tracked"]
    without = EmaSettings(include_buffers=False)
    assert [name for name, _ in averaged_tensors(model, without)] == ["linear.weight"]
    assert len(list(copied_tensors(model, without))) == 3


def test_model_tensors_are_found_in_order_and_checked():
    model = Net()
    expected = {"norm.running_mean": torch.zeros(2), "linear.bias": torch.zeros(2)}
    found = model_tensors(model, expected)
    assert found[0] is model.norm.running_mean and found[1] is model.linear.bias
    with pytest.raises(InvalidSettingError, match=r"1 tensors are missing \(first: \['gone'\]\)"):
        model_tensors(model, {**expected, "gone": torch.zeros(1)})
    with pytest.raises(InvalidSettingError, match=r"'linear.bias' has shape \(2,\) in the model but \(5,\)"):
        model_tensors(model, {"linear.bias": torch.zeros(5)})
