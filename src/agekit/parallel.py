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
from typing import Any, Callable, Sequence


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
