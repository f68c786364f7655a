"""Worker processes for the face pipeline (dataset preparation, folder prediction).

OpenCV's thread pool survives ``fork`` only as it was configured: a forked child may run
OpenCV's parallel code, but calling ``cv2.setNumThreads`` there deadlocks once the parent's
pool has run (measured with opencv-python-headless 4.x). :class:`WorkerPool` therefore
sets the parent to one OpenCV thread just while it forks the workers (each then runs OpenCV
on one thread: one process per core already) and restores it; where ``fork`` does not exist
(or where it is unsafe: macOS) the workers are spawned and set their own thread count.
"""
from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor
from multiprocessing.connection import wait
from typing import Any

START_TRIES = 3  # a pool whose workers die while starting is started again this many times in all
CLOSE_JOIN_S = 10.0  # how long close() waits for the executor's manager thread to end
PARENT_POLL_S = 1.0  # how often a worker checks that its parent is alive (besides PR_SET_PDEATHSIG on Linux)



class LockedState:
    """An object whose ``_lock`` (a ``threading.Lock``) is left out when it is pickled to a worker process and made
    anew when it is unpickled there."""

    _lock: threading.Lock

    def __getstate__(self) -> dict:
        d = self.__dict__.copy()
        d.pop("_lock", None)
        return d

    def __setstate__(self, d: dict) -> None:
        self.__dict__.update(d)
        self._lock = threading.Lock()


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) clock ticks of all CPUs since boot from /proc/stat; busy = user + nice + system + irq +
    softirq + steal. Niced time counts: with the kernel's autogroups (one scheduling group per session, the Linux
    default) a niced job started in another session still takes its group's share of the cores."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(v) < 8:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def busy_cores(window: float = 0.2) -> float:
    """How many cores' worth of CPU other processes are using now: measured from /proc/stat over ``window``
    seconds while this process sleeps, else the 1-minute load average, else 0."""

    a = _cpu_ticks()
    if a is not None:
        time.sleep(window)
        b = _cpu_ticks()
        if b is not None and b[1] > a[1]:
            n = os.cpu_count() or 1
            return n * (b[0] - a[0]) / (b[1] - a[1])
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return 0.0


def cpu_mark() -> tuple[tuple[int, int] | None, float, float]:
    """A starting point for :func:`others_busy`: the machine's CPU ticks, this process's CPU time, the clock."""

    return _cpu_ticks(), time.process_time(), time.monotonic()


def busy_from_ticks(t0: tuple[int, int], t1: tuple[int, int], own_s: float, wall_s: float, cpus: int) -> float:
    """Cores' worth of CPU others used between two (busy, total) /proc/stat readings ``wall_s`` seconds apart on
    ``cpus`` CPUs, this process having used ``own_s`` CPU seconds meanwhile."""
    busy_s = cpus * wall_s * (t1[0] - t0[0]) / max(1, t1[1] - t0[1])
    return max(0.0, (busy_s - own_s) / wall_s)


def others_busy(mark: tuple[tuple[int, int] | None, float, float]) -> float:
    """Cores' worth of CPU the other processes used since ``mark`` (:func:`cpu_mark`): the machine's busy time
    less this process's own CPU time (its threads included; no child processes), over the time passed. Without
    /proc/stat, the 1-minute load average less this process's own share."""

    wall = time.monotonic() - mark[2]
    own = time.process_time() - mark[1]
    b = _cpu_ticks()
    if mark[0] is not None and b is not None and b[1] > mark[0][1] and wall > 0:
        return busy_from_ticks(mark[0], b, own, wall, os.cpu_count() or 1)
    try:
        return max(0.0, float(os.getloadavg()[0]) - own / max(wall, 1e-9))
    except (AttributeError, OSError):
        return 0.0


