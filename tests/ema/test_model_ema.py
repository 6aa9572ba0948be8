import json

import pytest
import torch
from safetensors.torch import save_file
from tiny_models import tiny_bert
from torch import nn

from hfsoup import InvalidSettingError, ModelEma


class Net(nn.Module):
    def __init__(self, dtype=torch.float32):
        super().__init__()
        self.linear = nn.Linear(8, 4, dtype=dtype)
        self.norm = nn.BatchNorm1d(4, dtype=dtype)

    def forward(self, x):
        return self.norm(self.linear(x))


def reference_decay(k, decay, warmup, gamma=1.0, power=2 / 3, min_decay=0.0):
    """Independent float64 warm-up schedule, as timm's ModelEmaV3: the update after k earlier updates."""
    if not warmup:
        return decay
    if k == 0:  # the first warmed-up update copies the weights, whatever min_decay
        return 0.0
    return min(decay, max(min_decay, 1.0 - (1.0 + k / gamma) ** (-power)))


def train_steps(model, steps, seed=0):
    """Random weight changes standing in for optimizer steps; yields after each one."""
    generator = torch.Generator().manual_seed(seed)
    for step in range(1, steps + 1):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=generator).to(p.dtype) * 0.1)
        yield step


@pytest.mark.parametrize("warmup", [False, True])
def test_update_matches_float64_recurrence(warmup):
    model = Net()
    ema = ModelEma(model, decay=0.9, warmup=warmup)
    reference = {n: p.detach().double().clone() for n, p in model.named_parameters()}
    for step in train_steps(model, 60):
        ema.update(model, step)
        d = reference_decay(step - 1, 0.9, warmup)
        for name, param in model.named_parameters():
            reference[name] = d * reference[name] + (1 - d) * param.detach().double()
    for name, value in reference.items():
        torch.testing.assert_close(ema.shadow[name].double(), value, rtol=1e-5, atol=1e-6)
    assert ema.num_updates == 60


def test_bf16_model_keeps_an_fp32_shadow_that_does_not_stall():
    model = Net(dtype=torch.bfloat16)
    ema = ModelEma(model, decay=0.9999, warmup=False)
    assert all(t.dtype == torch.float32 for t in ema.shadow.values())
    reference = {n: p.detach().double().clone() for n, p in model.named_parameters()}
    for step in train_steps(model, 50):
        ema.update(model, step)
        for name, param in model.named_parameters():
            reference[name] = 0.9999 * reference[name] + 0.0001 * param.detach().double()
    for name, value in reference.items():
        torch.testing.assert_close(ema.shadow[name].double(), value, rtol=1e-6, atol=1e-6)
    # A bf16 shadow would not have moved at all: each increment is below bf16's resolution.
    moved = (ema.shadow["linear.weight"] - model.linear.weight.float()).abs().max()
    assert moved > 0


def test_start_step_and_update_every():
    model = Net()
    ema = ModelEma(model, decay=0.5, warmup=False, start_step=3, update_every=2)
    decays = []
    for step in train_steps(model, 8):
        before = ema.shadow["linear.weight"].clone()
        ema.update(model, step)
        decays.append(ema.decay_at(step) if step > 3 else 0.0)
        if step <= 3:  # before the start the shadow follows the weights
            torch.testing.assert_close(ema.shadow["linear.weight"], model.linear.weight.detach())
        elif (step - 3) % 2:  # off the grid: untouched
            torch.testing.assert_close(ema.shadow["linear.weight"], before)
        else:
            expected = 0.5 * before + 0.5 * model.linear.weight.detach()
            torch.testing.assert_close(ema.shadow["linear.weight"], expected)
    assert ema.num_updates == 2 and ema.last_step == 8


def test_buffers_float_averaged_integer_copied():
    model = Net()
    ema = ModelEma(model, decay=0.5, warmup=False)
    model.train()
    model(torch.randn(16, 8))
    ema.update(model, 1)
    torch.testing.assert_close(ema.shadow["norm.running_mean"], 0.5 * model.norm.running_mean)
    assert ema.copied["norm.num_batches_tracked"].item() == 1
    assert "norm.running_mean" not in ModelEma(model, include_buffers=False).shadow


