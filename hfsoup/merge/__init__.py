"""A merge in stages: check the recipe's ingredients, load them, score and soup them, write the soup.

`run_merge` takes model references only (a recipe that trains goes through `hfsoup.finetune`). The stages
live in `pipeline.py`; `scored.py` scores the candidates of a merge with a task, `plain.py` averages without
one, `precision.py` holds the dtypes of scoring and saving.
"""

from .pipeline import Merge, run_merge

__all__ = ["Merge", "run_merge"]
