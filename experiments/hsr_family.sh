#!/usr/bin/env bash
# The wider SepHSR networks on UTKFace (HSR-Net Tables 5, 6 and 10): single-resolution
# SepHSR(60,10) and (90,30) on margin-0.1 crops for EPOCHS epochs (default 10), then the 3-resolution SepHSR(60,10),
# (90,30) and BSepHSR(90,30) on the three crops 1.0 / 1.45 / 1.85 around the margin-0.1 face (cache view
# kres_64_m0.1, as experiments/hsr_kres.sh) for EPOCHS3 epochs (default 3) - the 3-resolution networks cost 100-210M
# MACs a face and train at 35-56 img/s on one core. Each recipe's L1 loss, HSR augmentation and batch 50, on
# experiments/common.sh's COSINE schedule with FAST_HSR (bf16 + channels-last, backbone padded to 16 channels).
# Test split flip-averaged: OUT/single/results.md and OUT/k3/results.md.
# Usage: bash experiments/hsr_family.sh CACHE KRES_CACHE OUT [EPOCHS] [EPOCHS3] [single|k3|both] [-- TRAIN_ZOO_OPTIONS]
set -euo pipefail
here=$(dirname "$0")
source "$here/common.sh"
split_args "$@"; set -- "${ARGS[@]}"
CACHE=${1:?prepared UTKFace cache (view single_64_m0.1)}; KRES=${2:?prepared UTKFace cache with view kres_64_m0.1}
OUT=${3:?output dir}; EP=${4:-10}; EP3=${5:-3}; WHAT=${6:-both}
zoo() { python "$here/train_zoo.py" --threads 1 --flip "${COSINE[@]}" "${FAST_HSR[@]}" --set preprocess.margin=0.1 "$@" "${TRAIN_ARGS[@]}"; }
if [ "$WHAT" != k3 ]; then
  zoo --data "$CACHE" --epochs "$EP" --out "$OUT/single" --recipes sephsr_60_10_utkface,sephsr_90_30_utkface
fi
if [ "$WHAT" != single ]; then
  # runs this short get no warm-up (COSINE's 2 warm-up epochs would leave the learning rate rising to the end)
  zoo --data "$KRES" --epochs "$EP3" --out "$OUT/k3" --set scheduler.warmup=$(( EP3 >= 8 ? 2 : 0 )) \
    --recipes sephsr_60_10_k3_utkface,sephsr_90_30_k3_utkface,bsephsr_90_30_utkface
fi
