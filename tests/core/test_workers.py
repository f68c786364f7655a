"""Worker processes cannot take a run down: a worker killed at any moment costs at most its own input (no pool
error reaches the user), and workers die with their parent, even after a ``kill -9`` of the main process."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agekit.parallel import WorkerPool, ordered_map
from photos import labelled_photos

linux_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process ids from /proc (Linux)")
REPO = Path(__file__).resolve().parents[2]


def _slow_square(x: int) -> int:
    time.sleep(0.01)
    return x * x


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its exit status is left for its (dead) parent


def _wait(cond, timeout: float, step: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


@pytest.mark.parametrize("after", [1, 6, 11])
def test_a_worker_killed_between_results_costs_nothing(after):
    """The kill is seen by the pool before the next task is submitted (the race that let BrokenProcessPool out
    of ``submit``): made certain here by waiting for the pool to notice before taking the next result."""
    pool = WorkerPool(2)
    try:
        got = []
        for r in ordered_map(pool, _slow_square, range(16), ahead=4, crashed=lambda x, e: f"died on {x}"):
            got.append(r)
            if len(got) == after:
                victim = pool.pids()[0]
                os.kill(victim, signal.SIGKILL)
                assert _wait(lambda: bool(pool.executor._broken), 10), "the pool never noticed the kill"
        assert got == [i * i for i in range(16)]  # the tasks in flight were redone in a fresh pool
        assert pool.restarts == 1 and victim not in pool.pids()
    finally:
        pool.close()


def test_a_pool_whose_worker_dies_while_starting_starts_again(monkeypatch):
    from agekit import parallel

    calls = []
    real = parallel.WorkerPool._start_once

    def flaky(self):
        calls.append(1)
        real(self)
        if len(calls) == 1:
            os.kill(self.pids()[0], signal.SIGKILL)
            assert _wait(lambda: bool(self.executor._broken), 10)
            self.executor.submit(abs, 1).result()  # raises BrokenProcessPool, as a death during the fork would

    monkeypatch.setattr(parallel.WorkerPool, "_start_once", flaky)
    pool = parallel.WorkerPool(2)
    try:
        assert len(calls) == 2 and list(ordered_map(pool, abs, [-1, -2], ahead=2)) == [1, 2]
    finally:
        pool.close()


_ORPHAN_SCRIPT = textwrap.dedent("""
    import sys, time, types
    from agekit import parallel as P
    if sys.argv[1] == "watchdog-only":  # no prctl: only the parent watch of other systems
        import multiprocessing as mp, os

        def child(ppid):
            P.sys = types.SimpleNamespace(platform="other")
            P.die_with_parent(ppid)
            time.sleep(120)

        procs = [mp.get_context("fork").Process(target=child, args=(os.getpid(),)) for _ in range(2)]
        for p in procs:
            p.start()
        print(" ".join(str(p.pid) for p in procs), flush=True)
    else:
        pool = P.WorkerPool(2)
        print(" ".join(map(str, pool.pids())), flush=True)
    time.sleep(120)
""")


@linux_only
@pytest.mark.parametrize("mode", ["pool", "watchdog-only"])
def test_workers_die_with_a_killed_parent(mode):
    parent = subprocess.Popen([sys.executable, "-c", _ORPHAN_SCRIPT, mode], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        time.sleep(0.2)  # the watch threads are running
        parent.kill()
        parent.wait(10)
        assert _wait(lambda: not any(_alive(p) for p in pids), 4), [p for p in pids if _alive(p)]
    finally:
        parent.kill()


# --- the commands, end to end -------------------------------------------------------------------------------

def _agekit(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "agekit.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)


def _workers_of(proc: subprocess.Popen, n: int, timeout: float = 60) -> list[int]:
    assert _wait(lambda: len(_children(proc.pid)) >= n or proc.poll() is not None, timeout, 0.01)
    return _children(proc.pid)


@linux_only
def test_predict_survives_a_killed_worker_and_writes_every_photo_once(tmp_path):
    names = labelled_photos(tmp_path / "photos", 800)
    out = tmp_path / "out.csv"
    proc = _agekit("predict", str(tmp_path / "photos"), "--detector", "cropped", "--workers", "2",
                   "--out", str(out), "--no-progress")
    workers = _workers_of(proc, 2)
    assert len(workers) == 2, proc.communicate()
    time.sleep(0.3)  # mid-run: the workers are taking photos (800 photos take several seconds once they have started)
    assert proc.poll() is None
    os.kill(workers[0], signal.SIGKILL)  # a worker of a running pool: alive until the pool ends
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "BrokenProcessPool" not in stderr and "Traceback" not in stderr
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    sources = [Path(r["source"]).name for r in rows]
    assert sorted(sources) == sorted(names)  # every photo exactly once
    assert sum(1 for r in rows if r["error"]) <= 1  # at most the photo in the killed worker's hands


@linux_only
@pytest.mark.parametrize("command", ["predict", "prepare"])
def test_killing_the_main_process_leaves_no_worker(tmp_path, command):
    labelled_photos(tmp_path / "photos", 400)
    if command == "predict":
        args = ["predict", str(tmp_path / "photos"), "--detector", "cropped", "--workers", "2", "--no-progress",
                "--out", str(tmp_path / "out.csv")]
    else:
        args = ["prepare", "folder", "--root", str(tmp_path / "photos"), "--out", str(tmp_path / "cache"),
                "--detector", "cropped", "--workers", "2", "--views", "single_64", "--chunk-size", "8", "--quiet"]
    proc = _agekit(*args)
    try:
        workers = _workers_of(proc, 2)
        assert len(workers) == 2, proc.communicate()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert _wait(lambda: not any(_alive(p) for p in workers), 3), [p for p in workers if _alive(p)]
    finally:
        proc.kill()


def test_feeder_pipe_errors_of_a_broken_pool_stay_off_stderr(capfd):
    """The feeder thread of a pool torn down after a worker died may hit the closed pipe: not a traceback for the
    user (its tasks are redone); the same error on a healthy pool is still printed."""
    import errno

    pool = WorkerPool(2)
    try:
        on_error = pool.executor._call_queue._on_queue_feeder_error
        err = OSError(errno.EBADF, "Bad file descriptor")
        try:
            raise err
        except OSError:
            on_error(err, b"pickled task")  # a healthy pool: printed as before
        assert "Bad file descriptor" in capfd.readouterr().err
        pool.executor._broken = "A child process terminated abruptly"
        try:
            raise err
        except OSError:
            on_error(err, b"pickled task")
        assert capfd.readouterr().err == ""
        pool.executor._broken = False
    finally:
        pool.close()
