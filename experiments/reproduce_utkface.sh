#!/usr/bin/env bash
# The papers' headline experiments (`agekit reproduce NAME`) run on UTKFace, at a budget a CPU allows: every chain with
# its IMDB -> WIKI pre-training replaced by one UTKFace pre-training stage (`--on utkface`), tested on UTKFace's 20 %
# test part. Each stage runs 3 epochs (--epochs-scale = 3 / the recipe's epochs, which scales the learning-rate
# schedule alike) of BATCHES batches: 110 batches of 50 (5,500 images, a third of the training part; LRN 43 of 128),
# 40 for the 3-resolution HSR network; LMTCNN 85 steps of 128 (its 50,000 steps x 0.0017). Validation reads 4 batches
# an epoch. One experiment takes about 6-10 minutes of one niced CPU thread on a shared 2-core machine. The faces:
# UTKFace's own aligned and cropped images scaled whole (detector 'cropped', margin 0, crops past the photo repeat
# its edge pixels), prepared once into caches/reproduce/utkface (~1-2 min; LMTCNN's 256 view is added on demand).
# Resumable: a finished experiment (OUT/NAME/results.json) is skipped, an unfinished one continues where it stopped
# (`agekit reproduce` skips finished stages and resumes a stage from its last checkpoint), so rerunning the same
# command finishes the rest. Each table is copied to experiments/results/reproduce_utkface/NAME.{json,md}
# (docs/results/reproduce-on-utkface.md is generated from them by `python tools/make_docs.py`).
# Usage: bash experiments/reproduce_utkface.sh [OUT] [NAME...]     (default OUT runs/reproduce_utkface, every NAME)
#   DATA=../shared/data (DATA/utkface holds UTKFace/), CACHES=caches/reproduce
set -euo pipefail
here=$(dirname "$0")
source "$here/common.sh"
OUT=${1:-runs/reproduce_utkface}; shift || true
DATA=${DATA:-../shared/data}; CACHES=${CACHES:-caches/reproduce}
RESULTS=$here/results/reproduce_utkface
mkdir -p "$OUT" "$RESULTS"
# NAME  EPOCHS-SCALE  BATCHES  [more --set]: 3 epochs of BATCHES batches a stage
BUDGETS=(
  "ssrnet_morph 0.0333 110"
  "c3ae_plain_morph 0.01875 110"
  "c3ae_full_morph_scratch 0.005 110"
  "c3ae_full_morph 0.005 110"
  "hsr_sephsr_30_10_depth3_1_morph 0.01875 110"
  "hsr_sephsr_30_10_depth3_2_morph 0.01875 110"
  "hsr_sephsr_30_10_depth3_3_morph 0.01875 110"
  "hsr_sephsr_90_30_k3_morph 0.005 40"
  "lrn_resnet10_tiny_chalearn 0.01875 43 model.config.input_size=64"
  "lrn_resnet18_morph 0.01875 43 model.config.input_size=64"
  "ssrnet_megaage_asian 0.0333 110"
  "c3ae_full_fgnet 0.005 110"
  "c3ae_full_fgnet_lopo 0.005 110"
  "lmtcnn_1_1_adience 0.0017 85"
  "lmtcnn_2_1_adience 0.0017 85"
)
VIEWS=single_64_m0_edge,c3ae_64_m0_edge,kres_64_m0_edge  # the views of every network but LMTCNN's (added on demand)
[ -f "$CACHES/utkface/meta.npz" ] || agekit prepare utkface --root "$DATA/utkface" --out "$CACHES/utkface" \
  --detector cropped --views "$VIEWS" --workers 1 --quiet
for line in "${BUDGETS[@]}"; do
  read -r name scale batches more <<< "$line"
  if [ $# -gt 0 ] && [[ ! " $* " == *" $name "* ]]; then continue; fi
  if [ -f "$OUT/$name/results.json" ]; then echo "== $name: finished ($OUT/$name/results.md)"; continue; fi
  sets=(--set trainer.limit_train_batches="$batches" --set trainer.limit_val_batches=4 --set trainer.progress_bar=false)
  for m in $more; do sets+=(--set "$m"); done
  echo "== $(date -Is) $name"
  start=$(date +%s)
  agekit reproduce "$name" --on utkface --data-root "$DATA" --out "$OUT/$name" --cache-dir "$CACHES" \
    --epochs-scale "$scale" --workers 1 --device cpu "${sets[@]}"
  echo "== $name: $(( $(date +%s) - start )) s"
  cp "$OUT/$name/results.json" "$RESULTS/$name.json"
  cp "$OUT/$name/results.md" "$RESULTS/$name.md"
done