def worker_count(n_inputs: int, cores: int, busy: float, min_per_worker: int = 16, max_workers: int = 8) -> int:
    """Worker processes for ``n_inputs`` inputs on ``cores`` usable cores of which ``busy`` cores' worth are taken
    by other processes: one per idle core (a core counts as idle when at most a quarter of it is taken), at most
    one per ``min_per_worker`` inputs (a worker's start-up costs about as much as a dozen photos), at most
    ``max_workers``, at least 1. On a busy machine this gives 1, where more processes than idle cores would only
    take cores from the other jobs."""
    idle = int(max(0.0, cores - busy) + 0.25)
    return max(1, min(idle, int(n_inputs) // max(1, min_per_worker), max_workers))


def _fork_is_safe() -> bool:
    """Fork on Linux only: macOS's system frameworks are not fork-safe (Python spawns there by default) and
    Windows has no fork."""
    return sys.platform.startswith("linux") and "fork" in mp.get_all_start_methods()


def _exit_when_orphaned(parent_pid: int) -> None:
    """A worker's watchdog thread: exit as soon as the parent process is gone (its sentinel closes, or on POSIX
    the worker is re-parented)."""

    parent = mp.parent_process()
    sentinels = [parent.sentinel] if parent is not None and parent.sentinel is not None else []
    while True:
        if (sentinels and wait(sentinels, PARENT_POLL_S)) or (os.name == "posix" and os.getppid() != parent_pid):
            os._exit(1)
        if not sentinels:

            time.sleep(PARENT_POLL_S)


def die_with_parent(parent_pid: int) -> None:
    """Make this (worker) process end when ``parent_pid`` ends, however it ends (even ``kill -9``).

    On Linux the kernel sends SIGKILL at the parent's death (``prctl(PR_SET_PDEATHSIG)``, which works
    even while the worker is busy in native code); everywhere a daemon thread also watches the
    parent (its process sentinel, and on POSIX the parent id) and exits within ``PARENT_POLL_S``.
    Linux sends the signal when the parent *thread* that started the worker ends: a
    :class:`WorkerPool` is to be used from the thread that created it (as ``Estimator`` and
    ``prepare`` do).
    """

    if sys.platform.startswith("linux"):
        try:

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.name == "posix" and os.getppid() != parent_pid:
        os._exit(1)  # the parent died before the line above took effect
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), name="agekit-parent-watch", daemon=True).start()


def _worker_start(parent_pid: int, spawned: bool, initializer: Callable[..., Any] | None,
                  initargs: Sequence[Any]) -> None:
    die_with_parent(parent_pid)
    if spawned:
        import cv2

        cv2.setNumThreads(1)
    if initializer is not None:
        initializer(*initargs)


def _noop() -> None:
    return None


def _quiet_when_broken(executor: Any) -> None:
    """Keep the pipe errors of a broken executor's feeder thread off stderr.

    When a worker dies, ``concurrent.futures`` fails every task in flight (which :func:`ordered_map`
    redoes) and tears the executor down; its queue-feeder thread may still be writing to the pipe of
    the dead workers and prints the resulting ``OSError`` (EPIPE, EBADF) as a traceback. Only errors
    of an executor that is already broken or shutting down are dropped; any other is printed as before.
    """

    queue = getattr(executor, "_call_queue", None)
    loud = getattr(queue, "_on_queue_feeder_error", None)
    if loud is None:
        return
    ref = weakref.ref(executor)

    def on_error(e: BaseException, obj: Any) -> None:
        ex = ref()
        if isinstance(e, OSError) and (ex is None or getattr(ex, "_broken", False)
                                       or getattr(ex, "_shutdown_thread", False)):
            return
        loud(e, obj)

    queue._on_queue_feeder_error = on_error  # read when the feeder thread starts, at the first task


class WorkerStartError(RuntimeError):
    """Worker processes could not be started (they died while starting, every time)."""


