#!/usr/bin/env bash
# Distillation from precomputed teacher outputs on the CPU: no teacher forward passes.
#   teacher: the two earlier shipped models - age_c3ae_wide_cosine_utkface + gender_agenet_utkface -
#            as an ensemble (mean flip-averaged age, AgeNet's 101-bin distribution): val 4.828 / test 4.936
#   a, b: AgeNet-MT and C3AE-wide students, 60 epochs (same recipes, seed and epochs as the students trained
#         alone in experiments/compact.sh: agenet_mt_utkface, c3ae_wide_cosine_utkface)
#   c, d: SepHSR(30,10) alone and distilled (HSR recipe, margin-0.1 crops, 20 epochs each)
#   e:    a second generation: AgeNet-MT taught by the teachers and the two round-1 students (4 members)
#   f:    AgeNet-MT with gently age-balanced epochs (data.balance 0.25), the first teacher -
#         agenet_mt_distill_balanced_utkface (best validation MAE of the AgeNet-MT students)
# Usage: bash experiments/distill.sh CACHE OUT [WEIGHTS_DIR]   (WEIGHTS_DIR: where the two teacher .pt files are;
#        default src/agekit/weights). About 2 h on a 2-core CPU (two runs side by side, one thread each).
set -euo pipefail
CACHE=${1:?prepared UTKFace cache (view single_64_m0.1)}; OUT=${2:?output dir}; W=${3:-src/agekit/weights}
here=$(dirname "$0")
source "$here/common.sh"
mkdir -p "$OUT/teachers"
for n in age_c3ae_wide_cosine_utkface gender_agenet_utkface; do
  agekit teacher-outputs "$W/$n.safetensors" --data "$CACHE" --out "$OUT/teachers/$n.npz"
done
python "$here/ensemble.py" "$W/age_c3ae_wide_cosine_utkface.safetensors" "$W/gender_agenet_utkface.safetensors" --data "$CACHE" --flip \
  --threads 1 --out "$OUT/teacher" | tee "$OUT.teacher.log"
T="teacher=[$OUT/teachers/age_c3ae_wide_cosine_utkface.npz,$OUT/teachers/gender_agenet_utkface.npz]"
zoo() { python "$here/train_zoo.py" --data "$CACHE" --threads 1 --flip "$@"; }
zoo --epochs 60 --out "$OUT/a" --recipes agenet_mt_distill_utkface --set "$T" > "$OUT.a.log" 2>&1 &
zoo --epochs 60 --out "$OUT/b" --recipes c3ae_wide_distill_utkface --set "$T" > "$OUT.b.log" 2>&1 &
wait
zoo --epochs 20 --out "$OUT/c" --recipes sephsr_30_10_utkface --set preprocess.margin=0.1 \
  --set trainer.precision=bf16-mixed > "$OUT.c.log" 2>&1 &
zoo --epochs 20 --out "$OUT/d" --recipes sephsr_30_10_distill_lrn_utkface --set "$T" \
  --set method.config.teacher_method=null --set trainer.precision=bf16-mixed > "$OUT.d.log" 2>&1 &
S1=$OUT/a/agenet_mt_distill_utkface/final.safetensors; S2=$OUT/b/c3ae_wide_distill_utkface/final.safetensors
agekit teacher-outputs "$S1" --data "$CACHE" --out "$OUT/teachers/agenet_mt_distill_utkface.npz"
agekit teacher-outputs "$S2" --data "$CACHE" --out "$OUT/teachers/c3ae_wide_distill_utkface.npz"
T2="teacher=[$OUT/teachers/age_c3ae_wide_cosine_utkface.npz,$OUT/teachers/gender_agenet_utkface.npz,$OUT/teachers/agenet_mt_distill_utkface.npz,$OUT/teachers/c3ae_wide_distill_utkface.npz]"
wait
zoo --epochs 60 --out "$OUT/e" --recipes agenet_mt_distill_utkface --set "$T2" > "$OUT.e.log" 2>&1 &
zoo --epochs 60 --out "$OUT/f" --recipes agenet_mt_distill_balanced_utkface --set "$T" > "$OUT.f.log" 2>&1 &
wait
for r in a/agenet_mt_distill_utkface b/c3ae_wide_distill_utkface c/sephsr_30_10_utkface \
         d/sephsr_30_10_distill_lrn_utkface e/agenet_mt_distill_utkface f/agenet_mt_distill_balanced_utkface; do
  eval_test "$OUT/$r" "$CACHE"
done
python "$here/compact_table.py" "$OUT/a/agenet_mt_distill_utkface" "$OUT/b/c3ae_wide_distill_utkface" \
  "sephsr_30_10_m0.1=$OUT/c/sephsr_30_10_utkface" "$OUT/d/sephsr_30_10_distill_lrn_utkface" \
  "agenet_mt_distill_gen2=$OUT/e/agenet_mt_distill_utkface" "$OUT/f/agenet_mt_distill_balanced_utkface" \
  --out "$OUT/students"
