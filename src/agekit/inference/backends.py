"""Runners that turn a batch of normalised crops into named numpy outputs: PyTorch eager and ONNX Runtime.

Both answer ``runner(x) -> {"age", "gender_female", "uncertainty", "age_group_probs",
"distribution"}`` (the keys the model produces), so the :class:`Estimator` does not care
which one it drives. The PyTorch runner calls :class:`agekit.methods.decode.ExportWrapper`: the network plus
its method's decoder, the module that ONNX export traces.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn

# ONNX Runtime inference lives in the torch-free agekit.inference.runtime (re-exported here)
from agekit.inference.runtime import DEFAULT_CHUNK, OnnxRunner, ort_session  # noqa: F401
from agekit.methods.decode import ExportWrapper


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

