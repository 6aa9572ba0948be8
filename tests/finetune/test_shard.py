"""Tests of hfsoup.finetune.shard: shards agree without talking, split evenly, and read array-job variables."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from hfsoup.errors import InvalidSettingError
from hfsoup.finetune.shard import Shard


def _runs(keys):
    return [SimpleNamespace(key=key) for key in keys]


def test_the_shards_of_a_sweep_are_disjoint_their_union_is_the_sweep_and_their_sizes_differ_by_one_at_most():
    runs = _runs(["9f", "03", "a1", "5c", "77", "e0", "1b"])
    shares = [Shard(k, 3).take(runs) for k in (1, 2, 3)]
    taken = [run.key for share in shares for run in share]
    assert sorted(taken) == sorted(run.key for run in runs) and len(set(taken)) == len(runs)
    assert sorted(len(share) for share in shares) == [2, 2, 3]
    assert [run.key for run in shares[0]] == ["03", "77", "e0"]  # by key: 03 1b 5c 77 9f a1 e0, every third


def test_a_run_s_shard_does_not_depend_on_the_order_of_the_grid():
    runs = _runs(["9f", "03", "a1", "5c"])
    assert {r.key for r in Shard(2, 2).take(runs)} == {r.key for r in Shard(2, 2).take(runs[::-1])}


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        ("2/4", {}, (2, 4)),
        ("slurm", {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "8"}, (1, 8)),
        (
            "slurm",
            {"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_COUNT": "8"},
            (8, 8),
        ),
        ("env/5", {"JOB_COMPLETION_INDEX": "4"}, (5, 5)),
    ],
)
def test_a_shard_is_read_from_its_flag_or_its_array_job(text, environ, expected):
    shard = Shard.parse(text, environ)
    assert (shard.index, shard.count) == expected


@pytest.mark.parametrize(
    ("text", "environ", "fragment"),
    [
        ("3/2", {}, "makes shard 3 of 2"),
        ("0/2", {}, "makes shard 0 of 2"),
        ("half", {}, "--shard takes K/N"),
        ("slurm", {}, "SLURM_ARRAY_TASK_ID is not set; run it in a SLURM job array"),
        ("slurm", {"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"}, "is 'x', not a number"),
        ("env/2", {}, "JOB_COMPLETION_INDEX is not set; run it in a Kubernetes indexed Job"),
        ("env/2", {"JOB_COMPLETION_INDEX": "2"}, "makes shard 3 of 2"),
    ],
)
def test_a_wrong_shard_is_one_line_that_says_what_to_pass(text, environ, fragment):
    with pytest.raises(InvalidSettingError) as caught:
        Shard.parse(text, environ)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
