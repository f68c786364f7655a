"""ONNX Runtime sessions as agekit runs them (shared by export and prediction; imports onnxruntime on use)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


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
