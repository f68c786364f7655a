"""int8 that pays: for each shipped weight, quantise only the layers that gain (measured), calibrated on real faces,
and report the speed-up and the drift on real faces; ``--ship`` writes ``<name>.int8.onnx`` where int8 wins.

For each weight: 512 faces of the train split of ``--data`` calibrate the graph (``agekit.export.int8``);
``select_layers`` picks the op types and drops back to float32 each layer whose int8 kernel does not pay
(interleaved rounds, batch 256 on one thread, in slices of 8 as ``agekit predict`` runs it); the final graph is
timed against the shipped float32 graph (``--rounds`` interleaved rounds; also the batch whole). The drift is the
MAE difference on real faces, flip-averaged as the predictor runs each card: the val splits of ``--data`` and
``--aaf`` (All-Age-Faces, faces the weights never saw) gate every choice (a faster graph whose val drift exceeds
``--max-drift`` years is refused) and the shipping; the test splits are reported. int8 ships where it is at least
``--min-speedup`` x float32 within the val drift bound. ``--reuse FILE`` rebuilds
the graphs with the layers a previous run chose (no timing-dependent choice: the same bytes for the same ONNX
Runtime and calibration faces).

    python experiments/int8_drift.py --out experiments/results/int8_drift [--weights NAME...]   (other rows kept)
    python experiments/int8_drift.py --reuse experiments/results/int8_drift.json --ship   # the shipped int8 files

Run it on a quiet machine: timings share the CPU with whatever else runs (load average in the results).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from agekit.data.cache import PreparedCache
from agekit.export.int8 import (
    INT8_SUFFIX,
    Int8Recipe,
    age_drift,
    cache_faces,
    compare_speed,
    graph_layers,
    quantize,
    run_graph,
    select_layers,
)
from agekit.inference.cards import file_sha256, local_paths, render_markdown
from agekit.inference.weights import WEIGHTS_DIR, shipped_weights
from agekit.preprocessing import PreprocessSpec
from agekit.training.probe import host_info


def measure(entry: dict, args: argparse.Namespace, reuse: dict | None, tmp: Path) -> dict:
    name, fp32 = entry["name"], Path(entry["onnx"])
    card = entry["card"]
    spec = PreprocessSpec.from_dict(card["preprocess"])
    flip = bool((card.get("inference") or {}).get("flip"))
    calib, _, calib_text = cache_faces(args.data, spec, "train", n=args.calib_samples, seed=0)
    val, val_rows, _ = cache_faces(args.data, spec, "val")
    xb = val[: args.batch]  # the timing batch: real faces
    print(f"{name}: calibration on {calib_text}", flush=True)
    # the gate: MAE drift on the val splits (UTKFace, and All-Age-Faces: faces the weights never saw) within bounds
    meta = PreparedCache(args.data).meta
    gates = {"utkface_val": (val, np.asarray(meta["age"])[val_rows], np.asarray(meta["gender"])[val_rows])}
    if args.aaf:
        m = PreparedCache(args.aaf).meta
        x, rows, _ = cache_faces(args.aaf, spec, "val", protocol=args.aaf_protocol)
        gates["allagefaces_val"] = (x, np.asarray(m["age"])[rows], np.asarray(m["gender"])[rows])
    ref = {k: run_graph(fp32, g[0], flip) for k, g in gates.items()}

    def accept(path: Path) -> tuple[bool, str]:
        d = {k: age_drift(ref[k], path, *g, flip=flip)["mae_drift"] for k, g in gates.items()}
        bad = {k: round(v, 4) for k, v in d.items() if abs(v) > args.max_drift}
        return not bad, ", ".join(f"{k} MAE drift {v:+.3f} years" for k, v in bad.items())

    if reuse is not None:
        recipe = Int8Recipe.from_dict(reuse["recipe"])
        log = reuse.get("selection_log", [])
    else:
        sel = select_layers(fp32, calib, xb, Int8Recipe(), threads=1, chunk=8, rounds=args.rounds, accept=accept,
                            printer=lambda s: print(s, flush=True))
        recipe, log = sel.recipe, sel.log
    q = tmp / f"{name}{INT8_SUFFIX}"
    int8_layers = quantize(fp32, q, calib, recipe)
    layers = graph_layers(fp32)
    speed = {}
    for label, chunk in (("slices_of_8", 8), ("whole_batch", 0)):
        s = compare_speed({"fp32": fp32, "int8": q}, xb, threads=1, chunk=chunk, rounds=args.rounds)
        speed[label] = {"fp32_faces_s": round(s["fp32"]["faces_s"], 1), "int8_faces_s": round(s["int8"]["faces_s"], 1),
                        "speedup": round(s["int8"]["faces_s"] / s["fp32"]["faces_s"], 3),
                        "cpu_speedup": round(s["int8"]["cpu_faces_s"] / s["fp32"]["cpu_faces_s"], 3)}
        print(f"  {label}: fp32 {speed[label]['fp32_faces_s']:.0f} int8 {speed[label]['int8_faces_s']:.0f} faces/s "
              f"({speed[label]['speedup']:.2f}x; CPU time {speed[label]['cpu_speedup']:.2f}x)", flush=True)
    drift = {k: age_drift(ref[k], q, *g, flip=flip) for k, g in gates.items()}
    x, rows, _ = cache_faces(args.data, spec, "test")
    drift["utkface_test"] = age_drift(fp32, q, x, np.asarray(meta["age"])[rows], np.asarray(meta["gender"])[rows], flip)
    if args.aaf:
        m = PreparedCache(args.aaf).meta
        x, rows, _ = cache_faces(args.aaf, spec, "test", protocol=args.aaf_protocol)
        drift["allagefaces_test"] = age_drift(fp32, q, x, np.asarray(m["age"])[rows], np.asarray(m["gender"])[rows], flip)
    for k, d in drift.items():
        drift[k] = {a: (round(b, 4) if isinstance(b, float) else b) for a, b in d.items()}
        print(f"  {k}: MAE fp32 {d['mae_fp32']:.4f} int8 {d['mae_int8']:.4f} (drift {d['mae_drift']:+.4f} years; "
              f"mean |diff| {d['mean_abs_age_diff']:.3f})"
              + (f"; gender accuracy {d['gender_accuracy_fp32']:.4f} -> {d['gender_accuracy_int8']:.4f}"
                 if "gender_accuracy_fp32" in d else ""), flush=True)
    wins = speed["slices_of_8"]["speedup"] >= args.min_speedup and all(
        abs(drift[k]["mae_drift"]) <= args.max_drift for k in gates)
    return {
        "name": name, "model": card.get("model"), "fp32_file": fp32.name, "fp32_sha256": file_sha256(fp32),
        "calibration": calib_text, "flip": flip, "recipe": recipe.to_dict(), "recipe_text": recipe.describe(),
        "int8_layers": [la.label() for la in layers if la.name in int8_layers],
        "float32_layers": [la.label() for la in layers if la.name not in int8_layers],
        "int8_sha256": file_sha256(q), "speed": speed, "drift": drift, "wins": bool(wins), "selection_log": log,
    }


def int8_card(entry: dict, row: dict, machine: dict, command: str) -> dict:
    """The card of a shipped int8 graph: the float32 card's, plus what int8 changes and how it was made."""
    card = json.loads(json.dumps(entry["card"]))
    name = entry["name"]
    t, s8 = row["drift"]["utkface_test"], row["speed"]["slices_of_8"]
    aaf = row["drift"].get("allagefaces_test")
    card["title"] = f"{card.get('title') or name} - int8 graph"
    card["description"] = (
        f"The int8 ONNX graph of `{name}` (`agekit predict --model {name} --precision int8`): {row['recipe_text']}; "
        f"{len(row['int8_layers'])} layers in int8, {len(row['float32_layers'])} left in float32. "
        f"{s8['int8_faces_s']:.0f} faces/s against {s8['fp32_faces_s']:.0f} for the float32 graph ({s8['speedup']:.2f}x) "
        f"at batch 256 on one thread; test MAE drift {t['mae_drift']:+.3f} years on UTKFace's test split"
        + (f", {aaf['mae_drift']:+.3f} on All-Age-Faces'" if aaf else "")
        + f" (flip-averaged). Calibrated on {row['calibration']}. The metrics below are the float32 model's.")
    card["int8"] = {k: row[k] for k in ("recipe", "recipe_text", "int8_layers", "float32_layers", "calibration",
                                        "speed", "drift", "fp32_file", "fp32_sha256")}
    card["int8"]["made_with"] = command
    card["int8"]["machine"] = machine
    card["latency"] = {"how": "median of interleaved rounds, batch 256 of real faces in slices of 8, one thread "
                              "(ONNX Runtime)", "int8_faces_s": s8["int8_faces_s"], "fp32_faces_s": s8["fp32_faces_s"],
                       "speedup": s8["speedup"], "threads": 1, "machine": machine["cpu"]}
    card["onnx"] = {**card.get("onnx", {}), "file": f"{name}{INT8_SUFFIX}"}
    return card


