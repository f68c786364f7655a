#!/usr/bin/env bash
# HSR's k-resolution setting on UTKFace (HSR-Net Sec. III-E, Table 6: SepHSR(30,10) 3.202 single ->
# 2.963 with three resolutions on MORPH II): SepHSR(30,10) on three crops of ratios 1.0 / 1.45 /
# 1.85 around the aligned face with agekit's margin 0.1 (the cache view kres_64_m0.1), trained exactly as the
# single-resolution `alone` run of experiments/sephsr_kd.sh (AdamW 2e-3, cosine over 20 epochs, batch 50, HSR
# augmentation, bf16; test 6.34, flip) so the two compare. The backbone runs padded to 32 channels with
# channels-last (common.sh's FAST_HSR: the same network and gradients, about 2x faster on a CPU with AVX-512).
# The paper's 0.4 margin would put the 1.85 crop mostly outside UTKFace's 200x200 face photos.
# Usage: bash experiments/hsr_kres.sh KRES_CACHE OUT [EPOCHS] [-- TRAIN_ZOO_OPTIONS]
#   KRES_CACHE: agekit prepare utkface --root ../shared/data/utkface/UTKFace --out caches/utk_kres01 \
#               --views kres_64_m0.1 --workers 2      (about 6 min on 2 cores)
#   64 min on one core next to another run.
set -euo pipefail
here=$(dirname "$0")
source "$here/common.sh"
split_args "$@"; set -- "${ARGS[@]}"
CACHE=${1:?prepared UTKFace cache with view kres_64_m0.1}; OUT=${2:?output dir}; EP=${3:-20}
python "$here/train_zoo.py" --data "$CACHE" --threads 1 --flip --epochs "$EP" "${COSINE[@]}" "${FAST_HSR[@]}" \
  --out "$OUT/k3" --recipes sephsr_30_10_utkface --set model.name=sephsr_30_10_k3 --set preprocess.margin=0.1 \
  "${TRAIN_ARGS[@]}"
eval_test "$OUT/k3/sephsr_30_10_utkface" "$CACHE"
python "$here/compact_table.py" "sephsr_30_10_k3_cosine=$OUT/k3/sephsr_30_10_utkface" --out "$OUT/kres"
