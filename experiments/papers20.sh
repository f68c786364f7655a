#!/usr/bin/env bash
# The paper networks that had only smoke-scale or 3-10-epoch runs on UTKFace, each for EPOCHS
# epochs (default 20) of the full training split on agekit's settled schedule (experiments/common.sh's COSINE: AdamW
# 2e-3, 2 warm-up epochs, cosine to zero) with each recipe's own loss, augmentation and batch, bf16 autocast +
# channels-last (the bin / expectation layers stay fp32): SSR-Net(3,3,3) with and without the dynamic range,
# MobileNetV1(0.25) and HSR(30,10) (backbone padded to 16 channels: same parameters and outputs) on margin-0.1
# crops; C3AE plain and full (three-scale context) on the margin-0.4 crops of the C3AE paper's context ablation
# (the cache's single_64_m0.4 and c3ae_triple_64_m0.4 views). Test split flip-averaged; OUT/results.md.
# Usage: bash experiments/papers20.sh CACHE OUT [EPOCHS] [RECIPES] [-- TRAIN_ZOO_OPTIONS]
set -euo pipefail
here=$(dirname "$0")
source "$here/common.sh"
split_args "$@"; set -- "${ARGS[@]}"
CACHE=${1:?prepared UTKFace cache (views single_64_m0.1, single_64_m0.4, c3ae_triple_64_m0.4)}; OUT=${2:?output dir}
EP=${3:-20}
RECIPES=${4:-ssrnet_utkface,mobilenetv1_025_utkface,c3ae_full_utkface,hsr_30_10_utkface,ssrnet_no_dr_utkface,c3ae_plain_utkface}
python "$here/train_zoo.py" --data "$CACHE" --threads 1 --flip --epochs "$EP" --out "$OUT" --recipes "$RECIPES" \
  "${COSINE[@]}" --set trainer.precision=bf16-mixed --set trainer.channels_last=true --set preprocess.margin=0.1 \
  --set-for c3ae_plain_utkface:preprocess.margin=0.4 --set-for c3ae_full_utkface:preprocess.margin=0.4 \
  --set-for hsr_30_10_utkface:model.config.pad_channels=16 "${TRAIN_ARGS[@]}"