def test_swap_restores_raw_weights_even_when_the_block_raises():
    model = Net()
    ema = ModelEma(model, decay=0.5, warmup=False)
    for step in train_steps(model, 3):
        ema.update(model, step)
    raw = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match="boom"), ema.swapped_into(model):
        torch.testing.assert_close(model.linear.weight.detach(), ema.shadow["linear.weight"])
        raise RuntimeError("boom")
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, raw[key], rtol=0, atol=0)


def test_save_and_load_continue_exactly(tmp_path):
    model = Net()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    full = ModelEma(model, decay=0.8)
    trajectory = {}
    for step in train_steps(model, 10):
        full.update(model, step)
        trajectory[step] = {k: v.clone() for k, v in model.state_dict().items()}
        if step == 5:
            full.save(tmp_path / "ema.safetensors")

    replay = Net()
    replay.load_state_dict(start)
    resumed = ModelEma(replay, decay=0.8)
    resumed.load(tmp_path / "ema.safetensors")
    assert (resumed.num_updates, resumed.last_step) == (5, 5)
    for step in range(6, 11):
        replay.load_state_dict(trajectory[step])
        resumed.update(replay, step)
    for name in full.shadow:
        torch.testing.assert_close(resumed.shadow[name], full.shadow[name], rtol=0, atol=0)


def test_load_rejects_a_state_of_another_model(tmp_path):
    ema = ModelEma(Net())
    ema.save(tmp_path / "ema.safetensors")
    other = ModelEma(nn.Linear(3, 3))
    with pytest.raises(InvalidSettingError, match="does not match"):
        other.load(tmp_path / "ema.safetensors")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"decay": 1.0}, "decay must be in"),
        ({"decay": -0.1}, "decay must be in"),
        ({"start_step": -1}, "start_step"),
        ({"update_every": 0}, "update_every"),
        ({"warmup_gamma": 0}, "warmup_gamma"),
        ({"decay": 0.9, "min_decay": 0.95}, "min_decay"),
    ],
)
def test_bad_settings_fail_at_construction(kwargs, message):
    with pytest.raises(InvalidSettingError, match=message):
        ModelEma(Net(), **kwargs)


# -- a model of other shapes (a 1-label head against a 2-label EMA) ----------------------------------------
def snapshot(ema: ModelEma) -> tuple:
    return (
        ema.num_updates,
        ema.last_step,
        {name: t.clone() for name, t in {**ema.shadow, **ema.copied}.items()},
    )


def assert_unchanged(ema: ModelEma, before: tuple) -> None:
    assert (ema.num_updates, ema.last_step) == before[:2]
    for name, value in before[2].items():
        assert torch.equal({**ema.shadow, **ema.copied}[name], value), name


@pytest.mark.parametrize("step", [1, 2])  # the first update (a copy) and a later one
def test_update_with_other_shapes_raises_and_changes_nothing(step):
    ema = ModelEma(tiny_bert(seed=0, num_labels=2), decay=0.9)
    if step == 2:
        ema.update(tiny_bert(seed=1, num_labels=2), 1)
    before = snapshot(ema)
    with pytest.raises(InvalidSettingError, match=r"'classifier.weight'.*\(1, 32\).*\(2, 32\)") as error:
        ema.update(tiny_bert(seed=2, num_labels=1), step)
    assert "\n" not in str(error.value)
    assert_unchanged(ema, before)


def test_copy_to_and_swap_with_other_shapes_raise_and_leave_the_model_unchanged():
    ema = ModelEma(tiny_bert(seed=0, num_labels=2), decay=0.9)
    ema.update(tiny_bert(seed=1, num_labels=2), 1)
    other = tiny_bert(seed=2, num_labels=1)
    raw = {name: value.clone() for name, value in other.state_dict().items()}
    with pytest.raises(InvalidSettingError, match=r"'classifier.weight'.*\(1, 32\).*\(2, 32\)"):
        ema.copy_to(other)
    with pytest.raises(InvalidSettingError, match=r"classifier\.weight"), ema.swapped_into(other):
        pytest.fail("the block must not run with a model of other shapes")
    for name, value in other.state_dict().items():
        assert torch.equal(value, raw[name]), name


