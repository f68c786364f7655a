"""Parameters, MACs and CPU latency of every paper network as trained in the README's papers table.

Each network is built as its UTKFace run built it (LRN at 64x64 with the small stem), with seeded random weights
(timings do not depend on them), exported to ONNX fp32 (``agekit export``'s defaults) and timed like ``agekit
bench``: median batch-1 latency with one thread for torch eager and ONNX Runtime, and ONNX faces/s at batch 64.

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 MALLOC_TOP_PAD_=1000000000 \\
        python benchmarks/papers_latency.py --out benchmarks/results/papers_latency
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

LRN64 = {"input_size": 64, "stem": "small"}
ROWS = [  # (row of the README's papers table, registry name, configuration)
    ("SSR-Net(3,3,3)", "ssrnet", {}),
    ("C3AE plain", "c3ae_plain", {}),
    ("C3AE full (cascade + context)", "c3ae_full", {}),
    ("HSR(30,10)", "hsr_30_10", {}),
    ("SepHSR(30,10)", "sephsr_30_10", {}),
    ("SepHSR(60,10)", "sephsr_60_10", {}),
    ("SepHSR(90,30)", "sephsr_90_30", {}),
    ("SepHSR(30,10), 3-res.", "sephsr_30_10_k3", {}),
    ("SepHSR(60,10), 3-res.", "sephsr_60_10_k3", {}),
    ("SepHSR(90,30), 3-res.", "sephsr_90_30_k3", {}),
    ("BSepHSR(90,30), 3-res.", "bsephsr_90_30_k3", {}),
    ("LRN ResNet-10-Tiny (64 px, small stem)", "lrn_resnet10_tiny", LRN64),
    ("LRN ResNet-18 (64 px, small stem)", "lrn_resnet18", LRN64),
    ("MobileNetV1(0.25)", "mobilenetv1_025", {}),
    ("C3AE-wide (agekit, an earlier shipped age model)", "c3ae_wide", {}),
    ("AgeNet-MT (agekit, shipped)", "agenet_mt", {}),
]


def markdown(info: dict, rows: list[dict]) -> str:
    s = (f"# Paper networks: size and CPU speed\n\n- CPU: {info.get('cpu')}; one thread; batch 1 and {rows[0]['batch']}\n"
         f"- torch {info.get('torch')}, onnxruntime {info.get('onnxruntime')}; environment {info.get('env')}\n"
         f"- command: `python benchmarks/papers_latency.py {info.get('args', '')}`\n\n"
         f"| network | registry name | params | MACs (M) | torch b1 ms | ONNX b1 ms | ONNX faces/s (batch {rows[0]['batch']}) |\n"
         "|---|---|---:|---:|---:|---:|---:|\n")
    for r in rows:
        s += (f"| {r['label']} | `{r['model']}` | {r['params']:,} | {r['macs'] / 1e6:.1f} | {r['torch_b1_ms']:.2f} | "
              f"**{r['onnx_fp32_b1_ms']:.2f}** | {r['onnx_fp32_fps']:,.0f} |\n")
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="write OUT.md and OUT.json")
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--only", default=None, help="comma-separated registry names (default: every row)")
    a = ap.parse_args()
    import sys

    from agekit.inference.bench import bench_model, machine_info

    only = set(a.only.split(",")) if a.only else None
    rows = []
    for label, name, config in ROWS:
        if only and name not in only:
            continue
        r = bench_model(name, threads=1, repeats=a.repeats, batch=a.batch, int8=False, batch_threads=1, config=config)
        rows.append({"label": label, **r})
        print(f"{label}: ONNX b1 {r['onnx_fp32_b1_ms']:.3f} ms, torch {r['torch_b1_ms']:.3f} ms", file=sys.stderr)
    info = {**machine_info(1), "args": " ".join(sys.argv[1:])}
    md = markdown(info, rows)
    print(md)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out + ".md").write_text(md)
        Path(a.out + ".json").write_text(json.dumps({"machine": info, "rows": rows}, indent=1, default=str))


if __name__ == "__main__":
    main()
