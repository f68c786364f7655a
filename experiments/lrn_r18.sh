#!/usr/bin/env bash
# LRN ResNet-18 on the CPU: the recipe lrn_resnet18_64_g4_utkface (small stem, 64-px
# margin-0.1 crops, bf16 autocast + channels-last, batch 128) for GENERATIONS refinery generations (default 1)
# of EPOCHS epochs (default 20) on agekit's schedule (AdamW 2e-3, 2 warm-up epochs, cosine to zero; the recipe's
# SGD 0.02 from scratch stalled for ResNet-10-Tiny, see lrn_teacher.sh), then the distillation teacher with it
# added: the two-model ensemble of src/agekit/weights plus the last generation (experiments/ensemble.py, flip).
# One generation: 2 h on one core next to other runs (about 47 img/s); test 5.22 (flip), the three-model ensemble
# val 4.850 / test 4.926 (experiments/results/lrn_r18/). Four generations of 5 epochs (`bash experiments/lrn_r18.sh
# caches/utkface runs/lrn4 4 5`): 96 min on one core next to another run; test 7.11 / 6.99 / 6.94 / 7.42 for t = 1..4
# (experiments/results/lrn_r18_g4_utkface.json).
# Usage: bash experiments/lrn_r18.sh CACHE OUT [GENERATIONS] [EPOCHS] [-- TRAIN_ZOO_OPTIONS]
set -euo pipefail
here=$(dirname "$0")
source "$here/common.sh"
split_args "$@"; set -- "${ARGS[@]}"
CACHE=${1:?prepared UTKFace cache (view single_64_m0.1)}; OUT=${2:?output dir}; G=${3:-1}; EP=${4:-20}
python "$here/train_zoo.py" --data "$CACHE" --threads 1 --flip --epochs "$EP" --out "$OUT/r18" \
  "${COSINE[@]}" --set generations="$G" --recipes lrn_resnet18_64_g4_utkface "${TRAIN_ARGS[@]}"
R=$OUT/r18/lrn_resnet18_64_g4_utkface
last=$R/final.safetensors; [ "$G" -gt 1 ] && last=$R/gen$G/final.safetensors
W=src/agekit/weights
python "$here/ensemble.py" "$W/age_c3ae_wide_cosine_utkface.safetensors" "$W/gender_agenet_utkface.safetensors" "$last" \
  --data "$CACHE" --flip --threads 2 --out "$OUT/ens_r18"