def write_markdown(out: Path, info: dict) -> None:
    cmds = list(dict.fromkeys(r.get("command", info["command"]) for r in info["rows"]))
    m = info["machine"]
    lines = [*(f"`{c}`" for c in cmds), "",
             f"Host: {m['cpu']}, {m['cores']} cores; flags {' '.join(m['flags'])}; onnxruntime {m.get('onnxruntime')}; "
             f"load average {m['load_average']}; {info['date']}. Batch 256 of real faces, one thread, median of "
             "interleaved rounds; drift = int8 MAE - float32 MAE (years), flip-averaged as the predictor runs each "
             "card; the val splits gate the choices, the test splits are reported.", "",
             "| weight | int8 faces/s | fp32 faces/s | speed-up (slices of 8) | speed-up (whole batch) | "
             "drift UTKFace val | drift All-Age-Faces val | drift UTKFace test | drift All-Age-Faces test | ships |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]

    def f(d: dict, k: str) -> str:
        return f"{d[k]['mae_drift']:+.4f}" if k in d else ""

    for r in info["rows"]:
        s, w, d = r["speed"]["slices_of_8"], r["speed"]["whole_batch"], r["drift"]
        lines.append(f"| {r['name']} | {s['int8_faces_s']:.0f} | {s['fp32_faces_s']:.0f} | {s['speedup']:.2f}x | "
                     f"{w['speedup']:.2f}x | {f(d, 'utkface_val')} | {f(d, 'allagefaces_val')} | "
                     f"{f(d, 'utkface_test')} | {f(d, 'allagefaces_test')} | {'yes' if r['wins'] else 'no'} |")
    lines += ["", "Layers (int8 / float32):", ""]
    for r in info["rows"]:
        lines += [f"- {r['name']} ({r['recipe_text']}): int8 {', '.join(r['int8_layers']) or 'none'}; "
                  f"float32 {', '.join(r['float32_layers']) or 'none'}"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", nargs="*", default=None, help="shipped weight names (default: every one)")
    ap.add_argument("--data", default="caches/utkface", help="prepared UTKFace cache (train: calibration; val, test)")
    ap.add_argument("--aaf", default="caches/allagefaces", help="prepared All-Age-Faces cache ('' to skip)")
    ap.add_argument("--aaf-protocol", default="allagefaces_fixed")
    ap.add_argument("--calib-samples", type=int, default=512)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--min-speedup", type=float, default=1.5)
    ap.add_argument("--max-drift", type=float, default=0.05, help="years of val MAE drift")
    ap.add_argument("--reuse", default=None, help="a previous results .json: rebuild with the layers it chose")
    ap.add_argument("--ship", action="store_true", help="write <name>.int8.onnx (+ card) into the package's weights "
                    "folder where int8 wins, and remove those of weights where it does not")
    ap.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    args = ap.parse_args()
    if not Path(args.data).is_dir():
        print(f"int8_drift: {args.data}: no prepared cache there (agekit prepare utkface ...)", file=sys.stderr)
        return 2
    if args.aaf and not Path(args.aaf).is_dir():
        print(f"int8_drift: {args.aaf}: no prepared cache there; All-Age-Faces skipped", file=sys.stderr)
        args.aaf = ""
    reuse = {r["name"]: r for r in json.loads(Path(args.reuse).read_text())["rows"]} if args.reuse else None
    entries = [e for e in shipped_weights() if e["onnx"] is not None and (not args.weights or e["name"] in args.weights)]
    command = "python experiments/int8_drift.py " + shlex.join(sys.argv[1:])
    machine = host_info(threads=1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for e in entries:
            if reuse is not None and e["name"] not in reuse:
                print(f"{e['name']}: not in {args.reuse}; skipped", flush=True)
                continue
            row = measure(e, args, None if reuse is None else reuse[e["name"]], Path(tmp))
            row["command"] = command
            rows.append(row)
            if args.ship:
                target = WEIGHTS_DIR / f"{e['name']}{INT8_SUFFIX}"
                js, md = target.with_name(f"{e['name']}.int8.json"), target.with_name(f"{e['name']}.int8.md")
                if row["wins"]:
                    os.replace(Path(tmp) / target.name, target)
                    card = int8_card(e, row, machine, command)
                    card["files"] = {target.name: {"bytes": target.stat().st_size, "sha256": file_sha256(target)}}
                    bad = local_paths(card)
                    if bad:
                        raise ValueError(f"{target.name}: the card names local paths {bad[:3]}")
                    js.write_text(json.dumps(card, indent=1, sort_keys=True) + "\n")
                    md.write_text(render_markdown(json.loads(js.read_text()), name=js.stem))  # as the JSON reads
                    print(f"  shipped {target.name}", flush=True)
                else:
                    for f in (target, js, md):
                        f.unlink(missing_ok=True)
    info = {"command": command, "date": time.strftime("%Y-%m-%d"), "machine": machine, "rows": rows,
            "acceptance": {"min_speedup": args.min_speedup, "max_val_drift_years": args.max_drift}}
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.with_suffix(".json").is_file():  # the other weights' rows of an earlier run stay
            done = {r["name"] for r in rows}
            old = [r for r in json.loads(out.with_suffix(".json").read_text())["rows"] if r["name"] not in done]
            info["rows"] = sorted(old + rows, key=lambda r: r["name"])
        out.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
        write_markdown(out, info)
    for r in rows:
        print(f"{r['name']}: {r['speed']['slices_of_8']['speedup']:.2f}x, test drift "
              f"{r['drift']['utkface_test']['mae_drift']:+.4f} years -> {'int8 wins' if r['wins'] else 'stays fp32'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
