"""EmaTrainerCallback inside real transformers.Trainer runs of a tiny BERT."""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np
import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from tiny_models import tiny_bert
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments

from hfsoup import EmaTrainerCallback, InvalidSettingError, ModelEma
from hfsoup.ema.callback import EMA_STATE_NAME


def toy_dataset(rows: int, seed: int) -> Dataset:
    """Random token sequences labelled by whether token 7 occurs: learnable, so weights move."""
    generator = np.random.default_rng(seed)
    ids = generator.integers(5, 60, size=(rows, 12))
    labels = (ids == 7).any(axis=1).astype(np.int64)
    return Dataset.from_dict(
        {"input_ids": ids.tolist(), "attention_mask": np.ones_like(ids).tolist(), "labels": labels}
    )


TRAIN, EVAL = toy_dataset(192, 0), toy_dataset(48, 1)


def accuracy(prediction):
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


def make_args(output_dir, **overrides) -> TrainingArguments:
    settings = dict(
        output_dir=str(output_dir),
        max_steps=12,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        learning_rate=5e-3,
        lr_scheduler_type="constant",
        logging_steps=4,
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    settings.update(overrides)
    return TrainingArguments(**settings)


def make_trainer(args, callbacks, model=None, compute_metrics=accuracy) -> Trainer:
    return Trainer(
        model=model if model is not None else tiny_bert(seed=0),
        args=args,
        train_dataset=TRAIN,
        eval_dataset=EVAL,
        compute_metrics=compute_metrics,
        callbacks=callbacks,
    )


class Recorder(TrainerCallback):
    """Test probe: the raw weights after each optimizer step, and whether they were intact at each save."""

    def __init__(self):
        self.weights: dict[int, dict[str, torch.Tensor]] = {}
        self.intact_at_save: list[bool] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.weights[state.global_step] = {n: p.detach().clone() for n, p in model.named_parameters()}

    def on_save(self, args, state, control, model=None, **kwargs):
        raw = self.weights[state.global_step]
        self.intact_at_save.append(all(torch.equal(p, raw[n]) for n, p in model.named_parameters()))


def float64_ema(recorder: Recorder, start: dict[str, torch.Tensor], decay: float, warmup: bool):
    """The EMA recurrence computed independently in float64 from the recorded raw weights."""
    ema = {name: value.double() for name, value in start.items()}
    for k, step in enumerate(sorted(recorder.weights)):
        d = min(decay, 1 - (1 + k) ** (-2 / 3)) if warmup else decay
        for name in ema:
            ema[name] = d * ema[name] + (1 - d) * recorder.weights[step][name].double()
    return ema


@pytest.mark.parametrize(
    ("warmup", "accumulation", "dtype"),
    [
        (False, 1, torch.float32),
        (True, 1, torch.float32),
        (False, 3, torch.float32),
        (False, 1, torch.bfloat16),
    ],
)
def test_ema_follows_the_recurrence(tmp_path, warmup, accumulation, dtype):
    model = tiny_bert(seed=0).to(dtype)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    ema_callback, recorder = EmaTrainerCallback(decay=0.8, warmup=warmup, load_ema_at_end=False), Recorder()
    args = make_args(tmp_path, max_steps=15, gradient_accumulation_steps=accumulation)
    make_trainer(args, [ema_callback, recorder], model=model).train()

    assert ema_callback.ema.num_updates == 15  # once per optimizer step, not per micro-batch
    assert sorted(recorder.weights) == list(range(1, 16))
    expected = float64_ema(recorder, start, 0.8, warmup)
    for name, value in expected.items():
        shadow = ema_callback.ema.shadow[name]
        assert shadow.dtype == torch.float32
        torch.testing.assert_close(shadow.double(), value, rtol=1e-5, atol=1e-6)
    final_raw = recorder.weights[15]
    assert all(torch.equal(p, final_raw[n]) for n, p in model.named_parameters())  # load_ema_at_end=False


def test_model_holds_the_ema_weights_after_training(tmp_path):
    model = tiny_bert(seed=0)
    callback = EmaTrainerCallback(decay=0.8)
    trainer = make_trainer(make_args(tmp_path), [callback], model=model)
    trainer.train()
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.detach(), callback.ema.shadow[name])
    trainer.save_model(str(tmp_path / "final"))
    saved = load_file(tmp_path / "final" / "model.safetensors")
    torch.testing.assert_close(saved["classifier.weight"], callback.ema.shadow["classifier.weight"])


def evaluate_weights(tmp_path, weights: dict[str, torch.Tensor]) -> dict[str, float]:
    model = tiny_bert(seed=0)
    model.load_state_dict(weights, strict=False)
    return make_trainer(make_args(tmp_path / "probe"), [], model=model).evaluate()


