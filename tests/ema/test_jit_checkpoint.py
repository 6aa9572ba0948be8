"""The just-in-time checkpoint transformers writes on SIGTERM (`enable_jit_checkpoint=True`) holds the EMA."""

from __future__ import annotations

import signal
import time

import pytest
import torch
from test_callback import Recorder, float64_ema, make_args, make_trainer
from tiny_models import tiny_bert
from transformers import TrainerCallback
from transformers.trainer_jit_checkpoint import JITCheckpointCallback

from hfsoup import EmaTrainerCallback, ModelEma
from hfsoup.ema.callback import EMA_STATE_NAME


class SigtermAt(TrainerCallback):
    """Sends this process a real SIGTERM during `event` of optimizer step `step`, then waits (at most 10 s)
    until the JIT checkpoint manager's timer has requested the checkpoint, so the step it lands on is fixed."""

    def __init__(self, step: int, event: str):
        self.step, self.event, self.manager = step, event, None

    def _maybe_signal(self, event: str, step: int) -> None:
        if event != self.event or step != self.step:
            return
        signal.raise_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while not self.manager.is_checkpoint_requested and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.manager.is_checkpoint_requested

    def on_step_begin(self, args, state, control, **kwargs):
        self._maybe_signal("on_step_begin", state.global_step + 1)

    def on_optimizer_step(self, args, state, control, **kwargs):
        self._maybe_signal("on_optimizer_step", state.global_step + 1)

    def on_step_end(self, args, state, control, **kwargs):
        self._maybe_signal("on_step_end", state.global_step)


@pytest.fixture
def restore_sigterm():
    """The JIT callback installs its SIGTERM handler at construction and removes it only when training ends."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


# Where the checkpoint lands when SIGTERM arrives in each event of step 6: the JIT callback checks the flag
# in on_pre_optimizer_step (still step 5), in on_step_end (step 6, before this callback's own on_step_end),
# and in the next on_step_begin (step 6).
CASES = [("on_step_begin", 5), ("on_optimizer_step", 6), ("on_step_end", 6)]


@pytest.mark.parametrize(("event", "saved_step"), CASES)
def test_jit_checkpoint_holds_the_ema_and_resumes_from_it(tmp_path, restore_sigterm, event, saved_step):
    model = tiny_bert(seed=0)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    sigterm, recorder = SigtermAt(6, event), Recorder()
    args = make_args(tmp_path, max_steps=12, enable_jit_checkpoint=True)
    trainer = make_trainer(args, [EmaTrainerCallback(decay=0.8), sigterm, recorder], model=model)
    jit = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, JITCheckpointCallback))
    sigterm.manager = jit.jit_manager
    sigterm.manager.kill_wait = 0  # request the checkpoint at once instead of after 3 s
    trainer.train()

    checkpoint = tmp_path / f"checkpoint-{saved_step}"
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint.name]  # the JIT checkpoint, only
    assert not (checkpoint / "checkpoint-is-incomplete.txt").exists()  # and it completed
    saved = ModelEma(tiny_bert(seed=0), decay=0.8)
    saved.load(checkpoint / EMA_STATE_NAME)
    assert (saved.num_updates, saved.last_step) == (saved_step, saved_step)
    recorder.weights = {step: w for step, w in recorder.weights.items() if step <= saved_step}
    for name, value in float64_ema(recorder, start, 0.8, warmup=True).items():
        torch.testing.assert_close(saved.shadow[name].double(), value, rtol=1e-5, atol=1e-6)

    # Resuming continues that EMA over the steps trained after it. (Not compared with an uninterrupted run:
    # a JIT checkpoint taken in on_pre_optimizer_step is written mid-step, after that step's batch and
    # dropout draws, so transformers itself does not replay the raw weights exactly from it.)
    resumed, after = EmaTrainerCallback(decay=0.8), Recorder()
    trainer = make_trainer(make_args(tmp_path, max_steps=12), [resumed, after])
    trainer.train(resume_from_checkpoint=str(checkpoint))
    assert sorted(after.weights) == list(range(saved_step + 1, 13))
    recorder.weights.update(after.weights)
    assert (resumed.ema.num_updates, resumed.ema.last_step) == (12, 12)
    for name, value in float64_ema(recorder, start, 0.8, warmup=True).items():
        torch.testing.assert_close(resumed.ema.shadow[name].double(), value, rtol=1e-5, atol=1e-6)
