"""The service's engine: models loaded once, a bounded queue, worker threads that batch photos across requests.

Requests never touch the server's disk: photos arrive as bytes, are checked from their header
(pixel cap) before they are decoded, and model names are looked up among the shipped weights and
the models the operator named at start-up - never opened as paths.

Admission is bounded twice: at most ``max_queue`` photos and ``max_queue_pixels`` decoded pixels
may wait or run at once; a request that does not fit is refused (the HTTP layer answers 503)
instead of growing the queue. ``workers`` threads take up to ``max_batch`` queued photos that
share the same options and run them through one :meth:`Estimator.predict` call, so the networks
see the faces of concurrent requests as one batch (face detection stays per photo). With
``processes`` (the default) each batch runs in one of ``workers`` processes
(:class:`agekit.parallel.WorkerPool`, each loading the models once), so the server's event loop
never waits for the interpreter lock behind a face detector, and a worker killed by a native crash
or the kernel costs only the photo that killed it (the pool restarts and retries the others one
by one).
"""
from __future__ import annotations

import argparse
import base64
import collections
import concurrent.futures as cf
import dataclasses
import io
import os
import threading
import time
from concurrent.futures import BrokenExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agekit.inference.options import DEFAULT_DETECTOR

FLIP_CHOICES = (None, True, False)
MULTI_FACE_CHOICES = ("largest", "all")


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class ServeConfig:
    """Everything ``agekit serve`` is started with (defaults are the command's defaults)."""

    model: str = "age"  # default age model: a shipped name, or a file the operator names
    gender_model: str = "auto"  # "auto": the shipped gender model next to the shipped age model; "none"
    backend: str = "onnx"
    detector: str = DEFAULT_DETECTOR
    fallback: str | None = None  # detector run when the detector finds no face (e.g. "cropped")
    multi_face: str = "all"  # default of requests: every face (as agekit predict), or "largest"
    threads: int | None = None  # ONNX Runtime intra-op threads per model (None: $AGEKIT_ORT_THREADS or 1)
    workers: int = field(default_factory=usable_cores)  # inference threads
    max_batch: int = 8  # photos per network call across requests (1: no cross-request batching)
    max_queue: int = 16  # photos admitted (waiting or running) at once; more: 503
    max_queue_pixels: int = 64_000_000  # decoded pixels admitted at once; more: 503
    timeout_s: float = 10.0  # per request, queue wait included; then 504
    max_body_bytes: int = 25 << 20  # per request; more: 413
    max_images: int = 16  # photos per request; more: 413
    max_pixels: int = 16_000_000  # per photo, read from its header before decoding; more: 413
    extra_models: tuple[str, ...] = ()  # further files or names requests may choose by that name
    processes: bool = True  # run the models in worker processes (False: in threads of the server process)


class QueueFull(Exception):
    """No room for a request's photos (the queue's photo or pixel budget is spent)."""


class UnknownModel(ValueError):
    """A request named a model that is neither shipped nor served."""


@dataclass
class Job:
    """One photo of one request, waiting for a worker."""

    key: tuple  # (age model, gender model, multi_face, flip): photos with one key share a batch
    image: np.ndarray
    pixels: int
    future: cf.Future = field(default_factory=cf.Future)