def test_logged_eval_metrics_are_those_of_the_ema_weights(tmp_path):
    callback, recorder = EmaTrainerCallback(decay=0.9, report_raw_metrics=True), Recorder()
    args = make_args(tmp_path, eval_strategy="steps", eval_steps=4, save_strategy="steps", save_steps=4)
    trainer = make_trainer(args, [callback, recorder])
    trainer.train()

    evals = {entry["step"]: entry for entry in trainer.state.log_history if "eval_loss" in entry}
    raws = {entry["step"]: entry for entry in trainer.state.log_history if "eval_raw_loss" in entry}
    assert sorted(evals) == sorted(raws) == [4, 8, 12]
    for step in (4, 8, 12):
        checkpoint = tmp_path / f"checkpoint-{step}"
        ema = ModelEma(tiny_bert(seed=0), decay=0.9)
        ema.load(checkpoint / EMA_STATE_NAME)
        on_ema = evaluate_weights(tmp_path, ema.shadow)
        assert evals[step]["eval_loss"] == pytest.approx(on_ema["eval_loss"], rel=1e-6)
        assert evals[step]["eval_accuracy"] == on_ema["eval_accuracy"]
        on_raw = evaluate_weights(tmp_path, recorder.weights[step])
        assert raws[step]["eval_raw_loss"] == pytest.approx(on_raw["eval_loss"], rel=1e-6)
        assert on_raw["eval_loss"] != pytest.approx(on_ema["eval_loss"], rel=1e-6)
        # The checkpoint's model weights are the raw ones: resuming trains from where training was.
        saved = load_file(checkpoint / "model.safetensors")
        torch.testing.assert_close(saved["classifier.weight"], recorder.weights[step]["classifier.weight"])
    assert recorder.intact_at_save == [True, True, True]


def test_raw_weights_are_back_when_evaluation_raises(tmp_path):
    calls = []

    def failing_metrics(prediction):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("metric exploded")
        return accuracy(prediction)

    model, recorder = tiny_bert(seed=0), Recorder()
    args = make_args(tmp_path, eval_strategy="steps", eval_steps=4)
    trainer = make_trainer(
        args, [EmaTrainerCallback(decay=0.9), recorder], model=model, compute_metrics=failing_metrics
    )
    with pytest.raises(RuntimeError, match="metric exploded"):
        trainer.train()
    raw = recorder.weights[8]
    assert all(torch.equal(p, raw[n]) for n, p in model.named_parameters())


def test_load_best_model_at_end_loads_the_best_checkpoints_ema(tmp_path):
    model, callback = tiny_bert(seed=0), EmaTrainerCallback(decay=0.9)
    args = make_args(
        tmp_path,
        eval_strategy="steps",
        eval_steps=4,
        save_strategy="steps",
        save_steps=4,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
    )
    trainer = make_trainer(args, [callback], model=model)
    trainer.train()
    best = trainer.state.best_model_checkpoint
    assert best is not None
    ema = ModelEma(tiny_bert(seed=0), decay=0.9)
    ema.load(f"{best}/{EMA_STATE_NAME}")
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.detach(), ema.shadow[name])


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def test_interrupted_and_resumed_run_ends_with_the_same_ema(tmp_path):
    settings = dict(max_steps=24, save_strategy="steps", save_steps=6)
    straight = EmaTrainerCallback(decay=0.9)
    make_trainer(make_args(tmp_path / "a", **settings), [straight]).train()

    make_trainer(make_args(tmp_path / "b", **settings), [EmaTrainerCallback(decay=0.9), StopAt(12)]).train()
    resumed = EmaTrainerCallback(decay=0.9)
    make_trainer(make_args(tmp_path / "b", **settings), [resumed]).train(
        resume_from_checkpoint=str(tmp_path / "b" / "checkpoint-12")
    )
    assert (resumed.ema.num_updates, resumed.ema.last_step) == (24, 24)
    for name, value in straight.ema.shadow.items():
        torch.testing.assert_close(resumed.ema.shadow[name], value, rtol=1e-6, atol=1e-7)


def test_checkpoint_without_ema_state_warns_and_starts_fresh(tmp_path, caplog):
    settings = dict(max_steps=8, save_strategy="steps", save_steps=4)
    make_trainer(make_args(tmp_path, **settings), [EmaTrainerCallback(decay=0.9), StopAt(4)]).train()
    (tmp_path / "checkpoint-4" / EMA_STATE_NAME).unlink()
    callback = EmaTrainerCallback(decay=0.9)
    with caplog.at_level(logging.WARNING, logger="hfsoup.callback"):
        make_trainer(make_args(tmp_path, **settings), [callback]).train(
            resume_from_checkpoint=str(tmp_path / "checkpoint-4")
        )
    assert "has no EMA state" in caplog.text
    assert (callback.ema.num_updates, callback.ema.last_step) == (4, 8)


