#!/usr/bin/env python
"""A shipped model's end-to-end error with each face detector: the photos of held-out test splits, as a user gives
them to ``agekit predict`` (detection, landmarks, alignment, crops, the networks), one detector at a time.

    python experiments/detector_mae.py [--model compact] [--n 600] \
        [--test utkface=caches/utkface:utkface:test:../shared/data/utkface/UTKFace] \
        [--test allagefaces=caches/allagefaces:allagefaces_fixed:test:../shared/data/allagefaces] \
        [--detector cascade --detector mtcnn_fast --detector mtcnn_fast:landmarks=mtcnn ...] \
        [--out experiments/results/detector_mae.json]

Each test set is NAME=CACHE:PROTOCOL:SPLIT:ROOT: the split's rows of a prepared cache give the photos (ROOT/source)
and their labels; a seeded sample of ``--n`` photos is drawn from it. For each photo the face with the largest box is
scored (these photos hold one person). Per detector: the share of photos with a face found, MAE and gender accuracy
on those, MAE on the photos every detector found a face in (the same faces for each), and CPU ms per photo (one
thread, the whole predict call). The caches kept only photos where dlib's HOG (upsample 1) found a face, so the
found share favours dlib; ``benchmarks/detector_recall.py`` measures recall without that bias.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agekit.data.cache import PreparedCache
from agekit.evaluation.cross_dataset import test_rows
from agekit.inference.estimator import Estimator

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DEFAULT_TESTS = [f"utkface=caches/utkface:utkface:test:{DATA / 'utkface' / 'UTKFace'}",
                 f"allagefaces=caches/allagefaces:allagefaces_fixed:test:{DATA / 'allagefaces'}"]
DEFAULT_DETECTORS = ["cascade", "dlib", "mtcnn_fast", "mtcnn_fast:landmarks=mtcnn", "mtcnn"]


def parse_detector(spec: str) -> tuple[str, dict[str, Any]]:
    """``NAME[:KEY=VALUE,...]`` -> (name, keyword arguments); values are read as JSON when they parse, else text."""
    name, _, rest = spec.partition(":")
    kwargs: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        k, sep, v = item.partition("=")
        if not sep:
            raise SystemExit(f"--detector {spec!r}: expected NAME[:KEY=VALUE,...]")
        try:
            kwargs[k] = json.loads(v)
        except json.JSONDecodeError:
            kwargs[k] = v
    return name, kwargs


def sample(spec: str, n: int, seed: int) -> tuple[str, list[tuple[Path, float, int]]]:
    """NAME=CACHE:PROTOCOL:SPLIT:ROOT -> (name, [(photo, age, gender 0 male / 1 female / -1 unknown)])."""
    name, _, rest = spec.partition("=")
    cache_dir, protocol, split, root = rest.split(":", 3)
    cache = PreparedCache(cache_dir)
    _, rows = test_rows(cache, protocol, split)
    meta = cache.meta
    rows = sorted(random.Random(seed).sample(list(rows), min(n, len(rows))))
    return name, [(Path(root) / str(meta["source"][i]), float(meta["age"][i]), int(meta["gender"][i])) for i in rows]


def run(model: str, detector: str, kwargs: dict[str, Any], photos: list[tuple[Path, float, int]]) -> dict[str, Any]:
    """Per photo: (predicted age, female probability) of the largest face or None, and the CPU ms of the call."""
    est = Estimator.from_pretrained(model, detector=detector, threads=1, **kwargs)
    est.predict(cv2.imread(str(photos[0][0]))[:, :, ::-1].copy())  # warm-up: models loaded, sessions built
    preds, ms = [], []
    for path, _, _ in photos:
        t = time.process_time()
        res = est.predict(str(path))[0]
        ms.append(1e3 * (time.process_time() - t))
        faces = res.faces
        if not faces:
            preds.append(None)
            continue
        big = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
        preds.append((float(big.age), None if big.gender_female is None else float(big.gender_female)))
    return {"preds": preds, "ms_median": float(np.median(ms))}


def summarize(preds: list[Any], photos: list[tuple[Path, float, int]], common: list[int]) -> dict[str, Any]:
    """Found share, MAE and gender accuracy on the found faces, MAE on the faces every detector found."""
    found = [i for i, p in enumerate(preds) if p is not None]
    err = {i: abs(preds[i][0] - photos[i][1]) for i in found}
    g = [i for i in found if photos[i][2] >= 0 and preds[i][1] is not None]
    return {"found": len(found) / len(photos), "mae_found": float(np.mean([err[i] for i in found])) if found else None,
            "gender_acc_found": float(np.mean([(preds[i][1] > 0.5) == (photos[i][2] == 1) for i in g])) if g else None,
            "mae_common": float(np.mean([err[i] for i in common])) if common else None, "common": len(common)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="compact")
    ap.add_argument("--test", action="append", default=None, help="NAME=CACHE:PROTOCOL:SPLIT:ROOT (repeatable)")
    ap.add_argument("--detector", action="append", default=None, help="NAME[:KEY=VALUE,...] (repeatable)")
    ap.add_argument("--n", type=int, default=600, help="photos drawn from each test split (seed 0)")
    ap.add_argument("--out", type=Path, default=ROOT / "experiments" / "results" / "detector_mae.json")
    a = ap.parse_args(argv)
    cv2.setNumThreads(1)
    detectors = a.detector or DEFAULT_DETECTORS
    t0 = time.time()
    result: dict[str, Any] = {"model": a.model, "n": a.n, "detectors": detectors, "tests": {}}
    for spec in a.test or DEFAULT_TESTS:
        name, photos = sample(spec, a.n, 0)
        runs = {d: run(a.model, *parse_detector(d), photos) for d in detectors}
        common = [i for i in range(len(photos)) if all(r["preds"][i] is not None for r in runs.values())]
        result["tests"][name] = {"photos": len(photos), "rows": {
            d: {**summarize(r["preds"], photos, common), "ms_per_photo": r["ms_median"]} for d, r in runs.items()}}
        for d, row in result["tests"][name]["rows"].items():
            print(f"{name:12s} {d:28s} found {row['found']:.3f}  MAE {row['mae_found']:.2f}  "
                  f"common MAE {row['mae_common']:.2f} ({row['common']})  gender {row['gender_acc_found']:.3f}  "
                  f"{row['ms_per_photo']:.1f} ms", flush=True)
    result["command"] = "python experiments/detector_mae.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result["seconds"] = round(time.time() - t0, 1)
    result["date"] = time.strftime("%Y-%m-%d")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
