"""benchmarks/anytime_ema.py: its scoring at each third of a run, and its table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

from hfsoup.ema import EmaTrainerCallback
from hfsoup.eval import get_task, load_split
from hfsoup.eval.scoring import Scorer

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "anytime_ema.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("anytime_ema", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["anytime_ema"] = module
    spec.loader.exec_module(module)
    return module


def test_each_third_scores_the_raw_weights_and_each_ema(bench, tmp_path, tiny_base_dir, glue_hub_dir):
    task = get_task("mrpc")
    tokenizer = AutoTokenizer.from_pretrained(tiny_base_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_base_dir)
    rows = load_split(task, "train[:48]", dataset=str(glue_hub_dir))
    train = rows.map(
        lambda r: tokenizer(r["sentence1"], r["sentence2"], truncation=True, max_length=32), batched=True
    ).rename_column("label", "labels")
    train = train.select_columns(["input_ids", "token_type_ids", "attention_mask", "labels"])
    emas = {"EMA 0.9": EmaTrainerCallback(decay=0.9, load_ema_at_end=False)}
    scorer = Scorer(model, tokenizer, task, load_split(task, "validation[:32]", dataset=str(glue_hub_dir)))
    thirds = bench._Thirds(scorer, emas)
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=6, per_device_train_batch_size=8, learning_rate=1e-2,
        lr_scheduler_type="constant", save_strategy="no", report_to="none", disable_tqdm=True,
    )  # fmt: skip
    Trainer(model=model, args=args, train_dataset=train, processing_class=tokenizer,
            callbacks=[*emas.values(), thirds]).train()  # fmt: skip
    assert [thirds.scores[f"{k}/3"]["step"] for k in (1, 2, 3)] == [2, 4, 6]
    raw_at_end = scorer()[0]["score"]  # the model holds the raw weights (load_ema_at_end=False)
    assert thirds.scores["3/3"]["raw"] == pytest.approx(raw_at_end)
    with emas["EMA 0.9"].ema.swapped_into(model):
        assert thirds.scores["3/3"]["EMA 0.9"] == pytest.approx(scorer()[0]["score"])


def test_table_gives_mean_and_spread_over_seeds_per_third(bench):
    def result(base: float) -> dict:
        points = {
            f"{k}/3": {"step": k, "raw": base + k, "EMA 0.99": base, "EMA 0.998": base} for k in (1, 2, 3)
        }
        return {"seconds": 1.0, "points": points}

    results = {
        ("mrpc", schedule, seed): result(seed / 10) for schedule in ("linear", "constant") for seed in (1, 2)
    }
    lines = bench.table(results)
    raw = next(line for line in lines if line.startswith("| linear rate, raw |"))
    # seeds 1 and 2: 1.1 and 1.2 at the first third (mean 1.15, standard deviation 0.0707)
    assert raw.split(" | ")[1] == "1.1500 ± 0.0707"
    assert raw.split(" | ")[3].rstrip(" |") == "3.1500 ± 0.0707"
    assert sum(line.startswith("| constant rate,") for line in lines) == 3
