"""One Markdown table from compact-model runs: each RUN dir's card and its test reports.

Each RUN is an ``agekit train`` output directory evaluated twice on the test split:
  agekit evaluate RUN/final.safetensors --data CACHE --split test --out RUN/rep_test
  agekit evaluate RUN/final.safetensors --data CACHE --split test --flip --out RUN/rep_test--flip
(``experiments/compact.sh`` does the same through ``experiments/train_zoo.py``.)

    python experiments/compact_table.py runs/agenet runs/c3ae_wide_cosine ... [--out experiments/results/compact_utkface]
    python experiments/compact_table.py gen2=runs/c/agenet_mt_distill_utkface ...   (LABEL=RUN names a row)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

DECADES = ("0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80-89", "90-99")


def row(run: Path) -> dict:
    """Figures of one run: card (model, params, MACs, epochs, time, val) and test metrics (plain and flip)."""
    from agekit.models.checkpoint import load_checkpoint

    card = json.loads((run / "card.json").read_text())
    ckpt = load_checkpoint(run / "final.safetensors")
    out = {"run": run.name, "model": ckpt.name, "recipe": card.get("recipe"),
           "params": (card.get("complexity") or {}).get("params"), "macs": (card.get("complexity") or {}).get("macs"),
           "epochs": card.get("epochs"), "train_s": card.get("train_seconds"),
           "val_mae": (card.get("val_metrics") or {}).get("val/mae"),
           "view": ckpt.preprocess.margin}
    for tag, sub in (("test", "rep_test"), ("flip", "rep_test--flip")):
        p = run / sub / "report.json"
        if not p.is_file():
            continue
        m = json.loads(p.read_text())["metrics"]
        out[tag] = {"mae": m.get("mae"), "ca3": (m.get("ca") or {}).get("3"), "ca5": (m.get("ca") or {}).get("5"),
                    "gender_acc": m.get("gender_accuracy"),
                    "decades": {d: (m.get("mae_by_decade") or {}).get(d, {}).get("mae") for d in DECADES}}
    return out


def markdown(rows: list[dict]) -> str:
    """Overall table, then MAE per decade (flip-averaged test) of every run."""
    f = lambda v, fmt: "-" if v is None else format(v, fmt)  # noqa: E731
    s = ("| run | model | params | MACs (M) | crop margin | epochs | val MAE | test MAE | test MAE (flip) | CA(3) (flip) "
         "| CA(5) (flip) | gender acc (flip) | train time (min) |\n"
         "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    for r in rows:
        t, fl = r.get("test", {}), r.get("flip", {})
        s += (f"| {r['run']} | `{r['model']}` | {f(r['params'], ',')} | {f(r['macs'] and r['macs'] / 1e6, '.1f')} | "
              f"{f(r['view'], 'g')} | {r['epochs']} | {f(r['val_mae'], '.3f')} | {f(t.get('mae'), '.3f')} | "
              f"**{f(fl.get('mae'), '.3f')}** | {f(fl.get('ca3'), '.3f')} | **{f(fl.get('ca5'), '.3f')}** | "
              f"{f(fl.get('gender_acc'), '.3f')} | {f(r['train_s'] and r['train_s'] / 60, '.0f')} |\n")
    s += "\nMAE per age decade (test split, flip-averaged):\n\n| run | " + " | ".join(DECADES) + " |\n"
    s += "|---|" + "---:|" * len(DECADES) + "\n"
    for r in rows:
        d = (r.get("flip") or r.get("test") or {}).get("decades", {})
        s += f"| {r['run']} | " + " | ".join(f(d.get(k), ".2f") for k in DECADES) + " |\n"
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", default=None, help="write OUT.md and OUT.json")
    a = ap.parse_args()
    rows = []
    for r in a.runs:  # RUN or LABEL=RUN (a label for runs whose folders share a name)
        label, _, path = r.rpartition("=") if "=" in r else ("", "", r)
        rows.append({**row(Path(path)), **({"run": label} if label else {})})
    md = markdown(rows)
    print(md)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out + ".md").write_text(md)
        Path(a.out + ".json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
