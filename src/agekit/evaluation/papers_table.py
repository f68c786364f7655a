"""The papers' networks on UTKFace next to the papers' MORPH II figures: a table assembled from result files.

Reads ``experiments/train_zoo.py``'s ``results.json`` (rows with ``recipe``, ``model``, flip-averaged
``mae``/``ca3``/``ca5``, ``epochs``, ``images_seen``, ``train_s``; LRN rows with their ``generations``), the list files
of ``experiments/compact_table.py`` (rows with ``run``, ``model`` and a ``flip`` block), and
``benchmarks/papers_latency.py``'s JSON for the batch-1 ONNX latency. One row per trained run, grouped by network in
:data:`PAPER`'s order (the files' order within a network); a later file's row of the same (label, epochs) replaces an
earlier one (a rerun). The paper column comes from :data:`PAPER` (MORPH II MAE, with the table it is read from).
"""
from __future__ import annotations

import json
from pathlib import Path

# registry model (or recipe / run name for the ablation variants) -> (row label, paper's MORPH II MAE with its source)
PAPER: dict[str, tuple[str, str]] = {
    "ssrnet": ("SSR-Net(3,3,3)", "3.16 (SSR Table 1)"),
    "ssrnet_no_dr": ("SSR-Net without dynamic range", "9.29 (SSR Sec. 4.4)"),
    "c3ae_plain": ("C3AE plain", "3.13 (C3AE Table 2)"),
    "c3ae_plain_no_cascade_utkface": ("C3AE plain without cascade (alpha = 0)", "worse, Fig. 5 only"),
    "c3ae_full": ("C3AE full (cascade + context)", "2.78 scratch / 2.75 (C3AE Table 5)"),
    "hsr_30_10": ("HSR(30,10)", "2.983 (HSR Table 5)"),
    "sephsr_30_10": ("SepHSR(30,10)", "3.202 (HSR Table 5)"),
    "sephsr_30_10_depth3_1_utkface": ("SepHSR(30,10) Depth(3,1)", "3.249 (HSR Table 9)"),
    "sephsr_30_10_depth3_2_utkface": ("SepHSR(30,10) Depth(3,2)", "3.276 (HSR Table 9)"),
    "sephsr_30_10_cosine_kd": ("SepHSR(30,10) distilled (ensemble teacher)", "- (HSR's future work)"),
    "sephsr_30_10_cosine_kd_ensemble": ("SepHSR(30,10) distilled (ensemble teacher)", "- (HSR's future work)"),
    "sephsr_30_10_cosine_kd_lrn": ("SepHSR(30,10) distilled (LRN ResNet-10-Tiny teacher)", "- (HSR's future work)"),
    "sephsr_30_10_distill_lrn_utkface": ("SepHSR(30,10) distilled (LRN ResNet-10-Tiny teacher)", "- (HSR's future work)"),
    "sephsr_60_10": ("SepHSR(60,10)", "2.959 (HSR Table 5)"),
    "sephsr_90_30": ("SepHSR(90,30)", "2.907 (HSR Table 5)"),
    "sephsr_30_10_k3": ("SepHSR(30,10), 3-res.", "2.963 (HSR Table 6)"),
    "sephsr_60_10_k3": ("SepHSR(60,10), 3-res.", "2.761 (HSR Table 6)"),
    "sephsr_90_30_k3": ("SepHSR(90,30), 3-res.", "2.692 (HSR Table 6)"),
    "bsephsr_90_30_k3": ("BSepHSR(90,30), 3-res.", "2.700 (HSR Table 10)"),
    "lrn_resnet10_tiny": ("LRN ResNet-10-Tiny (64 px, small stem)", "t = 1..4: 2.446 / 2.300 / 2.241 / 2.229 (LRN Table 8)"),
    "lrn_resnet18": ("LRN ResNet-18 (64 px, small stem)", "t = 1..4: 2.220 / 1.996 / 1.905 / 1.919 (LRN Table 8)"),
    "mobilenetv1_025": ("MobileNetV1(0.25)", "3.809 (HSR Table 7)"),
}


