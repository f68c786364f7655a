"""MAE per race within age bands (age-matched fairness check) of a checkpoint on a prepared cache split.

    python experiments/fairness.py src/agekit/weights/age_c3ae_wide_cosine_utkface.safetensors --data caches/utkface \
        [--no-flip] [--json experiments/results/fairness_compact.json]

UTKFace race labels: 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others. Prints a Markdown table
(rows: age bands, columns: races, cells: MAE (n)); flip averaging is on by default, as in the
shipped model cards. ``--json`` also writes the table (MAE and faces per band and race) for the research notes.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

RACES = ("White", "Black", "Asian", "Indian", "Others")
BANDS = ((0, 20), (20, 40), (40, 60), (60, 200))


def main() -> None:
    from agekit.data.cache import PreparedCache
    from agekit.evaluation.evaluate import predict_split
    from agekit.methods import load_method
    from agekit.models.checkpoint import load_checkpoint
    from agekit.training.datamodule import resolve_protocol

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--protocol", default=None)
    ap.add_argument("--no-flip", action="store_true")
    ap.add_argument("--json", default=None, help="also write the table here")
    a = ap.parse_args()
    ld = load_checkpoint(a.checkpoint)
    cache = PreparedCache(a.data)
    rows = np.asarray(cache.splits(resolve_protocol(cache, a.protocol))[a.split])
    pred = predict_split(ld, load_method(ld.method, ld.name, ld.card), cache.view(ld.preprocess.view_key), rows,
                         flip=not a.no_flip)
    age, race = np.asarray(cache.meta["age"])[rows], np.asarray(cache.meta["race"])[rows]
    err = np.abs(np.asarray(pred["age"]) - age)
    print(f"{a.checkpoint} on {a.data} / {a.split}: MAE {err.mean():.3f} (n = {len(rows)}), flip {not a.no_flip}\n")
    print("| age band | " + " | ".join(RACES) + " |\n|---|" + "---:|" * len(RACES))
    table = {}
    for lo, hi in BANDS:
        band = (age >= lo) & (age < hi)
        name = f"{lo}-{hi - 1 if hi < 200 else ''}"
        cells, table[name] = [], {}
        for r in range(len(RACES)):
            m = band & (race == r)
            cells.append(f"{err[m].mean():.2f} ({int(m.sum())})" if m.any() else "-")
            table[name][RACES[r]] = {"mae": round(float(err[m].mean()), 4), "n": int(m.sum())} if m.any() else None
        print(f"| {name} | " + " | ".join(cells) + " |")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({
            "command": "python experiments/fairness.py " + " ".join(sys.argv[1:]), "checkpoint": a.checkpoint,
            "data": a.data, "split": a.split, "flip": not a.no_flip, "faces": int(len(rows)),
            "mae": round(float(err.mean()), 4), "bands": table}, indent=1) + "\n")


if __name__ == "__main__":
    main()
