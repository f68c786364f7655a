#!/usr/bin/env bash
# The LRN teacher on the CPU and its distillation into SepHSR(30,10).
#   1. LRN ResNet-10-Tiny (1.26M parameters) with the small stem on UTKFace's 64x64 margin-0.1 crops: four
#      refinery generations (LRN Alg. 1, Eq. 16-20), 15 epochs each, bf16 autocast + channels-last (recipe
#      lrn_resnet10_tiny_64s_g4_utkface with --epochs 15) on agekit's schedule - AdamW 2e-3 (wd 1e-4), 2 warm-up
#      epochs, cosine to zero - instead of the recipe's SGD 0.02 with /10 steps: from scratch, SGD left generation 1
#      at val MAE 7.98 after 15 epochs. Each generation's test MAE (flip-averaged) lands in
#      OUT/lrn/results.md. About 13 min per generation on one core of a CPU with AMX (bf16 convolutions: ~650 img/s
#      with both cores, about half that next to another run).
#   2. `agekit teacher-outputs` of the last generation (flip-averaged Eq. 20 age + its 101-bin distribution).
#   3. SepHSR(30,10) distilled from it (recipe sephsr_30_10_distill_lrn_utkface: 0.5 x HSR L1 + 0.5 x (stage
#      KL to the tau-2 teacher + L1 to its age)) on experiments/sephsr_kd.sh's schedule (AdamW, 2 warm-up epochs,
#      cosine over 20 epochs), to compare with the `alone` run of experiments/sephsr_kd.sh. About 40 min on one core.
# Usage: bash experiments/lrn_teacher.sh CACHE OUT [EPOCHS_PER_GENERATION] [-- TRAIN_ZOO_OPTIONS]
set -euo pipefail
here=$(dirname "$0")
source "$here/common.sh"
split_args "$@"; set -- "${ARGS[@]}"
CACHE=${1:?prepared UTKFace cache (view single_64_m0.1)}; OUT=${2:?output dir}; EP=${3:-15}
python "$here/train_zoo.py" --data "$CACHE" --threads 1 --flip --epochs "$EP" --out "$OUT/lrn" \
  "${COSINE[@]}" --recipes lrn_resnet10_tiny_64s_g4_utkface "${TRAIN_ARGS[@]}"
agekit teacher-outputs "$OUT/lrn/lrn_resnet10_tiny_64s_g4_utkface/gen4/final.safetensors" --data "$CACHE" --out "$OUT/teachers/lrn_r10t_g4.npz"
python "$here/train_zoo.py" --data "$CACHE" --threads 1 --flip --epochs 20 --out "$OUT/skd_lrn" \
  "${COSINE[@]}" --set trainer.precision=bf16-mixed \
  --recipes sephsr_30_10_distill_lrn_utkface --set "teacher=[$OUT/teachers/lrn_r10t_g4.npz]" \
  --set method.config.teacher_method=null "${TRAIN_ARGS[@]}"
eval_test "$OUT/skd_lrn/sephsr_30_10_distill_lrn_utkface" "$CACHE"