@pytest.mark.parametrize("kwargs", [{"decay": 1.0}, {"decay": -1}, {"start_step": -2}, {"update_every": 0}])
def test_bad_settings_fail_at_construction(kwargs):
    with pytest.raises(InvalidSettingError):
        EmaTrainerCallback(**kwargs)


def test_save_raw_to_keeps_the_raw_weights_beside_the_ema(tmp_path):
    model, recorder = tiny_bert(seed=0), Recorder()
    callback = EmaTrainerCallback(decay=0.8, save_raw_to=tmp_path / "raw")
    make_trainer(make_args(tmp_path / "run"), [callback, recorder], model=model).train()
    raw = load_file(tmp_path / "raw" / "model.safetensors")
    torch.testing.assert_close(
        raw["classifier.weight"], recorder.weights[12]["classifier.weight"], rtol=0, atol=0
    )
    torch.testing.assert_close(model.classifier.weight.detach(), callback.ema.shadow["classifier.weight"])
    assert not torch.equal(raw["classifier.weight"], model.classifier.weight.detach())


@pytest.mark.slow
def test_minilm_ema_follows_the_recurrence(tmp_path, minilm_dir):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(minilm_dir, num_labels=2)
    ids = np.random.default_rng(0).integers(1000, 20000, size=(64, 32))
    data = Dataset.from_dict({"input_ids": ids.tolist(), "labels": (ids[:, 0] % 2).tolist()})
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    callback, recorder = EmaTrainerCallback(decay=0.9, load_ema_at_end=False), Recorder()
    args = make_args(tmp_path, max_steps=4, learning_rate=1e-4)
    Trainer(model=model, args=args, train_dataset=data, callbacks=[callback, recorder]).train()
    expected = float64_ema(recorder, start, 0.9, warmup=True)
    for name, value in expected.items():
        torch.testing.assert_close(callback.ema.shadow[name].double(), value, rtol=1e-5, atol=1e-6)


