"""EMA of a PEFT (LoRA) model in real Trainer runs: the adapter's EMA only, saved as an adapter folder."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from datasets import Dataset
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors import safe_open
from tiny_models import tiny_bert
from transformers import Trainer, TrainerCallback, TrainingArguments

from hfsoup import EmaTrainerCallback, ModelEma
from hfsoup.ema.callback import EMA_STATE_NAME

DECAY = 0.8
# peft 0.21 calls a transformers 5 method transformers deprecated; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


def lora_bert() -> PeftModel:
    """A tiny random BERT (seed 0) with LoRA on query and value; the classifier is trained whole."""
    config = LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"])
    return get_peft_model(tiny_bert(seed=0), config)


def toy_dataset(rows: int, seed: int) -> Dataset:
    """Random token sequences labelled by whether token 7 occurs: learnable, so the adapter moves."""
    ids = np.random.default_rng(seed).integers(5, 60, size=(rows, 12))
    labels = (ids == 7).any(axis=1).astype(np.int64)
    return Dataset.from_dict(
        {"input_ids": ids.tolist(), "attention_mask": np.ones_like(ids).tolist(), "labels": labels}
    )


TRAIN, EVAL = toy_dataset(96, 0), toy_dataset(32, 1)


def trainer_for(model, output_dir, callbacks, **overrides) -> Trainer:
    settings = dict(
        output_dir=str(output_dir),
        max_steps=8,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        learning_rate=2e-2,
        lr_scheduler_type="constant",
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    settings.update(overrides)
    args = TrainingArguments(**settings)
    return Trainer(model=model, args=args, train_dataset=TRAIN, eval_dataset=EVAL, callbacks=callbacks)


def trainable(model) -> dict[str, torch.Tensor]:
    return {name: param.detach().clone() for name, param in model.named_parameters() if param.requires_grad}


class Recorder(TrainerCallback):
    """Test probe: the trainable weights after each optimizer step."""

    def __init__(self):
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.weights[state.global_step] = trainable(model)


def closed_form_ema(start: dict[str, torch.Tensor], recorder: Recorder, decay: float) -> dict:
    """A constant-decay EMA after t steps, in float64: `d^t x_0 + sum_i (1 - d) d^(t - i) x_i`."""
    steps = sorted(recorder.weights)
    t = len(steps)
    return {
        name: decay**t * value.double()
        + sum(
            (1 - decay) * decay ** (t - i) * recorder.weights[step][name].double()
            for i, step in enumerate(steps, 1)
        )
        for name, value in start.items()
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A LoRA BERT trained 8 steps with the EMA (constant decay), evaluated at step 8 on EMA and raw weights."""
    folder = tmp_path_factory.mktemp("lora")
    model, recorder = lora_bert(), Recorder()
    start = trainable(model)
    callback = EmaTrainerCallback(decay=DECAY, warmup=False, report_raw_metrics=True)
    trainer = trainer_for(model, folder, [callback, recorder], eval_strategy="steps", eval_steps=8)
    trainer.train()
    return trainer, callback, recorder, start


def test_the_shadow_holds_only_the_adapter_and_the_head_in_fp32(trained):
    trainer, callback, _, start = trained
    shadow = callback.ema.shadow
    assert set(shadow) == set(start)
    assert all(".lora_" in name or ".modules_to_save." in name for name in shadow)
    assert any("classifier.modules_to_save" in name for name in shadow)
    trainable_count = sum(value.numel() for value in start.values())
    all_count = sum(param.numel() for param in trainer.model.parameters())
    assert sum(t.numel() * t.element_size() for t in shadow.values()) == 4 * trainable_count
    assert trainable_count < all_count / 10  # the adapter's EMA, not a second base model


def test_the_adapter_ema_equals_the_closed_form(trained):
    _, callback, recorder, start = trained
    assert sorted(recorder.weights) == list(range(1, 9)) and callback.ema.num_updates == 8
    for name, value in closed_form_ema(start, recorder, DECAY).items():
        torch.testing.assert_close(callback.ema.shadow[name].double(), value, rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(start[name], recorder.weights[8][name]) for name in start)  # it trained


def test_evaluation_reports_the_ema_weights(trained):
    trainer, callback, recorder, _ = trained
    [logged] = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    model = trainer.model  # holds the EMA weights now (load_ema_at_end)
    for name, param in model.named_parameters():
        if name in callback.ema.shadow:
            torch.testing.assert_close(param.detach(), callback.ema.shadow[name])
    on_ema = trainer.evaluate()  # the callback is unhooked after training: a plain evaluation
    assert logged["eval_loss"] == pytest.approx(on_ema["eval_loss"], rel=1e-5)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in recorder.weights[8]:
                param.copy_(recorder.weights[8][name])
    on_raw = trainer.evaluate()
    callback.ema.copy_to(model)  # back to the EMA weights, for the module's other tests
    assert logged["eval_raw_loss"] == pytest.approx(on_raw["eval_loss"], rel=1e-5)
    assert on_raw["eval_loss"] != pytest.approx(on_ema["eval_loss"], rel=1e-5)


