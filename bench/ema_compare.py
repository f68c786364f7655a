"""Raw against EMA weights of one training run (``trainer.ema_decay``): the same trajectory, two final networks.

A run with ``trainer.ema_decay`` writes the averaged weights to ``final.pt``; its ``checkpoints/last.ckpt``
still holds the raw weights of the last step (``current_model_state``). This script rebuilds the raw network as
RUN/raw.pt and evaluates both, flip-averaged, on the validation and test splits, so the effect of the average
is measured without the run-to-run noise of a second training run.

    python bench/ema_compare.py RUN_DIR [RUN_DIR ...] --data caches/utkface [--json out.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def raw_checkpoint(run: Path) -> Path:
    """RUN/raw.pt: final.pt's network with the raw (not averaged) weights of ``checkpoints/last.ckpt``."""
    from agekit.checkpoint import load_checkpoint, save_checkpoint

    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    if "current_model_state" not in last:
        raise ValueError(f"{run}: last.ckpt holds no raw weights (was the run trained with trainer.ema_decay?)")
    loaded = load_checkpoint(run / "final.pt")
    prefix = last["hyper_parameters"].get("state_dict_prefix", "model.")
    state = {k[len(prefix):]: v for k, v in last["current_model_state"].items() if k.startswith(prefix)}
    loaded.model.load_state_dict(state)
    card = {**loaded.card, "weights": "raw (last step, not the EMA)"}
    return save_checkpoint(run / "raw.pt", loaded.model, name=loaded.name, config=loaded.config,
                           preprocess=loaded.preprocess, method=loaded.method, card=card)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--data", required=True)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from agekit.training.engine import evaluate

    rows = []
    print("| run | weights | val MAE | test MAE | test CA(3) | test CA(5) | test gender acc |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for run in map(Path, args.runs):
        for label, ckpt in (("raw", raw_checkpoint(run)), ("EMA", run / "final.pt")):
            m = {s: evaluate(ckpt, args.data, s, flip=True)["metrics"] for s in ("val", "test")}
            row = {"run": str(run), "weights": label, "val_mae": m["val"]["mae"], "test_mae": m["test"]["mae"],
                   "test_ca3": m["test"]["ca"]["3"], "test_ca5": m["test"]["ca"]["5"],
                   "test_gender_acc": m["test"].get("gender_accuracy")}
            rows.append(row)
            g = row["test_gender_acc"]
            print(f"| {run} | {label} | {row['val_mae']:.3f} | {row['test_mae']:.3f} | "
                  f"{row['test_ca3']:.3f} | {row['test_ca5']:.3f} | {'-' if g is None else f'{g:.3f}'} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