# -- finding the Trainer and the checkpoint it resumed from -----------------------------------------------
class HelperTrainer(Trainer):
    """A Trainer whose training loop announces `on_train_begin` from a helper method, as a refactor might:
    the nearest Trainer frame then holds no `resume_from_checkpoint` local."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        begin = self.callback_handler.on_train_begin
        self.callback_handler.on_train_begin = lambda *a: self._announce_begin(begin, *a)

    def _announce_begin(self, begin, args, state, control):
        return begin(args, state, control)


def make_helper_trainer(args, callbacks) -> Trainer:
    return HelperTrainer(model=tiny_bert(seed=0), args=args, train_dataset=TRAIN, callbacks=callbacks)


RESUME_SETTINGS = dict(max_steps=16, save_strategy="steps", save_steps=4)


@pytest.fixture(scope="module")
def straight_ema(tmp_path_factory):
    """The EMA of an uninterrupted 16-step run, and the folder of a run stopped after step 8."""
    folder = tmp_path_factory.mktemp("resume")
    straight = EmaTrainerCallback(decay=0.9)
    make_helper_trainer(make_args(folder / "a", **RESUME_SETTINGS), [straight]).train()
    make_helper_trainer(
        make_args(folder / "b", **RESUME_SETTINGS), [EmaTrainerCallback(decay=0.9), StopAt(8)]
    ).train()
    return straight.ema, folder / "b"


def assert_same_ema(resumed: EmaTrainerCallback, straight: ModelEma) -> None:
    assert (resumed.ema.num_updates, resumed.ema.last_step) == (16, 16)
    for name, value in straight.shadow.items():
        torch.testing.assert_close(resumed.ema.shadow[name], value, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("how", ["path", "true", "moved"])
def test_resume_needs_no_local_variable_of_the_training_loop(tmp_path, straight_ema, how):
    straight, stopped = straight_ema
    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    resume = {"path": str(run / "checkpoint-8"), "true": True, "moved": str(tmp_path / "last-checkpoint")}[
        how
    ]
    if how == "moved":  # e.g. the `last-checkpoint` folder of a Hub repo, downloaded elsewhere
        shutil.move(run / "checkpoint-8", tmp_path / "last-checkpoint")
    resumed = EmaTrainerCallback(decay=0.9)
    make_helper_trainer(make_args(run, **RESUME_SETTINGS), [resumed]).train(resume_from_checkpoint=resume)
    assert_same_ema(resumed, straight)


def test_callback_added_after_construction_resumes_from_the_run_folder(tmp_path, straight_ema):
    straight, stopped = straight_ema
    shutil.copytree(stopped, tmp_path / "run")
    trainer = make_helper_trainer(make_args(tmp_path / "run", **RESUME_SETTINGS), [])
    resumed = EmaTrainerCallback(decay=0.9)
    trainer.add_callback(resumed)
    trainer.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-8"))
    assert_same_ema(resumed, straight)


# -- the folder the Trainer writes its checkpoints to ---------------------------------------------------------
class RunFolderTrainer(Trainer):
    """Writes its checkpoints under `output_dir/run-7`, as hyperparameter search does (`_get_output_dir`)."""

    def _get_output_dir(self, trial):
        return os.path.join(self.args.output_dir, "run-7")


def test_ema_state_goes_to_the_folder_the_trainer_wrote(tmp_path):
    callback = EmaTrainerCallback(decay=0.9)
    args = make_args(tmp_path, max_steps=8, save_strategy="steps", save_steps=4)
    RunFolderTrainer(model=tiny_bert(seed=0), args=args, train_dataset=TRAIN, callbacks=[callback]).train()
    for step in (4, 8):
        checkpoint = tmp_path / "run-7" / f"checkpoint-{step}"
        assert (checkpoint / "model.safetensors").is_file()
        ema = ModelEma(tiny_bert(seed=0), decay=0.9)
        ema.load(checkpoint / EMA_STATE_NAME)
        assert (ema.num_updates, ema.last_step) == (step, step)
    assert not (tmp_path / "checkpoint-4").exists()
    torch.testing.assert_close(ema.shadow["classifier.weight"], callback.ema.shadow["classifier.weight"])


# -- raw metrics without a second on_evaluate ---------------------------------------------------------------
class EvaluateProbe(TrainerCallback):
    def __init__(self):
        self.metrics: list[dict] = []

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.metrics.append(dict(metrics))


@pytest.fixture
def transformers_warnings():
    """Warnings logged by transformers (its library logger does not propagate to pytest's caplog)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    library = logging.getLogger("transformers")
    library.addHandler(handler)
    yield records
    library.removeHandler(handler)


def test_raw_metrics_join_the_single_evaluation_event(tmp_path, transformers_warnings):
    probe, callback = EvaluateProbe(), EmaTrainerCallback(decay=0.9, report_raw_metrics=True)
    args = make_args(
        tmp_path,
        eval_strategy="steps",
        eval_steps=4,
        save_strategy="steps",
        save_steps=4,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
    )
    stopper = EarlyStoppingCallback(early_stopping_patience=100)
    trainer = make_trainer(args, [callback, stopper, probe])
    trainer.train()

    assert not [r for r in transformers_warnings if "early stopping" in r.getMessage()]
    assert [m["eval_loss"] for m in probe.metrics] == [
        m["eval_loss"] for m in probe.metrics if "eval_raw_loss" in m
    ]
    assert len(probe.metrics) == 3  # one event per evaluation, at steps 4, 8 and 12
    logged = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    assert [entry["step"] for entry in logged] == [4, 8, 12]
    assert all("eval_raw_loss" in entry and "eval_raw_accuracy" in entry for entry in logged)
    assert not [
        entry for entry in trainer.state.log_history if "eval_raw_loss" in entry and "eval_loss" not in entry
    ]
    assert stopper.early_stopping_patience_counter <= 3  # counted once per evaluation, on the EMA's loss
    assert all(m["eval_loss"] != pytest.approx(m["eval_raw_loss"], rel=1e-6) for m in probe.metrics)


def test_raw_metrics_with_several_eval_datasets(tmp_path):
    probe, callback = EvaluateProbe(), EmaTrainerCallback(decay=0.9, report_raw_metrics=True)
    args = make_args(tmp_path, max_steps=4, eval_strategy="steps", eval_steps=4)
    trainer = make_trainer(args, [callback, probe])
    trainer.eval_dataset = {"a": EVAL, "b": EVAL.select(range(16))}
    trainer.train()
    assert [sorted(k for k in m if k.endswith("_loss")) for m in probe.metrics] == [
        ["eval_a_loss", "eval_a_raw_loss"],
        ["eval_b_loss", "eval_b_raw_loss"],
    ]
    ema = ModelEma(tiny_bert(seed=0), decay=0.9)
    ema.load_state_dict(callback.ema.state_dict())
    on_ema = evaluate_weights(tmp_path, ema.shadow)
    assert probe.metrics[0]["eval_a_loss"] == pytest.approx(on_ema["eval_loss"], rel=1e-6)
