#!/usr/bin/env bash
# SepHSR(30,10) alone vs distilled (the HSR paper's future work):
# the same student, seed and data with and without the teacher, on a schedule that ends settled -
# AdamW 2e-3 (wd 1e-4), 2 warm-up epochs, cosine to zero over EPOCHS (default 20) - instead of the HSR
# recipe's SGD 0.002 + ReduceLROnPlateau over 160 epochs, which 20 epochs leave mid-flight (there:
# distilled 7.81 vs alone 7.45 after a bad last epoch). Otherwise sephsr_30_10_utkface: batch 50, HSR
# augmentation, margin-0.1 crops, bf16 autocast.
# Teacher: the precomputed outputs (`agekit teacher-outputs`) of the two earlier shipped models (age_c3ae_wide_cosine_utkface, gender_agenet_utkface), as written by
# experiments/distill.sh into OUT/teachers (val 4.828 / test 4.936 as an ensemble).
# Usage: bash experiments/sephsr_kd.sh CACHE OUT TEACHER_DIR [EPOCHS] [-- TRAIN_ZOO_OPTIONS]
#   ~40 min per run on one core (next to another single-thread run); the two run in turn.
set -euo pipefail
here=$(dirname "$0")
source "$here/common.sh"
split_args "$@"; set -- "${ARGS[@]}"
CACHE=${1:?prepared UTKFace cache (view single_64_m0.1)}; OUT=${2:?output dir}; TD=${3:?folder with the teacher .npz files}
EP=${4:-20}
T="teacher=[$TD/age_c3ae_wide_cosine_utkface.npz,$TD/gender_agenet_utkface.npz]"
zoo() { python "$here/train_zoo.py" --data "$CACHE" --threads 1 --flip --epochs "$EP" "${COSINE[@]}" \
  --set trainer.precision=bf16-mixed "$@" "${TRAIN_ARGS[@]}"; }
zoo --out "$OUT/alone" --recipes sephsr_30_10_utkface --set preprocess.margin=0.1
zoo --out "$OUT/kd" --recipes sephsr_30_10_distill_lrn_utkface --set "$T" --set method.config.teacher_method=null
for r in alone/sephsr_30_10_utkface kd/sephsr_30_10_distill_lrn_utkface; do
  eval_test "$OUT/$r" "$CACHE"
done
python "$here/compact_table.py" "sephsr_30_10_cosine_alone=$OUT/alone/sephsr_30_10_utkface" \
  "sephsr_30_10_cosine_kd=$OUT/kd/sephsr_30_10_distill_lrn_utkface" --out "$OUT/sephsr_kd"
