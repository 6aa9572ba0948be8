"""The cluster examples under examples/ use flags hfsoup has: each hfsoup command in them parses, and a shard
read from the array job's variables is one of the job's shards."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from hfsoup.cli.parser import build_parser
from hfsoup.finetune import Shard

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _parse(argv: list[str]):
    return build_parser().parse_args(argv)  # argparse exits (SystemExit) on an unknown flag


def test_the_slurm_script_s_commands_parse_and_each_array_task_is_one_shard_of_the_array():
    script = (EXAMPLES / "slurm-sweep.sh").read_text()
    first, last = map(int, re.search(r"#SBATCH --array=(\d+)-(\d+)", script).groups())
    values = {"$RECIPE": "recipes/mrpc.yaml", "$RUNS": "runs/mrpc", "$0": "examples/slurm-sweep.sh"}
    commands = []
    for line in script.splitlines():
        line = line.strip().replace('"', "")
        for name, value in values.items():
            line = line.replace(name, value)
        if line.startswith("hfsoup ") or "--wrap=hfsoup " in line:
            commands.append(shlex.split(line.split("--wrap=")[-1].rstrip("\\")))
    assert len(commands) == 2
    train, soup = (_parse(command[1:]) for command in commands)
    assert train.command == "finetune" and train.shard == "slurm" and train.stale_after == 3600
    assert soup.soup_only and soup.output_dir == train.output_dir
    count = last - first + 1
    shards = {
        Shard.parse("slurm", {"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_MIN": str(first),
                              "SLURM_ARRAY_TASK_COUNT": str(count)}).index
        for task in range(first, last + 1)
    }  # fmt: skip
    assert shards == set(range(1, count + 1))


def test_the_kubernetes_jobs_parse_and_the_shard_count_is_the_job_s_completions():
    train, soup = yaml.safe_load_all((EXAMPLES / "kubernetes-sweep.yaml").read_text())
    (container,) = train["spec"]["template"]["spec"]["containers"]
    args = _parse(container["args"])
    completions = train["spec"]["completions"]
    assert train["spec"]["completionMode"] == "Indexed" and args.shard == f"env/{completions}"
    shards = {Shard.parse(args.shard, {"JOB_COMPLETION_INDEX": str(i)}).index for i in range(completions)}
    assert shards == set(range(1, completions + 1))
    (container,) = soup["spec"]["template"]["spec"]["containers"]
    souping = _parse(container["args"])
    assert souping.soup_only and souping.output_dir == args.output_dir and souping.recipe == args.recipe
    assert Path(args.recipe).name in {path.name for path in (EXAMPLES.parent / "recipes").glob("*.yaml")}
