"""Tests of hfsoup.finetune.claims: a claimed name is never worked on twice; dead claims are taken over."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time

from hfsoup.eval.processes import Processes
from hfsoup.finetune.claims import Claim, Claims, Holder, try_claim


def _dead_pid() -> int:
    """The number of a process that has exited (and been reaped)."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


def _lock(path, **fields) -> None:
    holder = dict(
        host=socket.gethostname(), pid=os.getpid(), since=time.time(), token="t", process_start=None
    )
    path.write_text(json.dumps({**holder, **fields}))


def test_a_claim_names_its_holder_and_a_second_claim_gets_the_holder(tmp_path):
    lock = tmp_path / "run.lock"
    with try_claim(lock) as claim:
        assert isinstance(claim, Claim)
        written = json.loads(lock.read_text())
        assert written["host"] == socket.gethostname() and written["pid"] == os.getpid()
        other = try_claim(lock)
        assert isinstance(other, Holder) and other.token == written["token"]
        assert f"pid {os.getpid()}" in other.describe()
    assert not lock.exists()  # released


def test_a_claim_of_a_dead_process_on_this_host_is_taken_over_with_a_warning(tmp_path, caplog):
    lock = tmp_path / "run.lock"
    pid = _dead_pid()
    _lock(lock, pid=pid)
    with caplog.at_level(logging.WARNING, logger="hfsoup"):
        claim = try_claim(lock)
    assert isinstance(claim, Claim)
    assert f"process {pid} is gone" in caplog.text and "Taking over run.lock" in caplog.text
    claim.release()


def test_a_claim_whose_number_was_reused_by_a_newer_process_is_dead(tmp_path):
    lock = tmp_path / "run.lock"
    _lock(lock, pid=os.getpid(), process_start="1")  # this process is alive, but did not start at tick 1
    claim = try_claim(lock)
    assert isinstance(claim, Claim)
    claim.release()


def test_a_live_claim_of_another_host_is_kept_until_it_is_stale(tmp_path, caplog):
    lock = tmp_path / "run.lock"
    _lock(lock, host="elsewhere", pid=1)
    assert isinstance(try_claim(lock, stale_after=60), Holder)
    old = time.time() - 120
    os.utime(lock, (old, old))
    with caplog.at_level(logging.WARNING, logger="hfsoup"):
        claim = try_claim(lock, stale_after=60)
    assert isinstance(claim, Claim) and "not touched for 120 s (--stale-after 60)" in caplog.text
    claim.release()


def test_a_held_claim_is_kept_fresh_by_its_heartbeat(tmp_path):
    lock = tmp_path / "run.lock"
    claim = try_claim(lock, stale_after=0.4)  # touched every 0.1 s
    old = time.time() - 100
    os.utime(lock, (old, old))
    time.sleep(0.3)
    assert time.time() - lock.stat().st_mtime < 1
    claim.release()


def test_of_many_threads_that_find_one_dead_claim_exactly_one_takes_it(tmp_path):
    lock = tmp_path / "run.lock"
    _lock(lock, pid=_dead_pid())
    results, barrier = [], threading.Barrier(8)

    def attempt():
        barrier.wait()
        results.append(try_claim(lock))

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claims = [result for result in results if isinstance(result, Claim)]
    assert len(claims) == 1
    claims[0].release()


class _Plan:
    def __init__(self, folder, name):
        self.folder, self.name = folder / name, name

    @property
    def done(self):
        return self.folder.is_dir()


def test_claims_yield_each_free_run_once_and_skip_or_wait_for_claimed_ones(tmp_path, caplog):
    plans = [_Plan(tmp_path, name) for name in ("a", "b", "c")]
    plans[0].folder.mkdir()  # finished
    other = try_claim(tmp_path / "b.lock")  # another process trains b
    with caplog.at_level(logging.INFO, logger="hfsoup"):
        taken = [
            plan.name for plan in Claims(plans, tmp_path, wait=False, stale_after=60, processes=Processes())
        ]
    assert taken == ["c"] and "Run b is being trained by" in caplog.text and "leaving it" in caplog.text
    assert not (tmp_path / "c.lock").exists()  # released after its turn

    def finish_b():
        time.sleep(0.3)
        plans[1].folder.mkdir()
        other.release()

    threading.Thread(target=finish_b).start()
    began = time.perf_counter()
    waited = list(Claims(plans, tmp_path, wait=True, stale_after=0.4, processes=Processes()))
    assert [plan.name for plan in waited] == ["c"]  # c is free again (not finished here), yielded once
    assert time.perf_counter() - began >= 0.25 and plans[1].done  # it waited for b to be finished elsewhere
