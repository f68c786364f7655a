"""OpenVINO against the numbers of ``agekit bench``: is another CPU runtime faster?

OpenVINO is not a dependency of agekit (install it yourself: ``pip install openvino``). This script exports each
zoo model the way ``agekit bench`` does (seeded random weights, ``agekit export``'s ONNX graph) and times it in
OpenVINO on the CPU with ``INFERENCE_PRECISION_HINT`` f32 and bf16 (on CPUs with AMX or AVX512-BF16 OpenVINO
runs fp32 models in bf16 by default): batch-1 latency on one thread and batch-256 throughput on two, with the
largest age difference from PyTorch fp32 on the same crops.

    python benchmarks/openvino_speed.py ssrnet sephsr_30_10 agenet_mt [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import openvino as ov

    from agekit.export.onnx import export_onnx
    from agekit.inference.bench import bench_inputs, time_call
    from agekit.models.checkpoint import LoadedModel

    core = ov.Core()
    rows = []
    for name in args.models:
        model, spec, xb = bench_inputs(name, 256)  # the same random weights and faces as agekit bench
        with torch.no_grad():
            ref = model(torch.from_numpy(xb)).age.numpy()
        with tempfile.TemporaryDirectory() as d:
            rep = export_onnx(LoadedModel(model, name, {}, spec, None, {}), Path(d) / f"{name}.onnx", int8=False,
                              atol=1e-3)
            for prec in ("f32", "bf16"):
                for threads, xx in ((1, xb[:1]), (2, xb)):
                    m = core.read_model(str(rep.path))
                    m.reshape({m.inputs[0].any_name: list(xx.shape)})
                    cm = core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": prec, "INFERENCE_NUM_THREADS": threads,
                                                       "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1})
                    req = cm.create_infer_request()
                    b = len(xx)
                    t = time_call(lambda req=req, xx=xx: req.infer({0: xx}), 200 if b == 1 else 20, warmup=10 if b == 1 else 3)
                    ages = req.infer({0: xx})[cm.output("age")].reshape(-1)
                    row = {"model": name, "precision": prec, "threads": threads, "batch": b,
                           "b1_ms" if b == 1 else "faces_per_s": round(t * 1e3, 3) if b == 1 else round(b / t),
                           "max_age_diff": round(float(np.abs(ages - ref[:b]).max()), 4)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"openvino": ov.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
