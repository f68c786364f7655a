"""ONNX Runtime inference of exported agekit graphs: numpy in, named numpy outputs out (no torch).

The predict path of a core install (``pip install agekit``, no extras) runs through this module
only: :class:`OnnxRunner` answers ``runner(x) -> {"age", "gender_female", "uncertainty",
"age_group_probs", "distribution"}`` (the keys the graph produces), like the PyTorch runner of
:mod:`agekit.inference.backends`.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from agekit.ortsession import ort_session  # noqa: F401 (re-exported: agekit.inference.runtime.ort_session)

# Output names of the exported graph, in this order when present.
OUTPUT_KEYS = ("age", "gender_female", "uncertainty", "age_group_probs", "distribution")


DEFAULT_CHUNK = 8


class OnnxRunner:
    """ONNX Runtime inference of an exported agekit graph (input ``input``, outputs named as in OUTPUT_KEYS).

    ``threads``: cores to use (default ``$AGEKIT_ORT_THREADS`` or 1: these models are too
    small for a second thread to pay at batch 1; measured on the 2-core Xeon: SSR-Net batch 1
    0.38 ms with 1 thread, 0.41-0.47 ms with 2). ``chunk``: a batch is run in slices of at
    most this many faces so the activations stay in the L2 cache (SepHSR(30,10) on 64 px:
    1,335 faces/s in slices of 4-8 vs 888 faces/s as one batch of 256, single-thread CPU
    time); 0 runs the batch whole. ``parallel``: how ``threads`` > 1 are used on a chunked
    batch - ``"chunks"`` (default) runs the slices concurrently, one single-threaded
    ``session.run`` per worker thread (ONNX Runtime releases the GIL; 1.10-1.47x the faces/s
    of ``"intra"`` at batch 256 on 2 cores for every zoo model tried, fp32 and int8:
    ``benchmarks/ort_parallel.py``); ``"intra"`` gives every slice
    ``threads`` intra-op threads. A batch of at most ``chunk`` faces runs on one thread with
    ``"chunks"``. Both give the same outputs.
    """

    backend = "onnx"

    def __init__(self, path: str | Path, threads: int | None = None, spin: bool = False,
                 chunk: int | None = None, parallel: str = "chunks"):
        threads = threads or int(os.environ.get("AGEKIT_ORT_THREADS", "1"))
        if parallel not in ("chunks", "intra"):
            raise ValueError(f"parallel must be 'chunks' or 'intra', not {parallel!r}")
        self.path = Path(path)
        self.threads = threads
        self.spin = spin
        self.asked_parallel = parallel
        self.chunk = DEFAULT_CHUNK if chunk is None else int(chunk)
        self.parallel = parallel if threads > 1 and self.chunk > 0 else "intra"
        self.session = ort_session(path, threads=1 if self.parallel == "chunks" else threads, spin=spin)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._pool: Any = None

    def fresh(self, threads: int | None = None) -> OnnxRunner:
        """A new runner of the same graph with its own session (``threads``: default this one's), e.g. in a
        worker process, which must not use the session a fork copied from its parent."""
        return OnnxRunner(self.path, threads=threads or self.threads, spin=self.spin, chunk=self.chunk,
                          parallel=self.asked_parallel)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its settings: a worker process started with ``spawn`` opens its own session."""
        return (OnnxRunner, (self.path, self.threads, self.spin, self.chunk, self.asked_parallel))

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: x})

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.chunk <= 0 or len(x) <= self.chunk:
            return dict(zip(self.output_names, self._run(x)))
        slices = [x[i : i + self.chunk] for i in range(0, len(x), self.chunk)]
        if self.parallel == "chunks":
            if self._pool is None:

                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="agekit-ort")
            parts = list(self._pool.map(self._run, slices))  # in order
        else:
            parts = [self._run(s) for s in slices]
        return {k: np.concatenate([p[j] for p in parts]) for j, k in enumerate(self.output_names)}

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)


def read_onnx_card(onnx_path: str | Path) -> dict[str, Any]:
    """The card of an exported ``.onnx``: ``<stem>.json`` next to it (``x.int8.onnx`` falls back to ``x.json``).

    Plain JSON (no torch): its ``preprocess`` and ``model`` are what the predictor needs."""

    p = Path(onnx_path)
    for cand in (p.with_suffix(".json"), p.with_name(p.name.replace(".int8.onnx", ".json"))):
        if cand.is_file():
            info = json.loads(cand.read_text())
            if isinstance(info, dict) and "preprocess" in info and "model" in info:
                return info
    raise FileNotFoundError(f"{p}: no model card {p.with_suffix('.json').name} next to it (export with `agekit export`)")
