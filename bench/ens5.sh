#!/usr/bin/env bash
# A stronger teacher for the shipped student (issue #6, session 8): the two-model teacher (session 2's shipped
# C3AE-wide + AgeNet-gender) plus three students it taught - session 7's shipped 100-epoch EMA student and session
# 6's two 60-epoch EMA students (bench/ema.sh's ema_a, ema_b) - as one five-member ensemble (mean age, mean
# distribution; bench/ensemble.py: val 4.782 / test 4.875, CA(5) 0.644 / 0.630, flip). The student is the shipped
# recipe agenet_mt_distill_ema100_utkface taught by it; then its test and validation reports with the
# expectation decoder and, through bench/with_decoder.py, with the distribution's median (final_median.pt).
# Resumable (rerun the same command). About 65 min on one core next to another run.
# Usage: bash bench/ens5.sh CACHE OUT TEACHER_DIR EMA_OUT SHIPPED_PT
#   TEACHER_DIR: bench/distill_npz.sh's OUT/teachers (the two-model teacher's outputs); the three new members'
#   outputs are written there too. EMA_OUT: bench/ema.sh's OUT. SHIPPED_PT: the 100-epoch student (bench/ema100.sh's
#   RUN/final.pt, or session 7's shipped agenet_mt_distill_ema100_utkface.pt)
set -euo pipefail
here=$(dirname "$0")
source "$here/common.sh"
student_setup "$1" "$2" "$3"
EMA=${4:?bench/ema.sh OUT}; SHIPPED=${5:?the 100-epoch student checkpoint}
M=agenet_mt_distill_balanced_utkface
for p in "ema100:$SHIPPED" "ema_a:$EMA/ema_a/$M/final.pt" "ema_b:$EMA/ema_b/$M/final.pt"; do
  n=${p%%:*}; f=${p#*:}
  [ -f "$TD/$n.npz" ] || agekit teacher-outputs "$f" --data "$CACHE" --out "$TD/$n.npz"
done
W=src/agekit/weights  # the teacher as an ensemble of checkpoints, evaluated like `agekit evaluate`
[ -f "$OUT/ens5_teacher/card.json" ] || python "$here/ensemble.py" "$W/age_c3ae_wide_cosine_utkface.pt" \
  "$W/gender_agenet_utkface.pt" "$SHIPPED" "$EMA/ema_a/$M/final.pt" "$EMA/ema_b/$M/final.pt" --data "$CACHE" --flip \
  --threads 1 --out "$OUT/ens5_teacher"
T5="teacher=[$TD/age_c3ae_wide_cosine_utkface.npz,$TD/gender_agenet_utkface.npz,$TD/ema100.npz,$TD/ema_a.npz,$TD/ema_b.npz]"
RUN=$OUT/ens5_student
agekit train --recipe agenet_mt_distill_ema100_utkface --data "$CACHE" --set "$T5" --set trainer.progress_bar=false \
  --out "$RUN" --resume
eval_test "$RUN" "$CACHE"
agekit evaluate "$RUN/final.pt" --data "$CACHE" --split val --flip --out "$RUN/rep_val--flip" > /dev/null
python "$here/with_decoder.py" "$RUN/final.pt" "$RUN/final_median.pt" --decoder median
for s in val test; do
  agekit evaluate "$RUN/final_median.pt" --data "$CACHE" --split $s --flip --out "$RUN/rep_${s}_median--flip" > /dev/null
done
