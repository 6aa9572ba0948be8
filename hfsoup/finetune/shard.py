"""A share of a sweep's runs (`hfsoup finetune --shard K/N`), fixed by the runs' keys so every shard agrees.

The runs are sorted by their keys (hashes of their settings, see `plan.py`) and dealt out in turn: shard `K`
of `N` takes the runs at positions `K - 1, K - 1 + N, ...`. Every process computes the same plan from the same
recipe, so the shards split the sweep without talking, evenly (their sizes differ by one at most), and a
run's shard does not depend on the order of the recipe's grid. Array jobs give the index in their environment:
`--shard slurm` reads `SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_MIN` and `SLURM_ARRAY_TASK_COUNT`;
`--shard env/N` reads Kubernetes' `JOB_COMPLETION_INDEX` (from 0) for an indexed job of `N` completions.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ..errors import InvalidSettingError

__all__ = ["Shard"]

T = TypeVar("T")

_USAGE = "--shard takes K/N (this is shard K of N, 1 <= K <= N), slurm, or env/N"


@dataclass(frozen=True)
class Shard:
    """Shard `index` (from 1) of `count`, and where that was read (for the log).

    Example:

    ```python
    >>> Shard.parse("slurm", {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8"})
    Shard(index=4, count=8, source='SLURM_ARRAY_TASK_ID=3')
    ```
    """

    index: int
    count: int
    source: str = "--shard"

    @classmethod
    def parse(cls, text: str, environ: Mapping[str, str] | None = None) -> Shard:
        """The shard `--shard TEXT` names (`K/N`, `slurm` or `env/N`), reading array-job variables from `environ`.

        Raises:
            InvalidSettingError: `TEXT` is none of these, or the variables it needs are missing or wrong.
        """
        environ = os.environ if environ is None else environ
        if text == "slurm":
            task = _integer(
                environ, "SLURM_ARRAY_TASK_ID", "run it in a SLURM job array (sbatch --array=0-7)"
            )
            first = int(environ.get("SLURM_ARRAY_TASK_MIN", "0") or 0)
            count = _integer(
                environ, "SLURM_ARRAY_TASK_COUNT", "run it in a SLURM job array (sbatch --array=0-7)"
            )
            return cls._checked(task - first + 1, count, f"SLURM_ARRAY_TASK_ID={task}")
        match = re.fullmatch(r"env/(\d+)", text)
        if match:
            index = _integer(environ, "JOB_COMPLETION_INDEX", "run it in a Kubernetes indexed Job")
            return cls._checked(index + 1, int(match[1]), f"JOB_COMPLETION_INDEX={index}")
        match = re.fullmatch(r"(\d+)/(\d+)", text)
        if not match:
            raise InvalidSettingError(f"{_USAGE}; got {text!r}.")
        return cls._checked(int(match[1]), int(match[2]), f"--shard {text}")

    @classmethod
    def _checked(cls, index: int, count: int, source: str) -> Shard:
        if count < 1 or not 1 <= index <= count:
            raise InvalidSettingError(
                f"{source} makes shard {index} of {count}; {_USAGE} (a shard index past the count is an array "
                "job larger than the count it was given)."
            )
        return cls(index, count, source)

    def take(self, items: Sequence[T], key=lambda item: item.key) -> list[T]:
        """This shard's items, in their given order: every `count`-th of them sorted by `key`, from `index - 1`."""
        ordered = sorted(range(len(items)), key=lambda position: key(items[position]))
        mine = set(ordered[self.index - 1 :: self.count])
        return [item for position, item in enumerate(items) if position in mine]

    def describe(self) -> str:
        return f"shard {self.index}/{self.count} ({self.source})"


def _integer(environ: Mapping[str, str], name: str, hint: str) -> int:
    value = environ.get(name)
    if value is None or not value.strip().isdigit():
        found = "is not set" if value is None else f"is {value!r}, not a number"
        raise InvalidSettingError(f"{name} {found}; {hint}, or pass --shard K/N.")
    return int(value)