def _key(row: dict) -> str:
    """The :data:`PAPER` key of a result row: its run or recipe name where that names a variant, else its model."""
    for k in (row.get("run"), row.get("recipe")):
        if k in PAPER:
            return k
    return str(row.get("model"))


def load_rows(path: str | Path) -> list[dict]:
    """Result rows of one file, normalised to: key, model, recipe, mae, ca3, ca5, epochs, images_seen, train_s,
    generations, settings, source."""
    d = json.loads(Path(path).read_text())
    out = []
    for r in d if isinstance(d, list) else d.get("rows", []):
        if "skipped" in r:
            continue
        m = r.get("flip") or r  # list files: the flip-averaged block; train_zoo rows are flip-averaged with --flip
        if m.get("mae") is None:
            continue
        out.append({
            "key": _key(r), "model": r.get("model"), "recipe": r.get("recipe"),
            "mae": m["mae"], "ca3": m.get("ca3"), "ca5": m.get("ca5"), "epochs": r.get("epochs"),
            "images_seen": r.get("images_seen"), "train_s": r.get("train_s"), "params": r.get("params"),
            "macs": r.get("macs"),
            "generations": r.get("generations") or [], "settings": r.get("settings") or "", "source": str(path),
            "flip": "flip" in r or "flip averaging" in (r.get("settings") or ""),
        })
    return out


def merge_rows(files: list[str | Path]) -> dict[tuple, dict]:
    """(key, epochs) -> row over ``files`` in order: a later file's run of the same network and length replaces the
    earlier one and moves to its file's place."""
    rows: dict[tuple, dict] = {}
    for f in files:
        for r in load_rows(f):
            rows.pop((r["key"], r["epochs"]), None)
            rows[(r["key"], r["epochs"])] = r
    return rows


def latency(path: str | Path | None) -> dict[str, dict]:
    """model -> papers_latency.json row (params, macs, onnx_fp32_b1_ms)."""
    if not path or not Path(path).is_file():
        return {}
    return {r["model"]: r for r in json.loads(Path(path).read_text())["rows"]}


def _f(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def markdown(rows: list[dict], lat: dict[str, dict]) -> str:
    head = ("| network | recipe | params | MACs | ONNX b1 (1 thread) | paper: MORPH II MAE | ours: UTKFace test MAE "
            "(CA(3) / CA(5)) | epochs | images seen | train time (min) | source |\n"
            "|---|---|---:|---:|---:|---|---|---:|---:|---:|---|\n")
    lines = []
    for r in rows:
        label, paper = PAPER.get(r["key"], (r["key"], "-"))
        lt = lat.get(r["model"] or "") or {}
        params, macs = r["params"] or lt.get("params"), r["macs"] or lt.get("macs")
        ours = f"{r['mae']:.2f} ({_f(r['ca3'], '.3f')} / {_f(r['ca5'], '.3f')})" + (", flip" if r["flip"] else "")
        if len(r["generations"]) > 1:
            maes = " / ".join(f"{g['mae']:.2f}" for g in r["generations"])
            ours += f"; t = 1..{len(r['generations'])}: {maes}"
        ep = _f(r["epochs"], "d") + (f" x {len(r['generations'])} gen." if len(r["generations"]) > 1 else "")
        lines.append(f"| {label} | `{r['recipe']}` | {_f(params, ',')} | "
                     f"{_f(macs / 1e6 if macs else None, '.1f')}M | "
                     f"{_f(lt.get('onnx_fp32_b1_ms'), '.2f')} ms | {paper} | {ours} | {ep} | {_f(r['images_seen'], ',')} | "
                     f"{_f(r['train_s'] / 60 if r['train_s'] else None, '.0f')} | `{r['source']}` |")
    return head + "\n".join(lines) + "\n"


def assemble(files: list[str | Path]) -> list[dict]:
    """The rows of ``files`` merged (:func:`merge_rows`) and grouped by network in :data:`PAPER`'s order."""
    order = {k: i for i, k in enumerate(PAPER)}  # grouped by network, the papers' order; files' order within
    return sorted(merge_rows(files).values(), key=lambda r: order.get(r["key"], len(order)))