def test_save_model_writes_an_adapter_folder_of_the_ema_that_peft_loads(trained, tmp_path):
    trainer, callback, _, _ = trained
    trainer.save_model(str(tmp_path / "ema-adapter"))
    files = {path.name for path in (tmp_path / "ema-adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= files
    assert "model.safetensors" not in files
    loaded = PeftModel.from_pretrained(tiny_bert(seed=0), tmp_path / "ema-adapter").eval()
    weights = dict(loaded.named_parameters())
    for name, value in callback.ema.shadow.items():
        torch.testing.assert_close(weights[name].detach(), value)
    batch = {
        "input_ids": torch.tensor(EVAL["input_ids"][:4]),
        "attention_mask": torch.ones(4, 12, dtype=torch.long),
    }
    trainer.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, trainer.model(**batch).logits)


def test_swapped_ema_saves_as_an_adapter_and_the_raw_adapter_stays(tmp_path):
    model = lora_bert()
    ema = ModelEma(model, decay=0.5, warmup=False)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(1.0)
    ema.update(model, 1)  # the EMA is halfway between the start and the moved weights
    raw = trainable(model)
    with ema.swapped_into(model):
        model.save_pretrained(tmp_path / "ema")
    assert all(torch.equal(param, raw[name]) for name, param in trainable(model).items())
    loaded = dict(PeftModel.from_pretrained(tiny_bert(seed=0), tmp_path / "ema").named_parameters())
    for name, value in raw.items():
        torch.testing.assert_close(loaded[name].detach(), value - 0.5)


def test_checkpoints_hold_the_adapter_and_resume_the_ema_exactly(tmp_path):
    settings = dict(max_steps=12, save_strategy="steps", save_steps=6)
    straight = EmaTrainerCallback(decay=DECAY, warmup=False)
    trainer_for(lora_bert(), tmp_path / "a", [straight], **settings).train()
    checkpoint = tmp_path / "a" / "checkpoint-6"
    assert (checkpoint / "adapter_model.safetensors").is_file() and not (
        checkpoint / "model.safetensors"
    ).exists()
    with safe_open(checkpoint / EMA_STATE_NAME, framework="pt") as state:
        names = set(state.keys())
        metadata = json.loads(state.metadata()["hfsoup_ema"])
    assert set(straight.ema.shadow) <= names
    assert all(name in straight.ema.copied for name in names - set(straight.ema.shadow))  # integer buffers
    assert metadata["settings"]["trainable_only"] is True

    resumed = EmaTrainerCallback(decay=DECAY, warmup=False)
    trainer_for(lora_bert(), tmp_path / "a", [resumed], **settings).train(
        resume_from_checkpoint=str(checkpoint)
    )
    assert (resumed.ema.num_updates, resumed.ema.last_step) == (12, 12)
    for name, value in straight.ema.shadow.items():
        torch.testing.assert_close(resumed.ema.shadow[name], value, rtol=0, atol=0)


def test_trainable_only_false_averages_the_frozen_base_too():
    model = lora_bert()
    ema = ModelEma(model, decay=0.9, trainable_only=False)
    assert set(ema.shadow) == {name for name, param in model.named_parameters()}
    assert len(ema.shadow) > len(trainable(model))


WITHOUT_PEFT = """
import sys
sys.modules["peft"] = None  # `import peft` now raises ImportError, as when it is not installed
import torch
from datasets import Dataset
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
from hfsoup import EmaTrainerCallback
torch.manual_seed(0)
config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=16, max_position_embeddings=16)
model = BertForSequenceClassification(config)
rows = Dataset.from_dict({"input_ids": [[5, 6, 7, 8]] * 8, "labels": [0, 1] * 4})
args = TrainingArguments(output_dir=sys.argv[1], max_steps=2, per_device_train_batch_size=4, report_to="none",
                         use_cpu=True, disable_tqdm=True, save_strategy="no")
callback = EmaTrainerCallback(decay=0.5)
Trainer(model=model, args=args, train_dataset=rows, callbacks=[callback]).train()
print(callback.ema.num_updates, len(callback.ema.shadow) == len(list(model.parameters())))
"""


def test_ema_trains_without_peft_installed(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_PEFT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].split() == ["2", "True"]
