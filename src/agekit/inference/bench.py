"""``agekit bench``: measured CPU latency and throughput of zoo models, and of a whole photo.

Per model: batch-1 latency (median of ``repeats`` runs) and batch-``throughput_batch``
throughput for PyTorch eager, ONNX Runtime fp32 and ONNX Runtime int8, all with
``threads`` intra-op threads at batch 1 and ``batch_threads`` (default: every core this process may
use) for the batch; then the end-to-end latency of one 640x480 photo with one
face (decode, detect, align and crop, estimate). Weights are randomly initialised: the
timings do not depend on their values. The machine is described in the output (CPU
model, cores, library versions, allocator settings) because the numbers mean nothing
without it. Targets (the project's, not the papers'): SSR-Net batch-1 <= 0.25 ms;
SepHSR(30,10) >= 5,000 faces/s fp32 and >= 10,000 int8 at batch 256; ONNX >= 5x faster
than torch eager at batch 1; a 640x480 photo with one face <= 15 ms end to end.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agekit.export.onnx import export_onnx, read_sidecar, sample_crops
from agekit.face.io import read_image
from agekit.inference.backends import OnnxRunner, TorchRunner
from agekit.inference.estimator import Estimator
from agekit.inference.options import DEFAULT_DETECTOR
from agekit.methods import load_method
from agekit.models.checkpoint import LoadedModel, save_checkpoint
from agekit.models.complexity import complexity
from agekit.models.registry import create_model, model_entry
from agekit.preprocessing import network_input

DEFAULT_MODELS = ("ssrnet", "sephsr_30_10", "c3ae_plain")
# glibc malloc settings that keep big batch buffers mapped between runs (no mmap/munmap or trim per call);
# they must be in the environment before Python starts, so bench can only report them.
MALLOC_GUIDANCE = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000", "MALLOC_TOP_PAD_": "1000000000"}
TARGETS = {
    "ssrnet_b1_ms": 0.25,
    "sephsr_30_10_fp32_fps": 5000.0,
    "sephsr_30_10_int8_fps": 10000.0,
    "onnx_vs_torch_b1": 5.0,
    "photo_ms": 15.0,
}


def all_cores() -> int:
    """Cores this process may run on (its CPU affinity), else the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine_info(threads: int, batch_threads: int | None = None) -> dict[str, Any]:
    """CPU model (from /proc/cpuinfo), core count, library versions and allocator environment."""
    cpu = platform.processor() or platform.machine()
    flags: list[str] = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                flags = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile",
                                     "amx_bf16", "amx_int8") if f in have]
                break
    except OSError:
        pass
    if flags:
        cpu += " [" + " ".join(flags) + "]"
    import onnxruntime

    env = {k: v for k, v in os.environ.items() if k.startswith(("MALLOC", "OMP_", "MKL_", "LD_PRELOAD", "AGEKIT_ORT"))}
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "threads": threads,
        "batch_threads": batch_threads or threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "env": env,
        "malloc_missing": {k: v for k, v in MALLOC_GUIDANCE.items() if os.environ.get(k) != v},
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def _median_call(fn: Callable[[], Any], repeats: int, warmup: int, clock: Callable[[], float]) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = clock()
        fn()
        times.append(clock() - t)
    return statistics.median(times)


def cpu_call(fn: Callable[[], Any], repeats: int, warmup: int = 3) -> float:
    """Median process CPU time of ``fn()`` in seconds (all threads; steadier than wall time on a shared machine)."""
    return _median_call(fn, repeats, warmup, time.process_time)


