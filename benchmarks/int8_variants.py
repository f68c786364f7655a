"""Which int8 settings pay on ONNX Runtime? Batch-256 faces/s (one thread) of int8 variants of each graph against its
float32 graph, in interleaved rounds.

Graphs: every shipped weight's ``.onnx`` and SepHSR(30,10) (seeded random weights, exported as ``agekit bench``
does: channels padded to 16). Variants (``agekit.export.int8.Int8Recipe``): QDQ per-channel U8S8 with every
layer in int8 (depthwise convolutions included); the same with depthwise convolutions in float32 (the default);
QOperator format; per-tensor weights; 7-bit weights (reduce_range); U8U8; S8S8; Gemm/MatMul only; and
``select``: the layers ``select_layers`` keeps in int8 (measured per layer). Calibrated on 256 train faces of
``--data`` with min-max ranges (synthetic sample faces when it has no view for the model); timed on 256 of its val faces in slices
of 8, as ``agekit predict`` runs a batch. Result: benchmarks/results/int8_variants.{json,md} (rows of models not
run this time are kept).

    python benchmarks/int8_variants.py [--models NAME ...] [--data caches/utkface] [--out benchmarks/results/int8_variants]
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from benchutil import with_malloc_env

ALL_OPS = ("Conv", "Gemm", "MatMul", "Relu", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool")


def variants():
    from agekit.export.int8 import Int8Recipe

    # min-max calibration: the speed does not depend on it, and a random-weight layer that always outputs zero
    # (SepHSR here) has no histogram for percentile calibration
    base = Int8Recipe(op_types=ALL_OPS, exclude_depthwise=False, calibration="minmax")
    return {
        "qdq_u8s8_all": base,
        "qdq_u8s8_no_depthwise": replace(base, exclude_depthwise=True),
        "qoperator_u8s8": replace(base, quant_format="qoperator", exclude_depthwise=True),
        "qdq_per_tensor": replace(base, per_channel=False, exclude_depthwise=True),
        "qdq_reduce_range": replace(base, reduce_range=True, exclude_depthwise=True),
        "qdq_u8u8": replace(base, weights="u8", exclude_depthwise=True),
        "qdq_s8s8": replace(base, activations="s8", exclude_depthwise=True),
        "qdq_gemm_matmul_only": replace(base, op_types=("Gemm", "MatMul"), exclude_depthwise=True),
    }


def graphs(names: list[str] | None, tmp: Path) -> dict[str, tuple[Path, object]]:
    """name -> (float32 .onnx, preprocessing spec)."""
    from agekit.inference.weights import shipped_weights
    from agekit.preprocessing import PreprocessSpec

    out = {}
    for e in shipped_weights():
        if e["onnx"] is not None and (not names or e["name"] in names):
            out[e["name"]] = (Path(e["onnx"]), PreprocessSpec.from_dict(e["card"]["preprocess"]))
    if not names or "sephsr_30_10" in names:
        from agekit.export.onnx import export_onnx
        from agekit.inference.bench import bench_inputs
        from agekit.models.checkpoint import LoadedModel

        model, spec, _ = bench_inputs("sephsr_30_10", 8)
        rep = export_onnx(LoadedModel(model, "sephsr_30_10", {}, spec, None, {}), tmp / "sephsr_30_10.onnx", atol=1e-3)
        out["sephsr_30_10 (random weights, padded)"] = (Path(rep.path), spec)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=None, help="shipped weight names and/or sephsr_30_10 (default: all)")
    ap.add_argument("--data", default="caches/utkface", help="prepared cache: train faces calibrate, val faces are timed")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--no-select", action="store_true", help="skip the measured per-layer selection")
    ap.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    ap.add_argument("--no-malloc-env", action="store_true")
    args = ap.parse_args()
    with_malloc_env(args.no_malloc_env)
    from agekit.data.cache import PreparedCache
    from agekit.export.int8 import Int8Recipe, cache_faces, compare_speed, ort_session, quantize, select_layers
    from agekit.export.onnx import crops_from_squares, synthetic_faces
    from agekit.training.probe import host_info

    machine = host_info(threads=1)
    print(f"# {machine}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for name, (fp32, spec) in graphs(args.models, tmp).items():
            if Path(args.data).is_dir() and spec.view_key in PreparedCache(args.data).views:
                calib, _, where = cache_faces(args.data, spec, "train", n=256)
                xb = cache_faces(args.data, spec, "val", n=256)[0]
            else:
                crops = crops_from_squares(synthetic_faces(512, spec.size, seed=0), spec)
                x = np.asarray(spec.normalize(crops), dtype=np.float32)
                calib, xb, where = x[:256], x[256:], "256 synthetic sample faces"
            paths, layers = {}, {}
            for k, r in variants().items():
                paths[k] = tmp / f"{k}.onnx"
                try:
                    layers[k] = quantize(fp32, paths[k], calib, r)
                    ort_session(paths[k]).run(None, {"input": xb[:2]})  # it runs
                except Exception as e:  # a variant ONNX Runtime cannot quantise is reported, not fatal
                    print(f"{name} {k}: failed ({type(e).__name__}: {str(e)[:120]})", flush=True)
                    paths.pop(k)
            if not args.no_select:
                sel = select_layers(fp32, calib, xb, Int8Recipe(calibration="minmax"), rounds=max(3, args.rounds // 2))
                paths["select"] = tmp / "select.onnx"
                layers["select"] = quantize(fp32, paths["select"], calib, sel.recipe)
            speed = compare_speed({"fp32": fp32, **paths}, xb, threads=1, chunk=8, rounds=args.rounds)
            f = speed["fp32"]["faces_s"]
            row = {"model": name, "calibration": where, "fp32_faces_s": round(f, 1),
                   "variants": {k: {"faces_s": round(v["faces_s"], 1), "speedup": round(v["faces_s"] / f, 3),
                                    "int8_layers": len(layers[k])} for k, v in speed.items() if k != "fp32"}}
            rows.append(row)
            print(f"{name}: fp32 {f:.0f} faces/s; " + "; ".join(
                f"{k} {v['speedup']:.2f}x" for k, v in row["variants"].items()), flush=True)
    info = {"command": "python benchmarks/int8_variants.py " + shlex.join(sys.argv[1:]), "date": time.strftime("%Y-%m-%d"),
            "machine": machine, "rows": rows}
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.with_suffix(".json").is_file():  # rows of other models from an earlier run stay
            done = {r["model"] for r in rows}
            rows += [r for r in json.loads(out.with_suffix(".json").read_text())["rows"] if r["model"] not in done]
            rows.sort(key=lambda r: r["model"])
            info["rows"] = rows
        out.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
        names = list(variants()) + ([] if args.no_select else ["select"])
        lines = [f"`{info['command']}`", "", f"Host: {machine['cpu']}, flags {' '.join(machine['flags'])}; onnxruntime "
                 f"{machine['onnxruntime']}; load average {machine['load_average']}; {info['date']}. int8 faces/s over "
                 "float32 faces/s, batch 256 in slices of 8, one thread, median of interleaved rounds.", "",
                 "| model | fp32 faces/s | " + " | ".join(names) + " |", "| --- | ---: |" + " ---: |" * len(names)]
        for r in rows:
            lines.append(f"| {r['model']} | {r['fp32_faces_s']:.0f} | " + " | ".join(
                f"{r['variants'][k]['speedup']:.2f}x" + (f" ({r['variants'][k]['int8_layers']} int8 layers)" if k == "select"
                                                         else "") if k in r["variants"] else "failed" for k in names) + " |")
        out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