class Engine:
    """Models (each loaded once), the admission budget and the batching worker threads."""

    def __init__(self, config: ServeConfig | None = None):
        self.config = config or ServeConfig()
        c = self.config
        if c.workers < 1 or c.max_batch < 1 or c.max_queue < 1:
            raise ValueError("workers, max_batch and max_queue must be >= 1")
        self._heads: dict[str, Any] = {}
        self._estimators: dict[tuple, Any] = {}
        self._load_lock = threading.Lock()
        self._cv = threading.Condition()
        self._queue: collections.deque[Job] = collections.deque()
        self._admitted = 0
        self._admitted_pixels = 0
        self._closed = False
        self._threads: list[threading.Thread] = []
        self._pool: Any = None
        self._served: list[str] | None = None
        self._genders: dict[tuple[str, str], str | None] = {}
        self._warming: list[cf.Future] = []
        self.stats = {"requests_refused": 0, "batches": 0, "photos": 0, "photos_cancelled": 0, "busy_s": 0.0,
                      "worker_restarts": 0}
        self.started_at = time.time()

    # models -----------------------------------------------------------------------------------
    def served_names(self) -> list[str]:
        """Model names a request may choose: shipped weights (names and aliases) and the operator's models
        (listed once: the weights folder is not read again for every request)."""
        if self._served is None:
            self._served = self._list_served()
        return self._served

    def _list_served(self) -> list[str]:
        from agekit.inference.weights import shipped_weights

        names = {self.config.model, *self.config.extra_models}
        if self.config.gender_model not in ("auto", "none", ""):
            names.add(self.config.gender_model)
        for w in shipped_weights():
            names.add(w["name"])
            names.update(w["aliases"])
        return sorted(names)

    def resolve_gender(self, model: str, gender_model: str | None) -> str | None:
        """The gender model for an age model, with ``agekit predict``'s meaning of ``auto`` and ``none``."""

        from agekit.inference.options import gender_model_choice

        g = self.config.gender_model if gender_model is None else gender_model
        if (model, g) not in self._genders:  # model names are checked before: the cache stays small
            self._genders[(model, g)] = gender_model_choice(argparse.Namespace(model=model, gender_model=g))
        return self._genders[(model, g)]

    def key(self, model: str | None = None, gender_model: str | None = None, multi_face: str | None = None,
            flip: bool | None = None) -> tuple:
        """The batching key of a request's options, checked (:class:`UnknownModel`, ``ValueError``)."""
        model = model or self.config.model
        served = self.served_names()
        if model not in served:
            raise UnknownModel(f"unknown model {model!r}; this server offers {served}")
        if gender_model is not None and gender_model not in ("auto", "none", "") and gender_model not in served:
            raise UnknownModel(f"unknown gender model {gender_model!r}; this server offers {served} (or none)")
        multi_face = multi_face or self.config.multi_face
        if multi_face not in MULTI_FACE_CHOICES:
            raise ValueError(f"multi_face must be one of {MULTI_FACE_CHOICES}, not {multi_face!r}")
        if flip not in FLIP_CHOICES:
            raise ValueError(f"flip must be true, false or absent, not {flip!r}")
        return (model, self.resolve_gender(model, gender_model), multi_face, flip)

    def _head(self, name: str) -> Any:
        from agekit.inference.estimator import load_head

        if name not in self._heads:
            self._heads[name] = load_head(name, self.config.backend, threads=self.config.threads)
        return self._heads[name]

    def estimator(self, key: tuple) -> Any:
        """The Estimator for a key; its models are loaded on first use and shared by every key that names them."""
        est = self._estimators.get(key)
        if est is not None:
            return est
        from agekit.inference.estimator import Estimator, _same_model

        with self._load_lock:
            if key in self._estimators:
                return self._estimators[key]
            model, gender, multi_face, flip = key
            age = self._head(model)
            g = self._head(gender) if gender is not None and not _same_model(model, gender) else None
            est = Estimator(dataclasses.replace(age, flip=flip), dataclasses.replace(g, flip=flip) if g else None,
                            detector=self.config.detector, multi_face=multi_face, fallback=self.config.fallback)
            self._estimators[key] = est
            return est

    # admission and workers ----------------------------------------------------------------------
    def start(self) -> None:
        """Load the default models (and the detector) in the workers and start the dispatching threads; idempotent."""
        if self._threads:
            return
        if self.config.processes:
            from agekit.parallel import WorkerPool

            self._pool = WorkerPool(self.config.workers, _process_init, (self.config,))
            # the workers load their models while this process goes on (wait_ready waits for them)
            self._warming = [self._pool.submit(_process_warm_up, None) for _ in range(self.config.workers)]
        else:
            warm_up(self)
        for i in range(self.config.workers):
            t = threading.Thread(target=self._work, name=f"agekit-serve-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        for t in self._threads:
            t.join(timeout=5)
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def wait_ready(self, timeout: float = 300.0) -> None:
        """Wait until the worker processes have loaded the default models (their error, e.g. a bad model, is raised)."""
        for f in self._warming:
            f.result(timeout=timeout)
        self._warming = []

    def worker_pids(self) -> list[int]:
        """Process ids of the worker processes (empty without ``processes``)."""
        return self._pool.pids() if self._pool is not None else []

    def _predict(self, key: tuple, images: list[np.ndarray]) -> list[dict[str, Any]]:
        """Records of a batch, in a worker process (retried photo by photo after a worker death) or here."""
        if self._pool is None:
            return [plain_record(r) for r in self.estimator(key).predict(images, workers=1)]

        pool = self._pool
        try:
            return pool.submit(_process_predict, (key, images)).result()
        except BrokenExecutor:
            pass
        out = []
        for img in images:  # a worker died: only the photo that kills one again is lost
            self._restart(pool)
            pool = self._pool
            try:
                out.extend(pool.submit(_process_predict, (key, [img])).result())
            except BrokenExecutor:
                out.append({"source": "array[0]", "faces": [], "dropped": [], "error": WORKER_DIED})
        return out

    def _restart(self, broken: Any) -> None:
        with self._load_lock:
            if self._pool is broken and _is_broken(broken):
                self.stats["worker_restarts"] += 1
                broken.restart()

    def reserve(self, photos: int, pixels: int) -> None:
        """Admit ``photos`` photos of ``pixels`` pixels in all, or raise :class:`QueueFull`."""
        c = self.config
        with self._cv:
            if self._admitted + photos > c.max_queue or self._admitted_pixels + pixels > c.max_queue_pixels:
                self.stats["requests_refused"] += 1
                raise QueueFull(f"busy: {self._admitted} photos are queued or running (at most {c.max_queue}); "
                                "retry shortly")
            self._admitted += photos
            self._admitted_pixels += pixels

    def release(self, photos: int, pixels: int) -> None:
        with self._cv:
            self._admitted -= photos
            self._admitted_pixels -= pixels

    def submit(self, job: Job) -> cf.Future:
        """Queue an admitted photo; its future gets the predict record (``source`` still ``array[0]``)."""
        with self._cv:
            self._queue.append(job)
            self._cv.notify()
        return job.future

    def queued(self) -> int:
        with self._cv:
            return len(self._queue)

    def admitted(self) -> int:
        with self._cv:
            return self._admitted

    def _take(self) -> list[Job] | None:
        """The next batch: the oldest photo and up to ``max_batch - 1`` more queued with the same key."""
        with self._cv:
            while not self._queue and not self._closed:
                self._cv.wait()
            if self._closed:
                return None
            first = self._queue.popleft()
            batch = [first]
            if self.config.max_batch > 1 and self._queue:
                rest = collections.deque()
                while self._queue and len(batch) < self.config.max_batch:
                    j = self._queue.popleft()
                    (batch if j.key == first.key else rest).append(j)
                self._queue.extendleft(reversed(rest))
            return batch

    def _work(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            live = []
            for j in batch:
                if j.future.set_running_or_notify_cancel():
                    live.append(j)
                else:  # its request timed out while it waited
                    self.release(1, j.pixels)
                    self.stats["photos_cancelled"] += 1
            if not live:
                continue
            t0 = time.perf_counter()
            try:
                results = self._predict(live[0].key, [j.image for j in live])
            except Exception as e:  # a bug, not a bad photo (those are reported in the records)
                for j in live:
                    j.future.set_exception(e)
            else:
                for j, r in zip(live, results):
                    j.future.set_result(r)
            finally:
                for j in live:
                    self.release(1, j.pixels)
                self.stats["busy_s"] += time.perf_counter() - t0
                self.stats["batches"] += 1
                self.stats["photos"] += len(live)


WORKER_DIED = "a worker process died on this photo (killed for memory, or a crash in a native library)"
_PROCESS_ENGINE: Engine | None = None


def warm_up(engine: Engine) -> None:
    """Load the default models and the detector's models now rather than on the first request."""
    engine.estimator(engine.key()).predict([np.zeros((64, 64, 3), np.uint8)])


WORKER_NICENESS = 5  # workers yield the CPU to the server's event loop: admission and 503s stay prompt under load


def _process_init(config: ServeConfig) -> None:
    global _PROCESS_ENGINE
    if hasattr(os, "nice"):
        os.nice(WORKER_NICENESS)
    _PROCESS_ENGINE = Engine(dataclasses.replace(config, processes=False))


def _process_warm_up(_: Any) -> int:
    warm_up(_PROCESS_ENGINE)
    return os.getpid()


def _process_predict(task: tuple) -> list[dict[str, Any]]:
    key, images = task
    return [plain_record(r) for r in _PROCESS_ENGINE.estimator(key).predict(images, workers=1)]


def plain_record(r: Any) -> dict[str, Any]:
    """A predict result as the plain dict ``agekit predict --json`` prints (rounded as the command rounds)."""
    to_dict = getattr(r, "to_dict", None)
    return to_dict(rounded=True) if to_dict is not None else dict(r)


def _is_broken(pool: Any) -> bool:
    return pool.executor is None or getattr(pool.executor, "_broken", False)


def image_header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from an encoded photo's header without decoding its pixels; None when unrecognised."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def decode_upload(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """An uploaded photo as RGB uint8 with :func:`agekit.face.io.decode_image` (``ImageReadError`` with the reason)."""
    from agekit.face.io import decode_image

    return decode_image(data, name, max_pixels=max_pixels)


def face_crop_data_url(image: np.ndarray, box: list[float], quality: int = 90) -> str:
    """The face box of an RGB image as a ``data:image/jpeg;base64,...`` URL."""

    import cv2

    h, w = image.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    crop = image[y1:y2, x1:x2] if x2 > x1 and y2 > y1 else image[:1, :1]
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def rss_bytes() -> int | None:
    """This process's resident memory (Linux ``/proc``), else None."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
