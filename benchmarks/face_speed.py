"""Time the face pipeline (dlib HOG + 5-point landmarks + similarity alignment + one 64 px crop), single thread.

Usage: python benchmarks/face_speed.py [--utkface DIR] [--n 50] [--upsample 1] [--max-side 320] [--grey 0 1]
                                 [--cascade]

Two inputs: UTKFace's 200x200 photos as they are, and 640x480 photos made by pasting a
UTKFace photo (scaled to 240 px) onto a noisy background at a random place. Reports the
median wall and CPU milliseconds per photo and the fraction where exactly one face was found.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cv2

cv2.setNumThreads(1)

import numpy as np  # noqa: E402

from agekit.face import FacePipeline, read_image  # noqa: E402
from agekit.preprocessing import SSRNET  # noqa: E402


def make_640(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 640x480 photo with the face (scaled to 240 px) pasted at a random place."""
    canvas = rng.integers(60, 200, size=(480, 640, 3), dtype=np.uint8)
    canvas = cv2.GaussianBlur(canvas, (0, 0), 3)
    f = cv2.resize(face, (240, 240), interpolation=cv2.INTER_LINEAR)
    y, x = int(rng.integers(0, 480 - 240)), int(rng.integers(0, 640 - 240))
    canvas[y : y + 240, x : x + 240] = f
    return canvas


def time_pipeline(pipe: FacePipeline, images: list[np.ndarray]) -> tuple[float, float, float]:
    """Median wall ms and CPU ms per image (detect + align + crop), fraction with exactly one face.

    CPU time is the figure to read on a shared machine: wall time grows with other load.
    """
    pipe.process(images[0])  # load the models
    wall, cpu, found = [], [], 0
    for img in images:
        t0, c0 = time.perf_counter(), time.process_time()
        r = pipe.process(img)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        found += len(r.faces) == 1 and not r.dropped
    return 1000 * float(np.median(wall)), 1000 * float(np.median(cpu)), found / len(images)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(os.environ.get("AGEKIT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    default = shared / "data/utkface/UTKFace"
    ap.add_argument("--utkface", type=Path, default=default)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--upsample", type=int, nargs="*", default=[1, 0])
    ap.add_argument("--max-side", type=int, nargs="*", default=[0, 320])
    ap.add_argument("--grey", type=int, nargs="*", default=[0], help="1: HOG on a grey image")
    ap.add_argument("--cascade", action="store_true", help="also time the default photo detector, 'cascade'")
    args = ap.parse_args()
    files = sorted(args.utkface.glob("*.jpg"))[:: max(1, 23708 // args.n)][: args.n]
    if not files:
        raise SystemExit(f"no UTKFace images under {args.utkface}")
    rng = np.random.default_rng(0)
    small = [read_image(f) for f in files]
    large = [make_640(im, rng) for im in small]
    print(f"{len(files)} images, single thread, cv2 threads 1")
    settings = [(f"upsample={up} max_side={ms or 'none':>4} grey={g}", dict(detector="dlib", upsample=up,
                 max_side=ms or None, grey=bool(g))) for up in args.upsample for ms in args.max_side for g in args.grey]
    if args.cascade:
        settings.append(("cascade", dict(detector="cascade")))
    for label, kw in settings:
        pipe = FacePipeline([SSRNET], **kw)
        for name, imgs in (("200x200", small), ("640x480", large)):
            t, c, ok = time_pipeline(pipe, imgs)
            print(f"{label} {name}: wall {t:6.1f} ms, cpu {c:6.1f} ms per photo, one face found in {ok:.0%}")


if __name__ == "__main__":
    main()
