"""Photos/s of ``Estimator.predict`` on a folder (and frames/s of a video) with 1, 2, ... worker processes.

Two folders: UTKFace photos (200x200 face crops; default the README's main-job glob) and
``--photos N`` generated 640x480 photos, each one UTKFace face (180 px, a different one per
photo) pasted at a random place on a blurred-noise background. Each worker count is timed
``--rounds`` times in interleaved order; a round is one whole ``predict`` call (pool start-up
included, model loading not). The results of every worker count are checked equal to those of
the first. ``--video-frames N``: also a 640x480 MJPG video of N frames (the generated photos in turn,
each shown for 5 frames), through ``process_video`` (tracking and smoothing included). Shipped
age + gender weights.

    python benchmarks/predict_folder.py [--workers 1,2] [--rounds 2] [--photos 200] [--out benchmarks/results/predict_folder]
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

SHARED = Path(os.environ.get("AGEKIT_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def make_photos(folder: Path, n: int, seed: int = 0) -> int:
    """``n`` 640x480 JPEG photos with one UTKFace face each; returns how many were written."""
    import cv2
    import numpy as np

    from agekit.face.io import read_image

    faces = sorted((SHARED / "data" / "utkface" / "UTKFace").glob("3*_1_*.jpg*"))[:n]
    if len(faces) < n:
        raise FileNotFoundError(f"need {n} UTKFace images under {SHARED} (set AGEKIT_SHARED)")
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(faces):
        bg = cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), (0, 0), 8)
        y, x = int(rng.integers(0, 480 - 180)), int(rng.integers(0, 640 - 180))
        bg[y : y + 180, x : x + 180] = cv2.resize(read_image(f), (180, 180))
        cv2.imwrite(str(folder / f"photo{i:04d}.jpg"), cv2.cvtColor(bg, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return n


def make_video(path: Path, photos: list[Path], frames: int) -> None:
    """An MJPG video of ``frames`` 640x480 frames: ``photos`` in turn, each for 5 frames (25 fps)."""
    import cv2

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (640, 480))
    if not w.isOpened():
        raise RuntimeError("OpenCV cannot write an MJPG video here")
    for i in range(frames):
        w.write(cv2.imread(str(photos[(i // 5) % len(photos)])))
    w.release()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--glob", default=str(SHARED / "data" / "utkface" / "UTKFace" / "2?_1_0_2017011*"))
    ap.add_argument("--photos", type=int, default=200, help="generated 640x480 photos (0: none)")
    ap.add_argument("--video-frames", type=int, default=300, help="frames of the generated video (0: none)")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    ap.add_argument("--no-malloc-env", action="store_true")
    args = ap.parse_args()
    with_malloc_env(args.no_malloc_env)
    from agekit.inference.bench import machine_info
    from agekit.inference.estimator import Estimator, expand_inputs
    from agekit.inference.video import process_video

    workers = [int(w) for w in args.workers.split(",")]
    est = Estimator.from_pretrained("age", gender="gender")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sets = {"UTKFace crops": args.glob}
        if args.photos:
            make_photos(Path(tmp) / "photos", args.photos)
            sets[f"{args.photos} generated 640x480 photos"] = str(Path(tmp) / "photos")
        if args.photos and args.video_frames:
            video = Path(tmp) / "clip.avi"
            make_video(video, sorted((Path(tmp) / "photos").iterdir()), args.video_frames)
            sets[f"{args.video_frames}-frame 640x480 video"] = video
        for label, x in sets.items():
            is_video = isinstance(x, Path) and x.suffix == ".avi"
            run = ((lambda w, x=x: list(process_video(est, x, workers=w))) if is_video
                   else (lambda w, x=x: est.predict(x, workers=w)))
            n = args.video_frames if is_video else len(expand_inputs(x))
            est.predict(sorted(Path(tmp, "photos").iterdir())[:8] if args.photos else x, workers=1)  # warm-up
            secs: dict[int, list[float]] = {w: [] for w in workers}
            ref = None
            for _ in range(args.rounds):
                for w in workers:
                    t0 = time.perf_counter()
                    res = run(w)
                    secs[w].append(time.perf_counter() - t0)
                    ages = [r["faces"][0]["age"] if r["faces"] else None for r in res]
                    if ref is None:
                        ref = ages
                    elif ages != ref and any(abs((a or 0) - (b or 0)) > 1e-4 for a, b in zip(ages, ref)):
                        raise AssertionError(f"{label}: {w} workers gave other ages than the first run")
            found = sum(a is not None for a in ref or [])
            for w in workers:
                row = {"set": label, "photos": n, "faces_found": found, "workers": w,
                       "seconds": [round(s, 3) for s in secs[w]],
                       "photos_per_s": round(n / statistics.median(secs[w]), 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    info = {"command": "python " + " ".join(sys.argv), "machine": machine_info(1), "model": est.describe(),
            "load_average": os.getloadavg(), "rows": rows}
    md = ["| photos | faces found | workers | seconds per call (rounds) | photos (frames)/s, median |",
          "|---|---:|---:|---|---:|"]
    md += [f"| {r['set']} ({r['photos']}) | {r['faces_found']} | {r['workers']} | {', '.join(map(str, r['seconds']))} | "
           f"{r['photos_per_s']} |" for r in rows]
    text = "\n".join(md)
    print(text)
    write_results(args.out, info, f"{info['model']}\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
