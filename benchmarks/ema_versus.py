"""Is today's `ModelEma.update` as fast as another version's? Both timed side by side, in one process.

The other version is a checkout of hfsoup (for example a `git worktree` of an older commit), imported under another
module name, so both run on the same machine, in the same process, interleaved round by round in a shuffled order.
The model is a MiniLM-sized BERT (6 layers, hidden 384, random weights), in fp32 and in bf16; the figure is the
paired median of today's time over the other's.

    git worktree add /tmp/hfsoup-before 5e146de
    python benchmarks/ema_versus.py /tmp/hfsoup-before
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification

from hfsoup import ModelEma


def other_model_ema(checkout: Path):
    """`ModelEma` of the hfsoup package in `checkout`, imported as `hfsoup_other`."""
    package = checkout / "hfsoup"
    spec = importlib.util.spec_from_file_location(
        "hfsoup_other", package / "__init__.py", submodule_search_locations=[str(package)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["hfsoup_other"] = module
    spec.loader.exec_module(module)
    return module.ModelEma


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, help="the other hfsoup checkout")
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    implementations = {"today": ModelEma, "other": other_model_ema(args.checkout)}
    config = BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
    print("| model dtype | today median ms | other median ms | today / other (paired median) |")
    print("|---|---:|---:|---:|")
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        model = BertForSequenceClassification(config).to(dtype)
        emas = {name: cls(model, 0.999) for name, cls in implementations.items()}
        times: dict[str, list[float]] = {name: [] for name in emas}
        for round_ in range(args.rounds + 5):  # 5 warm-up rounds
            order = list(emas)
            random.shuffle(order)
            for name in order:
                start = time.perf_counter()
                emas[name].update(model)
                if round_ >= 5:
                    times[name].append(time.perf_counter() - start)
        ratio = statistics.median(a / b for a, b in zip(times["today"], times["other"], strict=True))
        print(
            f"| {str(dtype).removeprefix('torch.')} | {statistics.median(times['today']) * 1e3:.2f} | "
            f"{statistics.median(times['other']) * 1e3:.2f} | {ratio:.3f} |"
        )


if __name__ == "__main__":
    main()