class WorkerPool:
    """``workers`` processes (``concurrent.futures``) whose OpenCV runs on one thread each, restartable after a
    worker dies: a process killed by the kernel (out of memory) or by a crash in a native library breaks the
    executor, and :meth:`restart` starts a fresh one (see :func:`ordered_map`).

    Workers die with this process (:func:`die_with_parent`): a ``kill -9`` of the main process
    leaves no worker behind. A pool whose workers die while starting is started again, up to
    ``START_TRIES`` times in all, then :class:`WorkerStartError` is raised.
    """

    def __init__(self, workers: int, initializer: Callable[..., Any] | None = None, initargs: Sequence[Any] = ()):
        self.workers, self.initializer, self.initargs = int(workers), initializer, tuple(initargs)
        self.executor: Any = None
        self.restarts = 0
        self._start()

    def _start(self) -> None:

        for attempt in range(START_TRIES):
            try:
                self._start_once()
                return
            except BrokenExecutor as e:  # a worker died while starting (killed, out of memory): try again
                self.close()
                if attempt == START_TRIES - 1:
                    raise WorkerStartError(f"worker processes died {START_TRIES} times while starting ({e}); "
                                           "try --workers 1") from None

    def _start_once(self) -> None:

        import cv2

        if _fork_is_safe():
            threads = cv2.getNumThreads()
            cv2.setNumThreads(1)
            try:
                self.executor = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("fork"),
                                                    initializer=_worker_start,
                                                    initargs=(os.getpid(), False, self.initializer, self.initargs))
                _quiet_when_broken(self.executor)
                self.executor.submit(_noop).result()  # forks every worker now, while OpenCV has one thread
            finally:
                cv2.setNumThreads(threads)
        else:
            self.executor = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                                initializer=_worker_start,
                                                initargs=(os.getpid(), True, self.initializer, self.initargs))
            _quiet_when_broken(self.executor)

    def pids(self) -> list[int]:
        """Process ids of the current workers (for tests and diagnostics)."""
        procs = getattr(self.executor, "_processes", None) or {}
        return sorted(int(p) for p in procs)

    def submit(self, fn: Callable[[Any], Any], x: Any) -> Any:
        return self.executor.submit(fn, x)

    def restart(self) -> None:
        self.close()
        self.restarts += 1
        self._start()

    def close(self) -> None:
        """Shut the executor down (queued tasks cancelled) and wait, at most ``CLOSE_JOIN_S``, for its manager thread
        to end: at exit, ``concurrent.futures`` wakes every manager thread still alive through a pipe which that
        thread closes as it ends, and the two racing print a traceback after the results (seen after a worker was
        killed); a manager thread that has ended is left alone."""
        if self.executor is not None:
            manager = getattr(self.executor, "_executor_manager_thread", None)
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = None
            if manager is not None and manager is not threading.current_thread():
                manager.join(timeout=CLOSE_JOIN_S)


def ordered_map(pool: Any, fn: Callable[[Any], Any], items: Iterable[Any], ahead: int,
                crashed: Callable[[Any, BaseException], Any] | None = None) -> Iterator[Any]:
    """``fn`` over ``items`` in ``pool`` (a :class:`WorkerPool`), results in input order, at most ``ahead`` tasks
    in flight.

    Unlike ``Pool.imap``, which reads its whole input at once, the input is drawn only as results
    come back: a long video's frames are decoded as the workers need them, not into memory.
    ``crashed``: when a worker process dies, every task in flight fails with it (and a task
    submitted after the death, before the next result is taken, is refused): the pool is
    restarted and those inputs are retried one at a time, so only the input that kills a worker
    again gets ``crashed(input, error)`` in place of its result, and every input gets exactly one
    result. Without ``crashed`` the pool's error is raised.
    """

    if ahead < 1:
        raise ValueError(f"ahead must be >= 1, got {ahead}")

    def submit(x: Any) -> Any:
        try:
            return pool.submit(fn, x)
        except BrokenExecutor as e:  # a worker died since the last result: this task joins the ones in flight
            return e

    queue: deque = deque()
    it = iter(items)
    exhausted = False
    while True:
        while not exhausted and len(queue) < ahead:
            try:
                x = next(it)
            except StopIteration:
                exhausted = True
                break
            queue.append((x, submit(x)))
        if not queue:
            return
        x, fut = queue.popleft()
        if isinstance(fut, BrokenExecutor):
            first: BaseException = fut
        else:
            try:
                result = fut.result()
            except BrokenExecutor as e:
                first = e
            else:
                yield result
                continue
        if crashed is None:
            raise first
        suspects = [x] + [y for y, _ in queue]
        queue.clear()
        pool.restart()
        for k, y in enumerate(suspects):
            try:
                result = pool.submit(fn, y).result()
            except BrokenExecutor as e:
                pool.restart()
                result = crashed(y, e if k else first)
            yield result