def time_call(fn: Callable[[], Any], repeats: int, warmup: int = 10) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` calls after ``warmup`` calls."""
    return _median_call(fn, repeats, warmup, time.perf_counter)


def bench_inputs(name: str, batch: int = 256, config: dict[str, Any] | None = None) -> tuple[Any, Any, np.ndarray]:
    """The zoo model ``name`` (built with ``config``) with seeded random weights (eval mode), its preprocessing spec
    and a float32 batch of ``batch`` network inputs cut from sample faces: what ``agekit bench`` (and the
    benchmarks/ scripts) time."""
    torch.manual_seed(0)  # the same random weights every run (timings do not depend on them; parity does, a little)
    model = create_model(name, **(config or {})).eval()
    spec = getattr(model, "preprocess", None) or model_entry(name).preprocess
    crops, _ = sample_crops(spec, min(batch, 64))
    x = network_input(crops, spec)
    return model, spec, np.concatenate([x] * (batch // len(x) + 1))[:batch]


def bench_model(name: str, threads: int = 1, repeats: int = 200, batch: int = 256, int8: bool = True,
                workdir: str | Path | None = None, batch_threads: int | None = None,
                config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Batch-1 latency (ms) with ``threads`` and batch throughput (faces/s) with ``batch_threads`` per backend
    (``config``: the model's registry configuration overrides, e.g. LRN's ``input_size`` and ``stem``)."""
    entry = model_entry(name)
    model, spec, xb = bench_inputs(name, batch, config)
    size = tuple(getattr(model, "input_size", None) or entry.input_size)
    c = complexity(model, size)
    x1 = xb[:1]
    bt = batch_threads or threads
    row: dict[str, Any] = {"model": name, **({"config": dict(config)} if config else {}), "params": c.params,
                           "macs": c.macs, "input": list(size), "batch": batch, "threads": threads, "batch_threads": bt}
    method = load_method(None, name)
    runners: dict[str, Any] = {"torch": (TorchRunner(model, method, threads=threads), TorchRunner(model, method, threads=bt))}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        # random weights: SSR-Net's division by s1 * (1 + delta) can magnify float32 rounding to ~2e-4 years here
        # (trained weights stay within export's 1e-4); the bench checks the graph with a looser bound
        rep = export_onnx(LoadedModel(model, name, dict(config or {}), spec, None, {}), Path(tmp) / f"{name}.onnx",
                          int8=int8, atol=1e-3)
        row["parity_fp32"] = rep.parity.get("age", max(rep.parity.values(), default=0.0))
        row["onnx_padded_channels"] = read_sidecar(rep.path)["onnx"].get("padded_channels")
        runners["onnx_fp32"] = (OnnxRunner(rep.path, threads=threads), OnnxRunner(rep.path, threads=bt))
        if int8 and rep.int8_path:
            runners["onnx_int8"] = (OnnxRunner(rep.int8_path, threads=threads), OnnxRunner(rep.int8_path, threads=bt))
            row["int8_mode"] = rep.int8_mode
            row["int8_age_mean_drift"] = rep.int8_drift.get("age mean|diff|")
        for key, (run1, runb) in runners.items():
            row[f"{key}_b1_ms"] = 1e3 * time_call(lambda run1=run1: run1(x1), repeats)
            t = time_call(lambda runb=runb: runb(xb), max(5, repeats // 20), warmup=2)
            row[f"{key}_fps"] = batch / t
    torch.set_num_threads(threads)
    row["onnx_vs_torch_b1"] = row["torch_b1_ms"] / row["onnx_fp32_b1_ms"]
    return row


def _photo(seed: int = 0) -> tuple[np.ndarray, str]:
    """A 640x480 RGB photo with one face: a UTKFace image (when ../shared is present) pasted on a textured background."""
    import cv2

    rng = np.random.default_rng(seed)
    bg = cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), (0, 0), 8)
    shared = Path(os.environ.get("AGEKIT_SHARED", Path(__file__).resolve().parents[3].parent / "shared"))
    faces = sorted((shared / "data" / "utkface" / "UTKFace").glob("3*_1_0_*.jpg*"))[:1]
    if not faces:
        raise FileNotFoundError(f"no UTKFace image under {shared} to make a photo with a real face (set AGEKIT_SHARED)")
    face = cv2.resize(read_image(faces[0]), (180, 180))
    bg[150:330, 230:410] = face
    return bg, f"640x480 with one 180x180 face from {faces[0].name}"


def bench_photo(model: str | None = None, threads: int = 1, repeats: int = 30, detector: str = DEFAULT_DETECTOR,
                **detector_kwargs: Any) -> dict[str, Any]:
    """End-to-end latency (ms) of one 640x480 JPEG photo: decode, detect, align + crop, estimate (ONNX).

    ``model``: None = the shipped defaults (``agekit predict``'s "age" and "gender", with the
    flip averaging their cards ask for); a zoo name = that network with random weights.
    The four stages are timed one after another in each repetition (medians reported), and
    the whole ``Estimator.predict(path)`` call separately (wall and CPU time).
    """
    import cv2

    img, what = _photo()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "photo.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        age, gender = ("age", "gender") if model is None else (
            save_checkpoint(Path(tmp) / f"{model}.pt", create_model(model), name=model), None)
        est = Estimator.from_pretrained(age, gender=gender, backend="onnx", detector=detector, cache_dir=tmp,
                                        threads=threads, **detector_kwargs)
        res = est.predict(path)[0]
        pipe = est.pipeline
        stages: dict[str, list[float]] = {"decode_ms": [], "detect_ms": [], "align_crop_ms": [], "estimate_ms": []}
        for i in range(repeats + 3):
            t0 = time.perf_counter()
            rgb = read_image(path)
            t1 = time.perf_counter()
            dets = pipe.detector.detect(rgb)
            t2 = time.perf_counter()
            fr = pipe.crop_detections(rgb, dets)
            t3 = time.perf_counter()
            if fr.faces:
                est._estimate([({}, f) for f in fr.faces])
            t4 = time.perf_counter()
            if i >= 3:
                for k, (a, b) in zip(stages, ((t0, t1), (t1, t2), (t2, t3), (t3, t4))):
                    stages[k].append(1e3 * (b - a))
        row = {
            "photo": what,
            "model": est.describe(),
            "detector": f"{detector} {detector_kwargs or ''}".strip(),
            "faces_found": len(res["faces"]),
            **{k: statistics.median(v) for k, v in stages.items()},
            "total_ms": 1e3 * time_call(lambda: est.predict(path), repeats, 3),
            "total_cpu_ms": 1e3 * cpu_call(lambda: est.predict(path), repeats),
        }
    return row


def render_markdown(result: dict[str, Any]) -> str:
    """The bench result as Markdown: machine, per-model table, photo breakdown, targets."""
    m = result["machine"]
    lines = [
        "# agekit bench",
        "",
        f"- CPU: {m['cpu']}; {m['cores']} cores visible ({m['affinity_cores']} in affinity); {m['threads']} intra-op "
        f"threads at batch 1 and for the photo, {m.get('batch_threads', m['threads'])} for batch {result['batch']}",
        f"- Python {m['python']}, torch {m['torch']}, onnxruntime {m['onnxruntime']}, numpy {m['numpy']}; load average "
        f"{m.get('load_average') or '-'} (1/5/15 min)",
        f"- environment: {m['env'] or 'no MALLOC_/OMP_/MKL_ settings'}",
        *([f"- allocator: for steadier batch timings start Python with "
           f"`{' '.join(f'{k}={v}' for k, v in MALLOC_GUIDANCE.items())}` (not set now: "
           f"{', '.join(m['malloc_missing'])}; they cannot be set from inside Python)"] if m.get("malloc_missing") else []),
        f"- command: `{result['command']}`",
        "",
        "| model | params | MACs | torch b1 ms | ONNX fp32 b1 ms | ONNX int8 b1 ms | ONNX/torch b1 | "
        f"torch b{result['batch']} faces/s | fp32 faces/s | int8 faces/s | int8 age drift (y) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def f(v: Any, nd: int = 3) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:,.0f}" if v >= 1000 else f"{v:.{nd}f}"
        return f"{v:,}"

    for r in result["models"]:
        if "error" in r:
            lines.append(f"| {r['model']} | error: {r['error']} |")
            continue
        lines.append(
            f"| {r['model']} | {f(r['params'])} | {f(r['macs'])} | {f(r['torch_b1_ms'])} | {f(r['onnx_fp32_b1_ms'])} | "
            f"{f(r.get('onnx_int8_b1_ms'))} | {f(r['onnx_vs_torch_b1'], 1)}x | {f(r['torch_fps'])} | {f(r['onnx_fp32_fps'])} | "
            f"{f(r.get('onnx_int8_fps'))} | {f(r.get('int8_age_mean_drift'), 2)} |"
        )
    padded = [r for r in result["models"] if r.get("onnx_padded_channels")]
    if padded:
        lines.append("")
        lines += [f"- {r['model']}: the ONNX graphs are its equal network with {r['onnx_padded_channels']['from']} channels "
                  f"zero-padded to {r['onnx_padded_channels']['to']} (`agekit export`'s default `--pad-channels 16`: "
                  "ONNX Runtime's blocked kernels need a multiple of the SIMD width); params and MACs are the original's"
                  for r in padded]
    p = result.get("photo")
    if p:
        lines += ["", "## One photo end to end", ""]
        if "error" in p:
            lines.append(f"skipped: {p['error']}")
        else:
            lines += [
                f"{p['photo']}; detector {p['detector']}; {p['model']}; faces found: {p['faces_found']}. The four stages are "
                "medians of the same repetitions; the totals time whole `Estimator.predict(path)` calls.",
                "",
                "| decode | detect | align + crop | estimate | total (wall) | total (CPU) |",
                "| ---: | ---: | ---: | ---: | ---: | ---: |",
                f"| {p['decode_ms']:.2f} ms | {p['detect_ms']:.2f} ms | {p['align_crop_ms']:.2f} ms | {p['estimate_ms']:.2f} ms "
                f"| {p['total_ms']:.2f} ms | {p.get('total_cpu_ms', float('nan')):.2f} ms |",
            ]
    lines += ["", "## Targets", ""]
    lines += [f"- {t['what']}: measured {t['measured']}, target {t['target']}: {'met' if t['met'] else 'NOT met'}"
              for t in result["targets"]]
    return "\n".join(lines) + "\n"


def check_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each project target with the measured value (targets whose model was not run are left out)."""
    rows = {r["model"]: r for r in result["models"] if "error" not in r}
    out = []

    def add(what: str, measured: float | None, target: float, higher: bool) -> None:
        if measured is not None:
            out.append({"what": what, "measured": round(measured, 4), "target": (">= " if higher else "<= ") + f"{target:g}",
                        "met": measured >= target if higher else measured <= target})

    if "ssrnet" in rows:
        add("SSR-Net ONNX fp32 batch-1 latency (ms)", rows["ssrnet"]["onnx_fp32_b1_ms"], TARGETS["ssrnet_b1_ms"], False)
    if "sephsr_30_10" in rows:
        r = rows["sephsr_30_10"]
        add(f"SepHSR(30,10) fp32 faces/s at batch {r['batch']}", r["onnx_fp32_fps"], TARGETS["sephsr_30_10_fp32_fps"], True)
        add(f"SepHSR(30,10) int8 faces/s at batch {r['batch']}", r.get("onnx_int8_fps"), TARGETS["sephsr_30_10_int8_fps"], True)
    for name, r in rows.items():
        add(f"{name} ONNX vs torch eager speed-up at batch 1", r["onnx_vs_torch_b1"], TARGETS["onnx_vs_torch_b1"], True)
    p = result.get("photo") or {}
    if "total_ms" in p:
        add("640x480 photo, one face, end to end (ms)", p["total_ms"], TARGETS["photo_ms"], False)
    if "total_cpu_ms" in p:
        add("640x480 photo, one face, end to end (CPU ms)", p["total_cpu_ms"], TARGETS["photo_ms"], False)
    return out


def run_bench(models: Sequence[str] | None = None, out: str | Path | None = None, repeats: int = 200, threads: int = 1,
              photo: bool = True, int8: bool = True, throughput_batch: int = 256, printer: Callable[[str], None] = print,
              batch_threads: int | None = None) -> dict[str, Any]:
    """Run the benchmark, print Markdown, and write ``out`` (.md) plus the same stem .json when given.

    ``batch_threads``: intra-op threads for the batch throughput (default: all cores, as the target asks).
    """

    torch.set_num_threads(threads)
    batch_threads = batch_threads or all_cores()
    result: dict[str, Any] = {"machine": machine_info(threads, batch_threads),
                              "command": "agekit " + " ".join(sys.argv[1:]) if sys.argv else "run_bench",
                              "batch": throughput_batch, "models": []}
    for name in models or DEFAULT_MODELS:
        try:
            result["models"].append(bench_model(name, threads, repeats, throughput_batch, int8, batch_threads=batch_threads))
        except Exception as e:  # one model failing does not hide the others
            result["models"].append({"model": name, "error": f"{type(e).__name__}: {e}"})
    if photo:
        try:
            result["photo"] = bench_photo(threads=threads)
        except Exception as e:
            result["photo"] = {"error": f"{type(e).__name__}: {e}"}
    result["targets"] = check_targets(result)
    md = render_markdown(result)
    printer(md)
    if out:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".md").write_text(md)
        out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    return result
