"""`bias_correction=True`: the closed form, an exact first step, an exact resume, and the Trainer callback."""

from __future__ import annotations

import pytest
import torch
from test_callback import Recorder, make_args, make_trainer
from tiny_models import tiny_bert
from torch import nn

from hfsoup import EmaTrainerCallback, ModelEma
from hfsoup.ema.callback import EMA_STATE_NAME
from hfsoup.ema.state import read_state


class Net(nn.Module):
    def __init__(self, dtype=torch.float32):
        super().__init__()
        self.linear = nn.Linear(8, 4, dtype=dtype)
        self.norm = nn.BatchNorm1d(4, dtype=dtype)


def random_weights(model: nn.Module, steps: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """`steps` sets of random parameters for `model`, each independent of the last."""
    generator = torch.Generator().manual_seed(seed)
    return [
        {name: torch.randn(p.shape, generator=generator).to(p.dtype) for name, p in model.named_parameters()}
        for _ in range(steps)
    ]


@torch.no_grad()
def set_weights(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    for name, param in model.named_parameters():
        param.copy_(weights[name])


def closed_form(history: list[dict[str, torch.Tensor]], decay: float) -> dict[str, torch.Tensor]:
    """sum_i (1 - d) d^(T - i) w_i / (1 - d^T) over w_1..w_T, in float64."""
    count = len(history)
    total = {name: torch.zeros(value.shape, dtype=torch.float64) for name, value in history[0].items()}
    for i, weights in enumerate(history, start=1):
        for name, value in weights.items():
            total[name] += (1 - decay) * decay ** (count - i) * value.double()
    return {name: value / (1 - decay**count) for name, value in total.items()}


def assert_close_to(model_or_shadow, expected: dict[str, torch.Tensor]) -> None:
    tensors = (
        model_or_shadow if isinstance(model_or_shadow, dict) else dict(model_or_shadow.named_parameters())
    )
    for name, value in expected.items():
        torch.testing.assert_close(tensors[name].detach().double(), value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("decay", [0.5, 0.9, 0.999])
def test_corrected_average_equals_its_closed_form_at_every_step(decay):
    model = Net()
    ema = ModelEma(model, decay=decay, bias_correction=True)
    history = random_weights(model, 40)
    for step, weights in enumerate(history, start=1):
        set_weights(model, weights)
        ema.update(model, step)
        assert_close_to(ema.shadow, closed_form(history[:step], decay))
    assert ema.num_updates == 40
    # Every reader of the average gets the corrected weights.
    expected = closed_form(history, decay)
    reader = Net()
    ema.copy_to(reader)
    assert_close_to(reader, expected)
    with ema.swapped_into(model):
        assert_close_to(model, expected)
    ema.apply_shadow(model)
    assert_close_to(model, expected)
    ema.restore(model)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("decay", [0.9, 0.999, 0.9999])
def test_step_one_average_is_step_one_weights_exactly(decay, dtype):
    model = Net(dtype=dtype)
    ema = ModelEma(model, decay=decay, bias_correction=True)
    (weights,) = random_weights(model, 1, seed=3)
    set_weights(model, weights)
    ema.update(model, 1)
    for name, value in weights.items():
        assert ema.shadow[name].dtype == torch.float32
        assert torch.equal(ema.shadow[name], value.float()), name
    reader = Net(dtype=dtype)
    ema.copy_to(reader)
    for name, param in reader.named_parameters():
        assert torch.equal(param.detach(), weights[name]), name


def test_before_the_first_update_the_average_is_the_starting_weights():
    model = Net()
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    ema = ModelEma(model, decay=0.9, bias_correction=True, start_step=2)
    reader = Net()
    ema.copy_to(reader)  # t = 0: the weights the EMA was built from
    assert_close_to(reader, {name: value.double() for name, value in start.items()})

    history = random_weights(model, 4)
    for step, weights in enumerate(history, start=1):
        set_weights(model, weights)
        ema.update(model, step)
        if step <= 2:  # before start_step: still t = 0, the average follows the weights
            assert ema.num_updates == 0
            assert all(torch.equal(ema.shadow[n], w) for n, w in weights.items())
    assert ema.num_updates == 2
    assert_close_to(ema.shadow, closed_form(history[2:], 0.9))  # steps 1 and 2 weigh nothing


def test_update_every_counts_updates_not_steps():
    model = Net()
    ema = ModelEma(model, decay=0.8, bias_correction=True, update_every=3)
    history = random_weights(model, 9)
    for step, weights in enumerate(history, start=1):
        set_weights(model, weights)
        ema.update(model, step)
    assert ema.num_updates == 3
    assert_close_to(ema.shadow, closed_form([history[2], history[5], history[8]], 0.8))


def test_buffers_integer_copied_float_averaged():
    model = Net()
    ema = ModelEma(model, decay=0.9, bias_correction=True)
    model.train()
    batches = [torch.randn(16, 8, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    means = []
    for step, batch in enumerate(batches, start=1):
        model.norm(model.linear(batch))
        means.append({"norm.running_mean": model.norm.running_mean.clone()})
        ema.update(model, step)
    assert ema.copied["norm.num_batches_tracked"].item() == 3
    assert_close_to(ema.shadow, closed_form(means, 0.9))


def test_state_round_trips_and_resumes_exactly(tmp_path):
    model = Net()
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    history = random_weights(model, 10)
    full = ModelEma(model, decay=0.9, bias_correction=True)
    for step, weights in enumerate(history, start=1):
        set_weights(model, weights)
        full.update(model, step)
        if step == 5:
            full.save(tmp_path / "ema.safetensors")
            saved = {name: value.clone() for name, value in full.shadow.items()}

    state = read_state(tmp_path / "ema.safetensors")
    assert (state["num_updates"], state["last_step"]) == (5, 5)
    assert state["settings"]["bias_correction"] is True and state["settings"]["warmup"] is False
    assert all(torch.equal(state["tensors"][name], value) for name, value in saved.items())

    replay = Net()
    set_weights(replay, start)
    resumed = ModelEma(replay, decay=0.9, bias_correction=True)
    resumed.load(tmp_path / "ema.safetensors")
    assert (resumed.num_updates, resumed.last_step) == (5, 5)
    for step in range(6, 11):
        set_weights(replay, history[step - 1])
        resumed.update(replay, step)
    assert resumed.num_updates == 10
    for name, value in full.shadow.items():
        assert torch.equal(resumed.shadow[name], value), name


# -- the Trainer callback ------------------------------------------------------------------------------------
def evaluate_weights(tmp_path, weights: dict[str, torch.Tensor]) -> dict[str, float]:
    model = tiny_bert(seed=0)
    model.load_state_dict({name: value.float() for name, value in weights.items()}, strict=False)
    return make_trainer(make_args(tmp_path / "probe"), [], model=model).evaluate()


def test_callback_evaluates_the_closed_form_corrected_average(tmp_path):
    model, recorder = tiny_bert(seed=0), Recorder()
    callback = EmaTrainerCallback(decay=0.9, bias_correction=True)
    args = make_args(
        tmp_path, max_steps=8, eval_strategy="steps", eval_steps=4, save_strategy="steps", save_steps=4
    )
    trainer = make_trainer(args, [callback, recorder], model=model)
    trainer.train()

    assert callback.ema.settings.bias_correction and not callback.ema.settings.warmup
    evals = {entry["step"]: entry for entry in trainer.state.log_history if "eval_loss" in entry}
    assert sorted(evals) == [4, 8]
    for step in (4, 8):
        expected = closed_form([recorder.weights[s] for s in range(1, step + 1)], 0.9)
        on_closed_form = evaluate_weights(tmp_path, expected)
        assert evals[step]["eval_loss"] == pytest.approx(on_closed_form["eval_loss"], rel=1e-5)
        assert evals[step]["eval_accuracy"] == on_closed_form["eval_accuracy"]
        on_raw = evaluate_weights(tmp_path, recorder.weights[step])
        assert on_raw["eval_loss"] != pytest.approx(on_closed_form["eval_loss"], rel=1e-5)
        state = read_state(tmp_path / f"checkpoint-{step}" / EMA_STATE_NAME)
        assert state["num_updates"] == step and state["settings"]["bias_correction"] is True
    # Load at end: the model holds the corrected average of all 8 steps.
    assert_close_to(model, closed_form([recorder.weights[s] for s in range(1, 9)], 0.9))
