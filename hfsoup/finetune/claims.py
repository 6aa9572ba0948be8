"""Claims on a sweep's work, so that many processes, on one machine or many over a shared folder, share it.

A process claims a run (or the soup) by creating `<name>.lock` beside it in one atomic step (`O_CREAT |
O_EXCL`, which NFS v3+, Lustre, GPFS and local filesystems honour): the file names the host, the process, when
the claim was made, and a token of its own. While the work goes on, a thread touches the file every
`heartbeat` seconds. Another process never works on a claimed name; it takes the claim over, with a warning
that says why, only when the claim is dead:

- its process is gone (same host: no process has its number, or the one that has it started later), or
- the file has not been touched for `stale_after` seconds (another host, whose processes cannot be seen: the
  hosts' clocks must agree to within much less than that).

A dead claim is removed by one process at a time (see `_break`), then claimed anew like a free one: of several
processes that find it dead at once, one gets it. What the claim protects is the caller's business: a run trains in its own `.partial` folder and
is renamed into place when finished, so a run taken over resumes from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["STALE_AFTER", "Claim", "Claims", "Holder", "try_claim"]

logger = logging.getLogger(__name__)

STALE_AFTER = 1800.0
"""Seconds after which a claim from another host that was not touched is taken over (`--stale-after`)."""


@dataclass(frozen=True)
class Holder:
    """Who holds a claim: the lock file's content."""

    host: str
    pid: int
    since: float
    token: str
    process_start: str | None = None

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"{self.host} pid {self.pid} since {when}"

    @classmethod
    def me(cls) -> Holder:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, time.time(), uuid.uuid4().hex, _process_start(pid))


class Claim:
    """A claim this process holds: released (its file removed) on `release()` or at the end of a `with` block."""

    def __init__(self, path: Path, holder: Holder, heartbeat: float):
        self.path, self.holder = path, holder
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._touch, args=(heartbeat,), daemon=True)
        self._beat.start()

    def _touch(self, every: float) -> None:
        while not self._stop.wait(every):
            if _read(self.path) != self.holder:
                logger.warning("The claim %s was taken over by another process.", self.path)
                return
            os.utime(self.path)

    def release(self) -> None:
        """Stop the heartbeat and remove the lock file, if it is still this process's."""
        self._stop.set()
        self._beat.join()
        if _read(self.path) == self.holder:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def try_claim(path: Path, *, stale_after: float = STALE_AFTER) -> Claim | Holder:
    """Claim `path` (a lock file), or say who holds it: a [`Claim`] if this process got it, else the [`Holder`].

    A dead claim (see the module's docstring) is taken over with a warning naming its holder and why.
    """
    holder = None
    for _attempt in range(50):
        me = Holder.me()
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read(path)
            reason = _dead(path, holder, stale_after)
            if reason is None:
                break
            if _break(path, holder):
                logger.warning(
                    "Taking over %s from %s: %s.",
                    path.name, holder.describe() if holder else "an unreadable claim", reason,
                )  # fmt: skip
            else:
                time.sleep(0.01)  # another process is removing it: look again
            continue
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump(asdict(me), file)
        return Claim(path, me, heartbeat=max(0.05, min(60.0, stale_after / 4)))
    return holder or Holder("unknown", 0, time.time(), "")


class Claims:
    """The runs this process trains, one at a time: iterating claims the next free run, yields it, then releases it.

    Under a launcher (several processes training each run together), the main process claims and tells the
    others which run comes next. A run that another process claimed is skipped, said once; with `wait`, the
    iteration ends only when every run is finished (polling every few seconds, taking over dead claims),
    without it, when no free run is left.

    Args:
        plans: the runs (`RunPlan`s: `name`, `done`).
        folder: where their lock files go (`<run>.lock`).
        wait: wait for the runs other processes are training.
        stale_after: see [`try_claim`].
        processes: the launcher's processes (`hfsoup.eval.processes.Processes`).
    """

    _WAIT, _DONE = -1, -2

    def __init__(self, plans: list, folder: Path, *, wait: bool, stale_after: float, processes):
        self.plans, self.folder, self.wait = plans, folder, wait
        self.stale_after, self.processes = stale_after, processes
        self.poll = max(0.05, min(5.0, stale_after / 4))
        self._said: set[tuple[str, str]] = set()
        self._yielded: set[str] = set()  # a run is yielded once: one that failed to finish is not retried

    def __iter__(self):
        if self.processes.is_main:
            self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            index, claim = self._next() if self.processes.is_main else (None, None)
            index = self.processes.broadcast(index)
            if index == self._DONE:
                return
            if index == self._WAIT:
                time.sleep(self.poll)
                continue
            try:
                yield self.plans[index]
            finally:
                if claim is not None:
                    claim.release()

    def _next(self) -> tuple[int, Claim | None]:
        """The main process's choice: a run it claimed, or `_WAIT` for runs others train, or `_DONE`."""
        busy = False
        for index, plan in enumerate(self.plans):
            if plan.done or plan.name in self._yielded:
                continue
            got = try_claim(self.folder / f"{plan.name}.lock", stale_after=self.stale_after)
            if isinstance(got, Claim):
                if not plan.done:  # finished by another process between the check and the claim
                    self._yielded.add(plan.name)
                    return index, got
                got.release()
                continue
            busy = True
            if (plan.name, got.token) not in self._said:
                self._said.add((plan.name, got.token))
                logger.info(
                    "Run %s is being trained by %s; %s.",
                    plan.name, got.describe(), "waiting for it" if self.wait else "leaving it to that process",
                )  # fmt: skip
        return (self._WAIT if busy and self.wait else self._DONE), None


def _read(path: Path) -> Holder | None:
    try:
        return Holder(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def _dead(path: Path, holder: Holder | None, stale_after: float) -> str | None:
    """Why the claim is dead, or `None` if it may be alive."""
    try:
        idle = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return "it was released"
    if idle > stale_after:
        return f"it was not touched for {idle:.0f} s (--stale-after {stale_after:g})"
    if holder is None or holder.host != socket.gethostname():
        return None
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return f"process {holder.pid} is gone"
    except PermissionError:
        pass  # a process of another user: alive
    if holder.process_start is not None and _process_start(holder.pid) != holder.process_start:
        return f"process {holder.pid} is gone (its number now belongs to a newer process)"
    return None


def _break(path: Path, holder: Holder | None) -> bool:
    """Remove a dead claim; `False` if another process is removing it, or it changed since it was read.

    Only the process holding `<name>.lock.break` (made with `O_EXCL` too) removes a claim, after reading it
    again: so of several processes that found it dead at once, one removes it, and never a claim made since.
    A break lock left by a process killed in those few milliseconds is removed after a minute.
    """
    breaker = path.with_name(f"{path.name}.break")
    try:
        os.close(os.open(breaker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        with contextlib.suppress(FileNotFoundError):
            if time.time() - breaker.stat().st_mtime > 60:
                breaker.unlink()
        return False
    try:
        if not path.exists() or _read(path) != holder:
            return False
        path.unlink()
        return True
    finally:
        breaker.unlink(missing_ok=True)


def _process_start(pid: int) -> str | None:
    """When a process started, in clock ticks since boot (Linux), to tell a reused process number apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]
