"""MAE of a checkpoint's ONNX fp32 and int8 exports on a prepared-cache split, and the fp32-PyTorch gap.

Example (the figures in the README):
  python experiments/int8_drift.py src/agekit/weights/age_c3ae_wide_cosine_utkface.safetensors --data caches/utkface --split val
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from agekit.data.cache import PreparedCache
from agekit.evaluation.metrics import mae
from agekit.export.onnx import export_onnx
from agekit.inference.backends import OnnxRunner, TorchRunner
from agekit.methods import load_method
from agekit.models.checkpoint import load_checkpoint
from agekit.preprocessing import network_input
from agekit.training.datamodule import resolve_protocol


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--protocol", default=None)
    ap.add_argument("--calib-samples", type=int, default=256)
    a = ap.parse_args()

    loaded = load_checkpoint(a.checkpoint)
    cache = PreparedCache(a.data)
    rows = np.asarray(cache.splits(resolve_protocol(cache, a.protocol))[a.split], dtype=np.int64)
    x = network_input(np.asarray(cache.view(loaded.preprocess.view_key)[np.sort(rows)]), loaded.preprocess)
    true = np.asarray(cache.meta["age"])[np.sort(rows)]
    with tempfile.TemporaryDirectory() as tmp:
        rep = export_onnx(loaded, Path(tmp) / "m.onnx", int8=True, calib=a.data, n_samples=a.calib_samples)
        ages = {}
        for key, path in (("onnx_fp32", rep.path), ("onnx_int8", rep.int8_path)):
            ages[key] = OnnxRunner(path, threads=1)(x)["age"].astype(np.float64)
    torch_run = TorchRunner(loaded.model, load_method(loaded.method, loaded.name, loaded.card))  # the card's decoder
    ages["torch_fp32"] = np.concatenate([torch_run(x[i : i + 512])["age"] for i in range(0, len(x), 512)]).astype(np.float64)
    out = {
        "checkpoint": a.checkpoint, "split": a.split, "n": int(len(rows)), "int8_mode": rep.int8_mode,
        **{f"mae_{k}": round(float(mae(v, true)), 4) for k, v in ages.items()},
        "mae_drift_int8_vs_fp32": round(float(mae(ages["onnx_int8"], true) - mae(ages["onnx_fp32"], true)), 4),
        "max_abs_onnx_fp32_vs_torch_years": float(np.abs(ages["onnx_fp32"] - ages["torch_fp32"]).max()),
        "mean_abs_int8_vs_fp32_years": round(float(np.abs(ages["onnx_int8"] - ages["onnx_fp32"]).mean()), 4),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
