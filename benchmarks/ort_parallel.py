"""How ONNX Runtime should use both cores: batch slices run concurrently vs intra-op threads, and SSR-Net's two streams.

Two questions, each timed A/B in interleaved rounds (a shared machine drifts by 10-40 % between
minutes, so the settings are compared within the same round):

1. Batch throughput (faces/s at ``--batch``): ``OnnxRunner(threads=N, parallel="intra")`` (every
   slice of 8 faces gets N intra-op threads; ``OnnxRunner``'s former default) against
   ``parallel="chunks"`` (the slices run concurrently, one single-threaded ``session.run`` per
   worker thread; ``OnnxRunner``'s default), fp32 and int8.
2. Batch-1 latency: ONNX Runtime's sequential executor with one thread (agekit's default), with
   two intra-op threads (spinning), and its parallel executor (``ORT_PARALLEL``, two inter-op
   threads), which could run SSR-Net's two independent streams at once.
3. One thread's matrix-multiply rate (fp32 and bf16): the ceiling for a network's MACs per second.

The networks have seeded random weights (timings do not depend on them), exported as ``agekit
export`` does (HSR family padded to 32 channels). The malloc settings of bench/README are applied.

    python benchmarks/ort_parallel.py [--models ssrnet sephsr_30_10 c3ae_plain agenet_mt] [--rounds 3] \
        [--out benchmarks/results/ort_parallel]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchutil import with_malloc_env, write_results


def _median_s(fn, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _b1_session(path: Path, mode: str, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if mode == "parallel":
        so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        so.inter_op_num_threads, so.intra_op_num_threads = threads, 1
    else:
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.inter_op_num_threads, so.intra_op_num_threads = 1, threads
    spin = "1" if threads > 1 else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", spin)
    so.add_session_config_entry("session.inter_op.allow_spinning", spin)
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def gemm_peak(threads: int = 1, sizes: tuple[int, ...] = (512, 1024, 2048), repeats: int = 10) -> dict:
    """This CPU's matrix-multiply rate on ``threads`` threads (torch, GMAC/s, best over ``sizes``), fp32 and bf16:
    the ceiling that a batch-1 convolutional network's MACs per second can approach, never pass."""
    import torch

    torch.set_num_threads(threads)
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        best = 0.0
        for n in sizes:
            a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
            for _ in range(3):
                a @ b
            t0 = time.perf_counter()
            for _ in range(repeats):
                a @ b
            best = max(best, n**3 * repeats / (time.perf_counter() - t0) / 1e9)
        out[str(dtype).replace("torch.", "")] = round(best, 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["ssrnet", "sephsr_30_10", "c3ae_plain", "agenet_mt"])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10, help="timed batches per setting and round")
    ap.add_argument("--b1-repeats", type=int, default=1000, help="timed batch-1 runs per setting and round")
    ap.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    ap.add_argument("--no-malloc-env", action="store_true")
    args = ap.parse_args()
    with_malloc_env(args.no_malloc_env)

    from agekit.export.onnx import export_onnx
    from agekit.inference.backends import OnnxRunner
    from agekit.inference.bench import bench_inputs, machine_info
    from agekit.models.checkpoint import LoadedModel

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            model, spec, xb = bench_inputs(name, args.batch)
            rep = export_onnx(LoadedModel(model, name, {}, spec, None, {}), Path(tmp) / f"{name}.onnx", int8=True, atol=1e-3)
            graphs = {"fp32": rep.path, **({"int8": rep.int8_path} if rep.int8_path else {})}
            x1 = xb[:1]
            for prec, path in graphs.items():
                runners = {p: OnnxRunner(path, threads=args.threads, parallel=p) for p in ("intra", "chunks")}
                fps: dict[str, list[float]] = {p: [] for p in runners}
                for _ in range(args.rounds):
                    for p, r in runners.items():
                        fps[p].append(args.batch / _median_s(lambda r=r, xb=xb: r(xb), args.repeats, 2))
                row = {"model": name, "precision": prec, "batch": args.batch, "threads": args.threads,
                       "intra_fps": [round(v) for v in fps["intra"]], "chunks_fps": [round(v) for v in fps["chunks"]],
                       "gain": round(statistics.median(fps["chunks"]) / statistics.median(fps["intra"]), 3)}
                if prec == "fp32":
                    sessions = {"seq_1": _b1_session(path, "sequential", 1),
                                f"seq_{args.threads}_spin": _b1_session(path, "sequential", args.threads),
                                f"parallel_{args.threads}_spin": _b1_session(path, "parallel", args.threads)}
                    b1: dict[str, list[float]] = {k: [] for k in sessions}
                    for _ in range(args.rounds):
                        for k, s in sessions.items():
                            b1[k].append(1e3 * _median_s(lambda s=s, x1=x1: s.run(None, {"input": x1}), args.b1_repeats, 100))
                    row["b1_ms"] = {k: [round(v, 3) for v in vs] for k, vs in b1.items()}
                rows.append(row)
                print(json.dumps(row), flush=True)
    peak = gemm_peak(1)
    info = {"command": "python " + " ".join(sys.argv), "machine": machine_info(1, args.threads),
            "load_average": os.getloadavg(), "gemm_gmacs_one_thread": peak, "rows": rows}
    md = ["| model | graph | faces/s, slices on intra-op threads (rounds) | faces/s, slices concurrent (rounds) "
          "| gain (medians) | batch-1 ms: sequential 1 thread / 2 threads / parallel executor |",
          "|---|---|---|---|---:|---|"]
    for r in rows:
        b1 = " / ".join(f"{statistics.median(v):.3f}" for v in r["b1_ms"].values()) if "b1_ms" in r else ""
        md.append(f"| {r['model']} | {r['precision']} | {', '.join(f'{v:,}' for v in r['intra_fps'])} | "
                  f"{', '.join(f'{v:,}' for v in r['chunks_fps'])} | {r['gain']:.2f}x | {b1} |")
    md.append(f"\nOne thread's matrix-multiply rate (torch, best of 512/1024/2048): fp32 {peak['float32']} GMAC/s, "
              f"bf16 {peak['bfloat16']} GMAC/s.")
    text = "\n".join(md)
    print(text)
    print(f"load average after the run: {info['load_average']}")
    write_results(args.out, info, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
