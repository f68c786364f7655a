"""Evaluate an ensemble of checkpoints - the distillation teacher - the way `agekit evaluate` evaluates one.

The ensemble is :class:`agekit.training.teacher.TeacherEnsemble`, exactly what a ``distill`` recipe
learns from (mean of the members' decoded ages; mean 101-bin distribution). For each split it
writes ``OUT/rep_SPLIT[--flip]/report.json`` with the usual plots, and ``OUT/card.json``: the
members, their summed parameters and MACs, and the metrics.

    python experiments/ensemble.py RUN_A/final.safetensors RUN_B/final.safetensors RUN_C/final.safetensors --data CACHE \
        --splits val test --flip --out experiments/results/teacher_ensemble
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--data", required=True, help="prepared cache")
    ap.add_argument("--protocol", default=None)
    ap.add_argument("--splits", nargs="+", default=["val", "test"])
    ap.add_argument("--flip", action="store_true", help="average each face with its mirror image")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args(argv)

    import torch

    from agekit.data.cache import PreparedCache
    from agekit.evaluation.evaluate import predict_split
    from agekit.evaluation.report import write_report
    from agekit.methods.base import Method
    from agekit.models.checkpoint import load_checkpoint
    from agekit.training.datamodule import resolve_protocol
    from agekit.training.teacher import load_teacher

    if a.threads:
        torch.set_num_threads(a.threads)
    members = [load_checkpoint(p) for p in a.checkpoints]
    spec = members[0].preprocess
    ens = load_teacher(a.checkpoints, spec)
    cache = PreparedCache(a.data)
    protocol = resolve_protocol(cache, a.protocol)
    splits = cache.splits(protocol)
    out = Path(a.out)
    cards = [m.card or {} for m in members]
    card = {
        "teacher": "ensemble (agekit.training.teacher.TeacherEnsemble): mean age, mean 101-bin distribution",
        "members": [{"checkpoint": str(p), "model": m.name, "recipe": c.get("recipe"),
                     "params": (c.get("complexity") or {}).get("params"), "macs": (c.get("complexity") or {}).get("macs")}
                    for p, m, c in zip(a.checkpoints, members, cards)],
        "preprocess": spec.to_dict(), "data": str(a.data), "protocol": protocol, "flip": a.flip, "metrics": {},
    }
    card["params"] = sum(int(m["params"] or 0) for m in card["members"])
    card["macs"] = sum(int(m["macs"] or 0) for m in card["members"])
    loaded = SimpleNamespace(model=ens, preprocess=spec)
    for split in a.splits:
        rows = np.asarray(splits[split], dtype=np.int64)
        t0 = time.perf_counter()
        pred = predict_split(loaded, Method(), cache.view(spec.view_key), rows, flip=a.flip)
        true = {k: np.asarray(cache.meta[k])[rows] for k in ("age", "gender", "race") if k in cache.meta}
        info = {"model": "ensemble", "members": a.checkpoints, "split": split, "n": int(len(rows)), "flip": a.flip,
                "seconds": round(time.perf_counter() - t0, 2), "protocol": protocol}
        rep = write_report(out / (f"rep_{split}--flip" if a.flip else f"rep_{split}"), pred, true, info,
                           title=f"teacher ensemble of {len(members)}, {split}")
        m = rep["metrics"]
        card["metrics"][split] = {"mae": m.get("mae"), "ca3": (m.get("ca") or {}).get("3"),
                                  "ca5": (m.get("ca") or {}).get("5"), "n": int(len(rows))}
        print(f"{split}: MAE {m.get('mae'):.3f}  CA(3) {card['metrics'][split]['ca3']:.3f}  "
              f"CA(5) {card['metrics'][split]['ca5']:.3f}  (n = {len(rows)})", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "card.json").write_text(json.dumps(card, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
