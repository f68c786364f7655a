"""Train a set of zoo models with their recipes on a prepared cache; one results table.

For each recipe: ``agekit.training.train`` (epochs overridden), then ``agekit.training.evaluate``
on the test split. Writes OUT/results.md (Markdown table) and OUT/results.json with MAE,
CA(3), CA(5), parameters, MACs, training time and training images/s, plus every run's
directory (checkpoints, logs, report with plots). Recipes whose crops the cache lacks are
reported and skipped.

    python bench/train_zoo.py --data /tmp/utk_cache --epochs 5 --out runs/zoo \
        [--recipes sephsr_30_10_utkface,hsr_30_10_utkface] [--set trainer.precision=bf16-mixed]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

DEFAULT = ("ssrnet_utkface", "c3ae_plain_utkface", "hsr_30_10_utkface", "sephsr_30_10_utkface",
           "mobilenetv1_025_utkface", "c3ae_full_utkface", "sephsr_90_30_k3_utkface", "bsephsr_90_30_utkface")
MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000", "MALLOC_TOP_PAD_": "1000000000"}


def run_one(recipe: str, data: str, epochs: int, out: Path, extra: list[str]) -> dict:
    """Train and evaluate one recipe; a row of the results table."""
    from agekit.data.cache import PreparedCache
    from agekit.training.engine import evaluate, resolve_spec, train
    from agekit.training.recipes import load_recipe

    over = [f"data.cache={data}", f"trainer.max_epochs={epochs}", "trainer.progress_bar=false", *extra]
    r = load_recipe(recipe, over)
    spec = resolve_spec(r["model"]["name"], r.get("preprocess"), r["model"].get("config"))
    views = PreparedCache(data).views
    if spec.view_key not in views:
        return {"recipe": recipe, "model": r["model"]["name"], "skipped": f"cache has no view {spec.view_key} ({views})"}
    t0 = time.perf_counter()
    res = train(recipe, out / recipe, overrides=over)
    wall = time.perf_counter() - t0
    rep = evaluate(res.final, data, r["data"].get("test_split") or "test", r["data"].get("protocol"),
                   out / recipe / "report")
    m, card = rep["metrics"], res.card
    cx = card.get("complexity", {})
    return {
        "recipe": recipe, "model": r["model"]["name"], "epochs": card.get("epochs"), "mae": m.get("mae"),
        "ca3": (m.get("ca") or {}).get("3"), "ca5": (m.get("ca") or {}).get("5"), "params": cx.get("params"),
        "macs": cx.get("macs"), "train_s": card.get("train_seconds"), "wall_s": round(wall, 1),
        "train_img_s": card.get("train_images_per_s"), "val_mae": card.get("val_metrics", {}).get("val/mae"),
        "precision": card.get("precision"), "final": str(res.final),
    }


def markdown(rows: list[dict]) -> str:
    """The results as a Markdown table."""
    head = "| recipe | model | epochs | MAE | CA(3) | CA(5) | params | MACs (M) | train time (s) | img/s |\n"
    head += "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    f = lambda v, fmt: "-" if v is None else format(v, fmt)  # noqa: E731
    lines = []
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['recipe']} | {r['model']} | skipped: {r['skipped']} |||||||")
            continue
        lines.append(
            f"| {r['recipe']} | {r['model']} | {r['epochs']} | {f(r['mae'], '.2f')} | {f(r['ca3'], '.3f')} | "
            f"{f(r['ca5'], '.3f')} | {f(r['params'], ',')} | {f(r['macs'] and r['macs'] / 1e6, '.2f')} | "
            f"{f(r['train_s'], '.0f')} | {f(r['train_img_s'], '.0f')} |"
        )
    return head + "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="prepared cache (e.g. UTKFace with protocol utkface)")
    ap.add_argument("--recipes", default=",".join(DEFAULT))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--out", default="runs/zoo")
    ap.add_argument("--set", action="append", default=[], help="extra recipe override for every run")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for recipe in [r for r in args.recipes.split(",") if r]:
        try:
            row = run_one(recipe, args.data, args.epochs, out, args.set)
        except Exception as e:  # one failing recipe must not lose the others' results
            row = {"recipe": recipe, "model": "?", "skipped": f"{type(e).__name__}: {e}"}
        rows.append(row)
        print(json.dumps(row), flush=True)
        (out / "results.json").write_text(json.dumps({"data": args.data, "epochs": args.epochs, "rows": rows}, indent=1))
        (out / "results.md").write_text(markdown(rows))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