def test_load_state_of_other_shapes_names_the_tensor_and_changes_nothing(tmp_path):
    ModelEma(tiny_bert(seed=0, num_labels=2)).save(tmp_path / "ema.safetensors")
    ema = ModelEma(tiny_bert(seed=1, num_labels=1))
    before = snapshot(ema)
    with pytest.raises(InvalidSettingError, match=r"'classifier.weight'.*\(2, 32\).*\(1, 32\)"):
        ema.load(tmp_path / "ema.safetensors")
    assert_unchanged(ema, before)


# -- the first warmed-up update -------------------------------------------------------------------------
@pytest.mark.parametrize("min_decay", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("start_step", [0, 3])
def test_first_warmed_up_update_copies_the_weights_whatever_min_decay(min_decay, start_step):
    model = Net()
    ema = ModelEma(model, decay=0.9, min_decay=min_decay, start_step=start_step)
    reference = {n: p.detach().double().clone() for n, p in model.named_parameters()}
    first = start_step + 1
    for step in train_steps(model, first + 5):
        if step == first:
            assert ema.decay_at(step) == 0.0
        ema.update(model, step)
        d = 0.0 if step < first else reference_decay(step - first, 0.9, True, min_decay=min_decay)
        for name, param in model.named_parameters():
            reference[name] = d * reference[name] + (1 - d) * param.detach().double()
        if step == first:  # a copy, exactly
            assert torch.equal(ema.shadow["linear.weight"], model.linear.weight.detach())
    assert ema.num_updates == 6
    for name, value in reference.items():
        torch.testing.assert_close(ema.shadow[name].double(), value, rtol=1e-5, atol=1e-6)


def test_without_warmup_the_first_update_uses_the_decay():
    ema = ModelEma(Net(), decay=0.9, warmup=False, min_decay=0.5)
    assert ema.decay_at(1) == 0.9


# -- files that hold no readable EMA state ------------------------------------------------------------------
def write_truncated(folder):
    ModelEma(Net()).save(folder / "full.safetensors")
    data = (folder / "full.safetensors").read_bytes()
    (folder / "bad.safetensors").write_bytes(data[: len(data) // 2])


def write_garbage(folder):
    (folder / "bad.safetensors").write_bytes(b"this is not a safetensors file at all")


def write_weights_only(folder):
    save_file({"linear.weight": torch.zeros(4, 8)}, str(folder / "bad.safetensors"))


def write_bad_json(folder):
    save_file({"x": torch.zeros(1)}, str(folder / "bad.safetensors"), metadata={"hfsoup_ema": "{not json"})


def write_other_format(folder):
    metadata = {"hfsoup_ema": json.dumps({"format": "hfsoup-ema/99", "num_updates": 1})}
    save_file({"x": torch.zeros(1)}, str(folder / "bad.safetensors"), metadata=metadata)


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (None, "does not exist"),
        (write_truncated, "not a readable safetensors file"),
        (write_garbage, "not a readable safetensors file"),
        (write_weights_only, "holds no hfsoup EMA state"),
        (write_bad_json, "damaged"),
        (write_other_format, "damaged"),
    ],
)
def test_load_of_a_missing_foreign_or_damaged_file_raises_one_line(tmp_path, write, message):
    if write is not None:
        write(tmp_path)
    path = tmp_path / "bad.safetensors"
    ema = ModelEma(Net())
    before = snapshot(ema)
    with pytest.raises(InvalidSettingError) as error:
        ema.load(path)
    text = str(error.value)
    assert message in text and str(path) in text and "\n" not in text
    assert "pass an ema_state.safetensors" in text  # what to do
    assert_unchanged(ema, before)


def test_a_step_that_does_not_go_forward_is_refused_and_changes_nothing():
    model = torch.nn.Linear(3, 2)
    ema = ModelEma(model, decay=0.9)
    ema.update(model, 5)
    before = {name: tensor.clone() for name, tensor in ema.shadow.items()}
    for step in (5, 4):
        with pytest.raises(InvalidSettingError, match=f"got step {step} after step 5"):
            ema.update(model, step)
    assert ema.last_step == 5 and all(torch.equal(before[n], t) for n, t in ema.shadow.items())
