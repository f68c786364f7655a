"""Ship a trained checkpoint as a default weight of the package (evaluate, export, time, card).

Example (the shipped defaults were made with these):
  python tools/ship_weights.py runs/c3ae_wide_cosine/final.safetensors --name age_c3ae_wide_cosine_utkface --alias age \
      --data caches/utkface --flip --title "agekit compact age model (C3AE-wide, cosine schedule, margin-0.1 crops, UTKFace)"
  python tools/ship_weights.py runs/agenet_gender/final.safetensors --name gender_agenet_utkface --alias gender \
      --data caches/utkface --flip --title "agekit gender model (AgeNet with a gender head, margin-0.1 crops, UTKFace)"
The tiers (experiments/tiers.sh trains them and writes their cross-dataset result):
  python tools/ship_weights.py runs/tiers/compact_bal_median/final.safetensors \
      --name compact_agenet_mt_utkface_allagefaces --alias compact --alias age --alias gender --data caches/utkface \
      --dataset utkface+allagefaces --flip --cross-dataset experiments/results/tiers_cross_dataset.json \
      --cross-name compact_bal_median --title "agekit compact tier (AgeNet-MT, age and gender, UTKFace + All-Age-Faces)"
  python tools/ship_weights.py runs/tiers/accurate/final.safetensors --name accurate_agenet_mt_utkface_allagefaces \
      --alias accurate --data caches/utkface --dataset utkface+allagefaces --flip \
      --cross-dataset experiments/results/tiers_cross_dataset.json --cross-name accurate \
      --title "agekit accurate tier (wide AgeNet-MT, age and gender, UTKFace + All-Age-Faces)"
A recipe.yaml beside the checkpoint (agekit train writes one) puts the run's changes to its named recipe in the card.
"""
from __future__ import annotations

import argparse
import json

from agekit.inference.ship import ship_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--name", required=True, help="weight name (file stem in src/agekit/weights)")
    ap.add_argument("--alias", action="append", default=[], help="short name, e.g. age or gender")
    ap.add_argument("--data", required=True, help="prepared cache to evaluate on")
    ap.add_argument("--split", default="test")
    ap.add_argument("--protocol", default=None)
    ap.add_argument("--title", default=None)
    ap.add_argument("--out-dir", default=None, help="default: the package's weights folder")
    ap.add_argument("--report-dir", default=None, help="also write the evaluation report and plots here")
    ap.add_argument("--flip", action="store_true", help="evaluate with flip averaging; the predictor then flips too")
    ap.add_argument("--dataset", default="utkface", help="training data named in the card (its licence follows)")
    ap.add_argument("--cross-dataset", default=None, metavar="RESULT.json",
                    help="a result of experiments/cross_dataset.py: the card carries the model's figures from it")
    ap.add_argument("--cross-name", default=None, help="the model's name in --cross-dataset")
    a = ap.parse_args()
    if (a.cross_dataset is None) != (a.cross_name is None):
        ap.error("--cross-dataset and --cross-name go together")
    card = ship_checkpoint(a.checkpoint, a.name, data=a.data, aliases=a.alias, split=a.split, protocol=a.protocol,
                           title=a.title, out_dir=a.out_dir, report_dir=a.report_dir,
                           flip=a.flip, dataset=a.dataset,
                           cross_dataset=(a.cross_dataset, a.cross_name) if a.cross_dataset else None)
    print(json.dumps({k: card[k] for k in ("model", "metrics", "latency", "complexity")}, indent=1, default=str))


if __name__ == "__main__":
    main()
