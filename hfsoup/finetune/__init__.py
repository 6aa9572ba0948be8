"""Fine-tuning sweeps: `transformers.Trainer` runs with `EmaTrainerCallback`, resumable, keyed by settings.

A sweep ([`FinetuneRecipe`]) is one run per point of its grid. Every run starts from one shared
initialization (`start.py`), trains with dynamic padding and length grouping, writes a checkpoint with its EMA
at each epoch so a stopped run resumes exactly (`train.py`), and ends as a folder `<run>-<key>/` of model
folders (`raw/`, `ema/`, `epoch-<k>/`) that are ingredients, each with a card and its validation scores, plus
a `run.json`. Runs are keyed by their settings (`plan.py`): a finished run is reused only if its settings are
the same. Runs can be pushed to the Hub as they finish (`publish.py`). `sweep.py` trains them and soups them;
processes that share a sweep's folder claim its runs with lock files (`claims.py`), and `--shard K/N` takes a
fixed share of them (`shard.py`).
"""

from .plan import RunPlan, plan_runs, run_key
from .shard import Shard
from .sweep import Sweep, finetune_ingredients, finetune_sweep, run_finetune

__all__ = [
    "RunPlan",
    "Shard",
    "Sweep",
    "finetune_ingredients",
    "finetune_sweep",
    "plan_runs",
    "run_finetune",
    "run_key",
]
