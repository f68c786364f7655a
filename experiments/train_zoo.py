"""Train a set of zoo models with their recipes on a prepared cache; one results table.

For each recipe: ``agekit.training.train`` (epochs overridden), then ``agekit.training.evaluate``
on the test split. Writes OUT/results.md (Markdown table) and OUT/results.json with MAE,
CA(3), CA(5) (age models), gender accuracy (gender and multi-task models), age-group exact
and 1-off accuracy (LMTCNN), parameters, MACs, training time, training images/s, the images
each model saw and the settings, plus every run's directory (checkpoints, logs, report).

A recipe whose crops the cache lacks is trained from the cache's ``single`` view of the
same margin, upsampled on the fly into OUT/_derived (LMTCNN's 227 crops of the 256 square
from the 64x64 crops); the table says so. Recipes with ``data.age_groups`` also get the
derived Adience groups written into that derived cache's metadata, so the test report has
the age-group accuracies.

    python experiments/train_zoo.py --data /tmp/utk_cache --epochs 3 --out runs/zoo \
        [--recipes sephsr_30_10_utkface,hsr_30_10_utkface] [--set trainer.limit_train_batches=100] \
        [--set-for c3ae_plain_utkface:trainer.precision=bf16-mixed]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

# Every paper's method (SSR-Net, SSR-Net gender, HSR, C3AE, LRN, LMTCNN) and the two baselines (DEX, L1).
DEFAULT = ("ssrnet_utkface", "ssrnet_gender_utkface", "sephsr_30_10_utkface", "hsr_30_10_utkface",
           "c3ae_plain_utkface", "c3ae_full_utkface", "lrn_resnet10_tiny_64_utkface", "lmtcnn_1_1_utkface",
           "dex_utkface", "mobilenetv1_025_utkface")

# glibc's allocator otherwise returns freed memory to the OS after every step, which slows CPU training markedly
MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000", "MALLOC_TOP_PAD_": "1000000000"}


def with_malloc_env() -> None:
    """Re-execute this script with :data:`MALLOC_ENV` unless it is set already."""
    if any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})


def derived_cache(data: str, spec: Any, out: Path, age_groups: str | None) -> tuple[str, str]:
    """A cache with ``spec``'s view upsampled from the ``single`` view of the same margin; (path, note).

    ``lmtcnn`` specs get the ``resize`` square, ``single`` specs the ``size`` square (bilinear,
    OpenCV). Metadata are copied (with the Adience groups derived from the age when
    ``age_groups`` is set), splits and info are linked. Built once per view under ``out``.
    """
    import cv2
    import numpy as np

    from agekit.data.cache import PreparedCache, create_view, write_meta
    from agekit.training.datamodule import age_groups_from_age

    src = PreparedCache(data)
    if spec.crops not in ("single", "lmtcnn"):
        raise KeyError(f"{data}: no view {spec.view_key!r} and crops {spec.crops!r} cannot be upsampled")
    tail = "" if spec.align else "_noalign"
    cands = [v for v in src.views if v.startswith("single_") and v.endswith(f"_m{spec.margin:g}{tail}")]
    if not cands:
        raise KeyError(f"{data}: no view {spec.view_key!r} and no single view of margin {spec.margin:g} to upsample")
    source = max(cands, key=lambda v: int(v.split("_")[1]))
    side = int(spec.resize or spec.size) if spec.crops == "lmtcnn" else int(spec.size)
    root = out / "_derived" / f"{spec.view_key}{'_' + age_groups if age_groups else ''}"
    note = f"{spec.view_key} upsampled from {source} (bilinear)"
    if age_groups:
        note += f"; age groups derived from the age ({age_groups} rule)"
    if (root / "views" / f"{spec.view_key}.npy").is_file() and (root / "meta.npz").is_file():
        return str(root), note
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    meta = dict(src.meta)
    if age_groups:
        meta["age_group"] = age_groups_from_age(meta["age"], meta.get("age_group"), age_groups).astype(np.int8)
    write_meta(root, meta)
    for name in ("splits", "info.json"):
        if (src.root / name).exists():
            os.symlink((src.root / name).resolve(), root / name)
    img = src.view(source)
    dst = create_view(root, spec.view_key, (len(img), side, side, 3))
    for s in range(0, len(img), 512):
        dst[s : s + 512] = np.stack([cv2.resize(np.asarray(a), (side, side), interpolation=cv2.INTER_LINEAR)
                                     for a in img[s : s + 512]])
    dst.flush()
    del dst
    return str(root), note


def run_one(recipe: str, data: str, epochs: int, out: Path, extra: list[str], ten_view: bool = False,
            flip: bool = False) -> dict:
    """Train and evaluate one recipe; a row of the results table."""
    from agekit.data.cache import PreparedCache
    from agekit.evaluation.evaluate import evaluate
    from agekit.training.engine import method_name_for, resolve_spec, train
    from agekit.training.recipes import load_recipe

    over = [f"data.cache={data}", f"trainer.max_epochs={epochs}", "trainer.progress_bar=false", *extra]
    r = load_recipe(recipe, over)
    spec = resolve_spec(r["model"]["name"], r.get("preprocess"), r["model"].get("config"))
    notes = []
    if spec.view_key not in PreparedCache(data).views:
        data, note = derived_cache(data, spec, out, r["data"].get("age_groups"))
        notes.append(note)
        over.append(f"data.cache={data}")
        r = load_recipe(recipe, over)
    t0 = time.perf_counter()
    res = train(recipe, out / recipe, overrides=over)
    wall = time.perf_counter() - t0
    rep = evaluate(res.final, data, r["data"].get("test_split") or "test", r["data"].get("protocol"),
                   out / recipe / "report", ten_view=ten_view, flip=flip)
    if spec.crops == "lmtcnn":
        notes.append("test: ten-view average" if ten_view else "test: centre 227 crop (--ten-view: LMTCNN's 10 views)")
    m, card = rep["metrics"], res.card
    runs = res.runs or [res]
    per_gen = []
    for g, x in enumerate(runs, start=1):  # LRN generations t = 1..N (LRN Table 4): each on the test split
        gm = m if g == len(runs) else evaluate(x.final, data, r["data"].get("test_split") or "test",
                                               r["data"].get("protocol"), out / recipe / f"report_gen{g}",
                                               flip=flip)["metrics"]
        per_gen.append({"generation": g, "mae": gm.get("mae"), "ca3": (gm.get("ca") or {}).get("3"),
                        "ca5": (gm.get("ca") or {}).get("5")})
    cx = card.get("complexity", {})
    t = r["trainer"]
    gens = len(runs)
    batch = int(r["data"].get("batch_size") or 50)
    opt = r.get("optimizer", {})
    settings = (f"{card.get('precision') or '32-true'}{' + channels_last' if card.get('channels_last') else ''}; "
                f"batch {batch}; {opt.get('name')} lr {opt.get('lr')}; aug {r.get('augment', {}).get('name')}")
    if gens > 1:
        settings += f"; {gens} generations x {epochs} epochs"
    if t.get("limit_train_batches") is not None:
        settings += f"; limit_train_batches {t['limit_train_batches']}"
    if flip:
        settings += "; test: flip averaging"
    size = f"{spec.num_crops}x" if spec.num_crops > 1 else ""
    return {
        "recipe": recipe, "model": r["model"]["name"], "method": method_name_for(r), "epochs": card.get("epochs"),
        "input": f"{size}{spec.size}x{spec.size} ({spec.view_key})", "mae": m.get("mae"),
        "ca3": (m.get("ca") or {}).get("3"), "ca5": (m.get("ca") or {}).get("5"),
        "gender_acc": m.get("gender_accuracy"), "group_acc": m.get("age_group_accuracy"),
        "group_one_off": m.get("age_group_one_off"), "params": cx.get("params"), "macs": cx.get("macs"),
        "train_s": round(sum(x.card.get("train_seconds") or 0 for x in runs), 1), "wall_s": round(wall, 1),
        "train_img_s": card.get("train_images_per_s"),
        "images_seen": sum(int(x.card.get("train_images") or 0) for x in runs),  # every generation's faces
        "train_rows": card.get("data", {}).get("train_rows"), "test_n": rep.get("n_samples"),
        "val_metrics": card.get("val_metrics"), "precision": card.get("precision"),
        "channels_last": card.get("channels_last"), "settings": settings, "notes": "; ".join(notes),
        "final": str(res.final), "generations": per_gen if len(runs) > 1 else None,
    }


def markdown(rows: list[dict]) -> str:
    """The results as a Markdown table (age metrics, or gender / age-group accuracy where they apply)."""
    head = ("| recipe | method | input | epochs | images seen | MAE | CA(3) | CA(5) | gender acc | group acc (1-off) "
            "| params | MACs (M) | train time (s) | img/s | settings |\n")
    head += "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
    f = lambda v, fmt: "-" if v is None else format(v, fmt)  # noqa: E731
    lines = []
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['recipe']} | {r.get('method', '?')} | not trained: {r['skipped']} |||||||||||||")
            continue
        group = "-" if r.get("group_acc") is None else f"{r['group_acc']:.3f} ({f(r.get('group_one_off'), '.3f')})"
        notes = f"; {r['notes']}" if r.get("notes") else ""
        lines.append(
            f"| {r['recipe']} | {r['method']} | {r['input']} | {r['epochs']} | {f(r.get('images_seen'), ',')} | "
            f"{f(r['mae'], '.2f')} | {f(r['ca3'], '.3f')} | {f(r['ca5'], '.3f')} | {f(r.get('gender_acc'), '.3f')} | "
            f"{group} | {f(r['params'], ',')} | {f(r['macs'] and r['macs'] / 1e6, '.2f')} | "
            f"{f(r['train_s'], '.0f')} | {f(r['train_img_s'], '.0f')} | {r.get('settings', '')}{notes} |"
        )
        for g in (r.get("generations") or [])[:-1]:  # earlier generations of an LRN chain
            lines.append(f"| {r['recipe']} (generation {g['generation']}) | {r['method']} | {r['input']} | | | "
                         f"{f(g['mae'], '.2f')} | {f(g['ca3'], '.3f')} | {f(g['ca5'], '.3f')} | | | | | | | |")
    return head + "\n".join(lines) + "\n"


def merge(files: list[str], out: Path) -> int:
    """One table from several ``results.json`` (runs interrupted and continued with other settings)."""
    rows: dict[str, dict] = {}
    runs = []
    for f in files:
        d = json.loads(Path(f).read_text())
        recipes = [r["recipe"] for r in d["rows"]]
        runs.append({k: v for k, v in d.items() if k != "rows"} | {"file": str(f), "recipes": recipes})
        rows.update({r["recipe"]: r for r in d["rows"]})
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"runs": runs, "rows": list(rows.values())}, indent=1))
    (out / "results.md").write_text(markdown(list(rows.values())))
    print(markdown(list(rows.values())))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="prepared cache (e.g. UTKFace with protocol utkface)")
    ap.add_argument("--recipes", default=",".join(DEFAULT))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--out", default="runs/zoo")
    ap.add_argument("--set", action="append", default=[], help="extra recipe override for every run")
    ap.add_argument("--set-for", action="append", default=[], metavar="RECIPE:KEY=VALUE",
                    help="recipe override for one recipe (after --set)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ten-view", action="store_true", help="LMTCNN test: average the 10 views (10x the test time)")
    ap.add_argument("--flip", action="store_true", help="test: average each face with its mirror image")
    ap.add_argument("--merge", nargs="+", default=None, metavar="RESULTS_JSON",
                    help="train nothing: one table (OUT/results.md/.json) from earlier runs' results.json "
                         "(a later file's row replaces an earlier one of the same recipe)")
    args = ap.parse_args()
    if args.merge:
        return merge(args.merge, Path(args.out))
    if not args.data:
        ap.error("--data is required (unless --merge)")
    with_malloc_env()
    import torch

    torch.set_num_threads(args.threads)
    per: dict[str, list[str]] = {}
    for item in args.set_for:
        name, sep, kv = item.partition(":")
        if not sep or "=" not in kv:
            ap.error(f"--set-for expects RECIPE:KEY=VALUE, got {item!r}")
        per.setdefault(name, []).append(kv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, t_all = [], time.perf_counter()
    for recipe in [r for r in args.recipes.split(",") if r]:
        try:
            row = run_one(recipe, args.data, args.epochs, out, [*args.set, *per.get(recipe, [])], args.ten_view,
                          args.flip)
        except Exception as e:  # one failing recipe must not lose the others' results
            row = {"recipe": recipe, "model": "?", "skipped": f"{type(e).__name__}: {e}"}
        rows.append(row)
        print(json.dumps(row), flush=True)
        info = {"data": args.data, "epochs": args.epochs, "set": args.set, "set_for": args.set_for,
                "threads": args.threads, "ten_view": args.ten_view, "flip": args.flip,
                "total_s": round(time.perf_counter() - t_all, 1),
                "rows": rows}
        (out / "results.json").write_text(json.dumps(info, indent=1))
        (out / "results.md").write_text(markdown(rows))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
