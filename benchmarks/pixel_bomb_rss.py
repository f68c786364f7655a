"""Peak memory of a whole ``agekit predict`` process given a pixel bomb: a PNG declaring 20000x20000 pixels.

The PNG is small on disk (every row is there, zeros compressed by zlib: ~390 KB grey, ~1.2 MB RGB) and
would need 1.2 GB as RGB once decoded. ``agekit predict`` refuses it from its header (the pixel cap,
``--max-pixels``), so its peak RSS should stay near that of an ordinary photo's run (target: < 1 GB).
The peak is the largest resident set of the predict process and of any worker it started
(``getrusage(RUSAGE_CHILDREN)`` after it ends), for the bomb and, as a reference, for one 640x480 photo.

    python benchmarks/pixel_bomb_rss.py [--model age] [--out benchmarks/results/pixel_bomb_rss]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

MALLOC_KEYS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def peak_rss_of(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str, float]:
    """(peak RSS in MiB of the process and its children, exit code, stderr's last line, seconds), run in a fresh
    child of a fresh Python so that no earlier child's peak counts."""
    probe = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.monotonic()\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "err = [x for x in r.stderr.splitlines() if x.strip() and not x.startswith('#')]\n"
        "print(json.dumps([peak / 1024, r.returncode, err[-1] if err else '', time.monotonic() - t]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True, env=env, check=True)
    import json

    mib, rc, last, secs = json.loads(out.stdout)
    return mib, rc, last, secs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="age", help="model for agekit predict (default: the shipped age model)")
    ap.add_argument("--size", type=int, default=20000, help="declared width and height of the bomb")
    ap.add_argument("--colour", choices=("grey", "rgb"), default="rgb")
    ap.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    args = ap.parse_args()

    import numpy as np
    from benchutil import write_results
    from PIL import Image

    import badinputs

    with tempfile.TemporaryDirectory() as d:
        bomb = Path(d) / f"bomb-{args.size}x{args.size}.png"
        t = time.monotonic()
        bomb.write_bytes(badinputs.png_bomb(args.size, args.size, colour=2 if args.colour == "rgb" else 0))
        made = time.monotonic() - t
        photo = Path(d) / "photo.jpg"
        face = badinputs.faces(1, 180, seed=1)[0]
        canvas = np.full((480, 640, 3), 128, np.uint8)
        canvas[150:330, 230:410] = face
        Image.fromarray(canvas).save(photo, quality=90)
        rows = []
        for label, extra in (("malloc settings as given", {}),
                             ("glibc defaults", {k: None for k in MALLOC_KEYS})):
            env = {k: v for k, v in {**os.environ, **extra}.items() if v is not None}
            for what, path in (("bomb", bomb), ("640x480 photo", photo)):
                cmd = [sys.executable, "-m", "agekit.cli", "predict", str(path), "--model", args.model, "--no-progress"]
                mib, rc, last, secs = peak_rss_of(cmd, env)
                last = last.replace(d, "TMP")
                rows.append({"input": what, "env": label, "peak_rss_mib": round(mib, 1), "exit": rc,
                             "seconds": round(secs, 2), "stderr_last": last})
                print(f"{what:<14} {label:<26} peak RSS {mib:7.1f} MiB  exit {rc}  {secs:5.1f} s  | {last}")
        size_kb = bomb.stat().st_size / 1024
    verdict = max(r["peak_rss_mib"] for r in rows if r["input"] == "bomb") < 1024
    print(f"bomb: {args.size}x{args.size} {args.colour} PNG, {size_kb:.0f} KB on disk (made in {made:.1f} s); "
          f"peak RSS < 1 GiB: {verdict}")
    info = {"command": "python " + " ".join([sys.argv[0], *sys.argv[1:]]), "size": args.size, "colour": args.colour,
            "file_kb": round(size_kb), "rows": rows, "under_1gib": verdict,
            "malloc_env": {k: os.environ.get(k) for k in MALLOC_KEYS}}
    md = "| input | allocator | peak RSS (MiB) | exit | s |\n|---|---|---|---|---|\n" + "\n".join(
        f"| {r['input']} | {r['env']} | {r['peak_rss_mib']} | {r['exit']} | {r['seconds']} |" for r in rows)
    write_results(args.out, info, md)
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
