"""Worker processes for the face pipeline (dataset preparation, folder prediction).

OpenCV's thread pool survives ``fork`` only as it was configured: a forked child may run
OpenCV's parallel code, but calling ``cv2.setNumThreads`` there deadlocks once the parent's
pool has run (measured with opencv-python-headless 4.x). :class:`WorkerPool` therefore
sets the parent to one OpenCV thread just while it forks the workers (each then runs OpenCV
on one thread: one process per core already) and restores it; where ``fork`` does not exist
(or where it is unsafe: macOS) the workers are spawned and set their own thread count.
"""
from __future__ import annotations

import multiprocessing as mp
import sys
from typing import Any, Callable, Iterable, Iterator, Sequence


def _fork_is_safe() -> bool:
    """Fork on Linux only: macOS's system frameworks are not fork-safe (Python spawns there by default) and
    Windows has no fork."""
    return sys.platform.startswith("linux") and "fork" in mp.get_all_start_methods()


def _spawned_init(initializer: Callable[..., Any] | None, initargs: Sequence[Any]) -> None:
    import cv2

    cv2.setNumThreads(1)
    if initializer is not None:
        initializer(*initargs)


def _noop() -> None:
    return None


class WorkerPool:
    """``workers`` processes (``concurrent.futures``) whose OpenCV runs on one thread each, restartable after a
    worker dies: a process killed by the kernel (out of memory) or by a crash in a native library breaks the
    executor, and :meth:`restart` starts a fresh one (see :func:`ordered_map`)."""

    def __init__(self, workers: int, initializer: Callable[..., Any] | None = None, initargs: Sequence[Any] = ()):
        self.workers, self.initializer, self.initargs = int(workers), initializer, tuple(initargs)
        self.executor: Any = None
        self.restarts = 0
        self._start()

    def _start(self) -> None:
        import cv2
        from concurrent.futures import ProcessPoolExecutor

        if _fork_is_safe():
            threads = cv2.getNumThreads()
            cv2.setNumThreads(1)
            try:
                self.executor = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("fork"),
                                                    initializer=self.initializer, initargs=self.initargs)
                self.executor.submit(_noop).result()  # forks every worker now, while OpenCV has one thread
            finally:
                cv2.setNumThreads(threads)
        else:
            self.executor = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                                initializer=_spawned_init, initargs=(self.initializer, self.initargs))

    def submit(self, fn: Callable[[Any], Any], x: Any) -> Any:
        return self.executor.submit(fn, x)

    def restart(self) -> None:
        self.close()
        self.restarts += 1
        self._start()

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = None


def ordered_map(pool: Any, fn: Callable[[Any], Any], items: Iterable[Any], ahead: int,
                crashed: Callable[[Any, BaseException], Any] | None = None) -> Iterator[Any]:
    """``fn`` over ``items`` in ``pool`` (a :class:`WorkerPool`), results in input order, at most ``ahead`` tasks
    in flight.

    Unlike ``Pool.imap``, which reads its whole input at once, the input is drawn only as results
    come back: a long video's frames are decoded as the workers need them, not into memory.
    ``crashed``: when a worker process dies, every task in flight fails with it; the pool is
    restarted and those inputs are retried one at a time, so only the input that kills a worker
    again gets ``crashed(input, error)`` in place of its result (without ``crashed`` the error is
    raised).
    """
    from collections import deque
    from concurrent.futures.process import BrokenProcessPool

    if ahead < 1:
        raise ValueError(f"ahead must be >= 1, got {ahead}")
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
            queue.append((x, pool.submit(fn, x)))
        if not queue:
            return
        x, fut = queue.popleft()
        try:
            yield fut.result()
            continue
        except BrokenProcessPool as e:
            if crashed is None:
                raise
            first = e
        suspects = [x] + [y for y, _ in queue]
        queue.clear()
        pool.restart()
        for k, y in enumerate(suspects):
            try:
                yield pool.submit(fn, y).result()
            except BrokenProcessPool as e:
                pool.restart()
                yield crashed(y, e if k else first)
