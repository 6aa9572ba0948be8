"""How fast does `hfsoup` start? CPU time of `hfsoup --help` and `import hfsoup`, against `import torch`.

Each command runs in a fresh Python process; its CPU time is the process's user + system time, read with
`resource.getrusage(RUSAGE_CHILDREN)` around the run (wall time depends on the machine's other jobs, CPU time
far less). The commands run interleaved, round by round in a shuffled order, and each figure is the median
over the rounds; ratios are taken against `python -c "import torch"` in the same round (paired).

It also lists which heavy libraries each command imports, from `sys.modules` at the end of the process.

    python benchmarks/startup.py            # 15 rounds
    python benchmarks/startup.py --rounds 5
    git worktree add /tmp/hfsoup-old 5e146de && python benchmarks/startup.py --compare /tmp/hfsoup-old

`--compare CHECKOUT` also times the hfsoup commands of another checkout (put first on `PYTHONPATH`) in the
same rounds, for a before/after table measured side by side.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import resource
import statistics
import subprocess
import sys

HEAVY = ("torch", "transformers", "datasets", "evaluate")
REPORT_MODULES = (
    "import sys, atexit; atexit.register(lambda: print('MODULES', "
    "' '.join(m for m in {heavy} if m in sys.modules), file=sys.stderr))"
)

COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "import torch": ["-c", "import torch"],
    "import hfsoup": ["-c", "import hfsoup"],
    "hfsoup --help": [
        "-c",
        "import sys; sys.argv = ['hfsoup', '--help']; from hfsoup.cli import main; main()",
    ],
    "hfsoup --version": ["-c", "import sys; from hfsoup.cli import main; main(['--version'])"],
    "hfsoup merge (usage error)": [
        "-c",
        "import sys; from hfsoup.cli import main; main(['merge', '--seed', 'x'])",
    ],
}


def cpu_seconds(args: list[str], env: dict[str, str] | None = None) -> float:
    """User + system CPU seconds of one fresh `python ARGS` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        [sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, env=env
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def heavy_imports(args: list[str], env: dict[str, str] | None = None) -> list[str]:
    """The heavy libraries in `sys.modules` when the command's process ends."""
    prelude = REPORT_MODULES.format(heavy=repr(HEAVY))
    code = args[1] if args[0] == "-c" else ""
    done = subprocess.run(
        [sys.executable, "-c", f"{prelude}\n{code}"], capture_output=True, text=True, check=False, env=env
    )
    line = next((line for line in done.stderr.splitlines() if line.startswith("MODULES")), "MODULES")
    return line.split()[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--compare", help="another hfsoup checkout whose commands are timed too")
    args = parser.parse_args()

    runs = {name: (command, None) for name, command in COMMANDS.items()}
    if args.compare:
        env = {**os.environ, "PYTHONPATH": args.compare}
        runs.update(
            {f"{name} [{args.compare}]": (c, env) for name, c in COMMANDS.items() if "hfsoup" in name}
        )
    load = os.getloadavg()
    print(
        f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    times: dict[str, list[float]] = {name: [] for name in runs}
    for command, env in runs.values():  # warm the file cache
        cpu_seconds(command, env)
    for _ in range(args.rounds):
        order = list(runs)
        random.shuffle(order)
        for name in order:
            times[name].append(cpu_seconds(*runs[name]))
    torch_times = times["import torch"]
    print(f"\n{args.rounds} rounds; CPU time = user + sys of the process\n")
    print("| command | median CPU s | x `import torch` (paired median) | heavy libraries imported |")
    print("|---|---:|---:|---|")
    for name, values in times.items():
        ratio = statistics.median(v / t for v, t in zip(values, torch_times, strict=True))
        imported = ", ".join(heavy_imports(*runs[name])) or "none"
        print(f"| `{name}` | {statistics.median(values):.3f} | {ratio:.2f} | {imported} |")


if __name__ == "__main__":
    main()
