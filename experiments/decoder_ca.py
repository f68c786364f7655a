"""Decoders aimed at CA(k) against the mean and median of a DEX/DLDL (or distilled DLDL) age distribution.

The window decoder returns argmax_a P(|age - a| <= k) under the predicted distribution (each one-year bin's mass
spread over its width; candidates every 0.1 year), the estimate that maximises the expected CA(k); "mix" averages
it with the median. Each face's two views (plain, mirrored) are decoded apart and averaged, as ``--flip`` does.
The window decoder is ``agekit.evaluation.decoders.window_decode``.

    python experiments/decoder_ca.py src/agekit/weights/agenet_mt_distill_ema100_utkface.safetensors \
        --data caches/utkface --split val [--windows 3,4,5,6] [--json experiments/results/decoders_val.json]

``--json`` adds the table (MAE, CA(3), CA(5), mean signed error overall and at 0-12 and 40-59) under the checkpoint
and cache in that file (kept across runs), so that a decoder is chosen on validation faces by a rerunnable command.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch


def view_probs(ckpt: str, data: str, split: str, protocol: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 2, bins) probabilities of the plain and mirrored view, the ages, and the bin centres."""
    from agekit.data.cache import PreparedCache
    from agekit.models.checkpoint import load_checkpoint
    from agekit.outputs import output_to_float
    from agekit.preprocessing import network_input
    from agekit.training.datamodule import resolve_protocol
    from agekit.training.teacher import method_for_loaded

    loaded = load_checkpoint(ckpt)
    method = method_for_loaded(loaded)
    method = getattr(method, "student_method", method)  # a distilled student decodes with its own method
    cache = PreparedCache(data)
    rows = np.sort(np.asarray(cache.splits(resolve_protocol(cache, protocol))[split], dtype=np.int64))
    images, model, probs = cache.view(loaded.preprocess.view_key), loaded.model.eval(), []
    with torch.no_grad():
        for s in range(0, len(rows), 256):
            x = network_input(torch.from_numpy(images[rows[s : s + 256]]), loaded.preprocess)
            outs = [output_to_float(model(v)) for v in (x, x.flip(-1))]
            probs.append(torch.stack([o.logits.float().softmax(1) for o in outs], 1))
    bins = method._bins(outs[0]).float().numpy()
    return torch.cat(probs).numpy(), np.asarray(cache.meta["age"])[rows], bins


def main(argv: list[str] | None = None) -> int:
    from agekit.evaluation.decoders import window_decode
    from agekit.methods.base import distribution_mean_std, distribution_median

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--protocol", default=None, help="split file of the cache (default: its only one)")
    ap.add_argument("--k", default="3,4,5,6", help="window half-widths ('' for none)")
    ap.add_argument("--json", default=None, help="add the table to this JSON file")
    a = ap.parse_args(argv)
    p, y, bins = view_probs(a.checkpoint, a.data, a.split, a.protocol)
    tb = torch.from_numpy(bins)
    per_view = lambda f: np.mean([f(p[:, v]) for v in (0, 1)], 0)  # noqa: E731
    median = per_view(lambda q: distribution_median(torch.from_numpy(q), tb).numpy())
    rows = {"mean": per_view(lambda q: distribution_mean_std(torch.from_numpy(q), tb)[0].numpy()), "median": median}
    for k in (float(x) for x in a.k.split(",") if x.strip()):
        w = per_view(lambda q, k=k: window_decode(q, bins, k))
        rows[f"window k={k:g}"], rows[f"mix median/window k={k:g}"] = w, (median + w) / 2
    print(f"{a.checkpoint} on {a.split} ({len(y)} faces), flip-averaged\n"
          "| decoder | MAE | CA(3) | CA(5) | signed | signed 0-12 | signed 40-59 |\n|---|---:|---:|---:|---:|---:|---:|")
    table = {}
    kids, middle = y <= 12, (y >= 40) & (y <= 59)
    signed = lambda v: "-" if v is None else f"{v:+.3f}"  # noqa: E731
    for name, age in rows.items():
        e = np.abs(age - y)
        d = age - y
        t = {"mae": float(e.mean()), "ca3": float((e <= 3).mean()), "ca5": float((e <= 5).mean()),
             "signed": float(d.mean()), "signed_0_12": float(d[kids].mean()) if kids.any() else None,
             "signed_40_59": float(d[middle].mean()) if middle.any() else None}
        table[name] = {k: (round(v, 4) if v is not None else None) for k, v in t.items()}
        print(f"| {name} | {t['mae']:.3f} | {t['ca3']:.3f} | {t['ca5']:.3f} | {signed(t['signed'])} | "
              f"{signed(t['signed_0_12'])} | {signed(t['signed_40_59'])} |")
    if a.json:
        path = Path(a.json)
        doc = json.loads(path.read_text()) if path.is_file() else {"flip": True, "runs": {}}
        doc["runs"][f"{a.checkpoint} on {a.data}:{a.split}"] = {
            "command": "python experiments/decoder_ca.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "faces": int(len(y)), "decoders": table}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
