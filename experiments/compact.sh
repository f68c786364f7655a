#!/usr/bin/env bash
# agekit's compact-model runs on UTKFace: the candidates for the shipped age and gender
# models, each trained with its recipe and tested on the fixed test split with flip averaging.
#   agenet_utkface            AgeNet (98,805 params), DLDL-v2, cosine, margin-0.1 crops
#   agenet_m04                the same on C3AE/SSR-Net's margin-0.4 crops (the crop ablation)
#   c3ae_wide_cosine_utkface  C3AE-wide (75,625 params), cascade loss, cosine, margin-0.1 crops
#   c3ae_wide_utkface         the first shipped recipe (multistep, margin 0.4), for reference
#   agenet_gender_utkface     AgeNet + gender head (107,047 params): the gender model
#   agenet_balanced_utkface   agenet_utkface with age-balanced epochs (data.balance 0.5): the age extremes
# Usage: bash experiments/compact.sh CACHE OUT [EPOCHS]   (default: each recipe's own epochs, 45-60)
# CACHE must hold views single_64_m0.1 and single_64_m0.4 (`agekit prepare`'s defaults).
# Runs two processes with one thread each; about 2 hours on a 2-core CPU (30-35 s per epoch per run).
set -euo pipefail
CACHE=${1:?prepared UTKFace cache}; OUT=${2:?output dir}; EP=${3:-60}
export OMP_NUM_THREADS=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 MALLOC_TOP_PAD_=1000000000
here=$(dirname "$0")
common=(--data "$CACHE" --epochs "$EP" --threads 1 --flip)
python "$here/train_zoo.py" "${common[@]}" --out "$OUT/a" \
  --recipes agenet_utkface,agenet_gender_utkface,c3ae_wide_utkface \
  --set-for c3ae_wide_utkface:trainer.max_epochs=45 > "$OUT.a.log" 2>&1 &
python "$here/train_zoo.py" "${common[@]}" --out "$OUT/b" \
  --recipes c3ae_wide_cosine_utkface,agenet_m04_utkface,agenet_balanced_utkface > "$OUT.b.log" 2>&1 &
wait
python "$here/train_zoo.py" --merge "$OUT/a/results.json" "$OUT/b/results.json" --out "$OUT"
