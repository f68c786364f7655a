"""Runners that turn a batch of normalised crops into named numpy outputs: PyTorch eager and ONNX Runtime.

Both answer ``runner(x) -> {"age", "gender_female", "uncertainty", "age_group_probs",
"distribution"}`` (the keys the model produces), so the :class:`Estimator` does not care
which one it drives. :class:`ExportWrapper` is the module that ONNX export traces: the
network plus its method's decoder, returning plain tensors.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from agekit.outputs import ModelOutput

# Output names of the exported graph, in this order when present.
OUTPUT_KEYS = ("age", "gender_female", "uncertainty", "age_group_probs", "distribution")


def load_method(method: str | None, model_name: str, card: dict | None = None) -> Any | None:
    """The training method whose ``predict`` decodes ``model_name``'s outputs, or None without agekit.methods.

    With the checkpoint's ``card``, the method gets the options it was trained with
    (``method_config``): a distilled student decodes with its own method's options, e.g.
    ``distill`` with ``student: dldl``.
    """
    try:
        from agekit.methods import default_method_for, get_method
    except ImportError:
        return None
    name = method or default_method_for(model_name)
    card = card or {}
    # a training checkpoint's card has method_config; a shipped card keeps the training card under "training"
    cfg = dict(card.get("method_config") or (card.get("training") or {}).get("method_config") or {})
    cfg.pop("generation", None)
    if cfg:
        try:
            return get_method(name, **cfg)
        except (TypeError, KeyError, ValueError):
            pass
    return get_method(name)


def decode(out: ModelOutput, method: Any | None = None) -> dict[str, Tensor]:
    """Named per-face tensors from a network output: the method's ``predict`` first, then the output's own fields.

    ``age`` is ``out.age`` (every network decodes its own age, see ModelOutput), P(female)
    is the softmax of ``gender_logits`` or ``1 - gender_prob`` (SSR-Net's V = 1 regression
    gives P(male)); without a method the uncertainty is the std of the age distribution.
    """
    d: dict[str, Tensor] = {}
    if method is not None:
        for k, v in method.predict(out).items():
            if k in OUTPUT_KEYS and isinstance(v, Tensor) and v.is_floating_point():
                d[k] = v.float()
    if "age" not in d and out.age is not None:
        d["age"] = out.age.float().reshape(-1)
    if "gender_female" not in d:
        if out.gender_logits is not None:
            d["gender_female"] = torch.softmax(out.gender_logits.float(), dim=1)[:, 1]
        elif out.gender_prob is not None:
            d["gender_female"] = 1.0 - out.gender_prob.float().reshape(-1)
    if "age_group_probs" not in d and out.age_group_logits is not None:
        d["age_group_probs"] = torch.softmax(out.age_group_logits.float(), dim=1)
    if out.probs is not None and out.bin_ages is not None:
        d["distribution"] = out.probs.float()
        if method is None and "uncertainty" not in d:
            bins = out.bin_ages.float().to(out.probs.device)
            mean = (out.probs * bins).sum(1, keepdim=True)
            d["uncertainty"] = ((out.probs * (bins - mean) ** 2).sum(1)).clamp_min(0).sqrt()
    return d


class ExportWrapper(nn.Module):
    """The network and its decoder as one module returning a tuple of plain tensors (for tracing)."""

    def __init__(self, model: nn.Module, method: Any | None = None, keys: tuple[str, ...] | None = None):
        super().__init__()
        self.model = model
        self.method = method
        self.keys = tuple(keys) if keys is not None else None

    def named(self, x: Tensor) -> dict[str, Tensor]:
        """All decoded outputs by name."""
        return decode(self.model(x), self.method)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        d = self.named(x)
        keys = self.keys or tuple(k for k in OUTPUT_KEYS if k in d)
        return tuple(d[k] for k in keys)

    def discover_keys(self, example: Tensor) -> tuple[str, ...]:
        """Fix the output names from one forward pass on ``example``."""
        with torch.inference_mode():
            d = self.named(example)
        self.keys = tuple(k for k in OUTPUT_KEYS if k in d)
        return self.keys


class TorchRunner:
    """PyTorch eager inference of a wrapped network on float32 numpy batches."""

    backend = "torch"

    def __init__(self, model: nn.Module, method: Any | None = None, threads: int | None = None):
        self.wrapper = ExportWrapper(model.eval(), method)
        self.threads = threads

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            d = self.wrapper.named(torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32)))
        return {k: v.cpu().numpy() for k, v in d.items()}


def ort_session(path: str | Path, threads: int = 1, spin: bool = False) -> Any:
    """An ONNX Runtime CPU session tuned for small models: ``threads`` intra-op, sequential, all graph optimisations.

    Spinning is off by default: after each run ORT's worker threads otherwise busy-wait for
    the next one, which in the photo path steals the core from decoding and detection
    (measured: a 640x480 photo cost 26.4 ms CPU with 2 spinning threads, 14.2 ms with 1).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if not spin:  # on a busy shared machine spinning threads steal each other's cores
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


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
        self.chunk = DEFAULT_CHUNK if chunk is None else int(chunk)
        self.parallel = parallel if threads > 1 and self.chunk > 0 else "intra"
        self.session = ort_session(path, threads=1 if self.parallel == "chunks" else threads, spin=spin)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._pool: Any = None

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: x})

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.chunk <= 0 or len(x) <= self.chunk:
            return dict(zip(self.output_names, self._run(x)))
        slices = [x[i : i + self.chunk] for i in range(0, len(x), self.chunk)]
        if self.parallel == "chunks":
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="agekit-ort")
            parts = list(self._pool.map(self._run, slices))  # in order
        else:
            parts = [self._run(s) for s in slices]
        return {k: np.concatenate([p[j] for p in parts]) for j, k in enumerate(self.output_names)}

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)
