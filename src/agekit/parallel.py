"""Worker processes for the face pipeline (dataset preparation, folder prediction).

OpenCV's thread pool survives ``fork`` only as it was configured: a forked child may run
OpenCV's parallel code, but calling ``cv2.setNumThreads`` there deadlocks once the parent's
pool has run (measured with opencv-python-headless 4.x). :func:`process_pool` therefore
sets the parent to one OpenCV thread just while it forks the workers (each then runs OpenCV
on one thread: one process per core already) and restores it; where ``fork`` does not exist
the workers are spawned and set their own thread count.
"""
from __future__ import annotations

import multiprocessing as mp
from typing import Any, Callable, Iterable, Iterator, Sequence


def _spawned_init(initializer: Callable[..., Any] | None, initargs: Sequence[Any]) -> None:
    import cv2

    cv2.setNumThreads(1)
    if initializer is not None:
        initializer(*initargs)


def process_pool(workers: int, initializer: Callable[..., Any] | None = None, initargs: Sequence[Any] = ()) -> Any:
    """A ``multiprocessing.Pool`` of ``workers`` processes whose OpenCV runs on one thread each."""
    import cv2

    if "fork" in mp.get_all_start_methods():
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            return mp.get_context("fork").Pool(workers, initializer=initializer, initargs=tuple(initargs))
        finally:
            cv2.setNumThreads(threads)
    return mp.get_context("spawn").Pool(workers, initializer=_spawned_init, initargs=(initializer, tuple(initargs)))


def ordered_map(pool: Any, fn: Callable[[Any], Any], items: Iterable[Any], ahead: int) -> Iterator[Any]:
    """``fn`` over ``items`` in ``pool``, results in input order, at most ``ahead`` tasks in flight.

    Unlike ``Pool.imap``, which reads its whole input at once, the input is drawn only as results
    come back: a long video's frames are decoded as the workers need them, not into memory.
    """
    from collections import deque

    if ahead < 1:
        raise ValueError(f"ahead must be >= 1, got {ahead}")
    queue: deque = deque()
    for x in items:
        queue.append(pool.apply_async(fn, (x,)))
        if len(queue) >= ahead:
            yield queue.popleft().get()
    while queue:
        yield queue.popleft().get()
