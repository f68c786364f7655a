#!/usr/bin/env bash
# Two half-size students in one network under 100K parameters (issue #6, session 6): the shipped student's recipe
# (agenet_mt_distill_balanced_utkface: the two-model teacher's precomputed outputs, data.balance 0.25, AdamW +
# cosine, 60 epochs) with AgeNet-MT at widths 12-24-32-44, squeeze 16 (49,595 params) and EMA 0.999, seeds 1
# and 2; then agenet_mt_x2 = their average (99,190 params) and the test reports of all three.
# The two runs side by side, one thread each: about 40 min on the 2-core CPU.
# Usage: bash bench/half_ensemble.sh CACHE OUT TEACHER_DIR   (TEACHER_DIR: bench/distill_npz.sh's OUT/teachers)
set -euo pipefail
here=$(dirname "$0")
source "$here/common.sh"
student_setup "$@"
for s in 1 2; do
  python "$here/train_zoo.py" --data "$CACHE" --threads 1 --flip --epochs 60 --out "$OUT/half_s$s" --recipes $R \
    --set "$T" --set trainer.seed=$s --set trainer.ema_decay=0.999 \
    --set "model.config.widths=[12,24,32,44]" --set model.config.squeeze=16 > "$OUT.half_s$s.log" 2>&1 &
done
wait
python -c "import sys; from agekit.models.compact import combine_checkpoints; print(combine_checkpoints(sys.argv[1:3], sys.argv[3]))" \
  "$OUT/half_s1/$R/final.pt" "$OUT/half_s2/$R/final.pt" "$OUT/agenet_mt_x2.pt"
for split in val test; do
  for ck in "$OUT/half_s1/$R/final.pt" "$OUT/half_s2/$R/final.pt" "$OUT/agenet_mt_x2.pt"; do
    agekit evaluate "$ck" --data "$CACHE" --split $split --flip --out "${ck%.pt}_rep_${split}_flip" > /dev/null
    python -c "import json,sys; m=json.load(open(sys.argv[1]))['metrics']; print(sys.argv[2], sys.argv[3], round(m['mae'],3), round(m['ca']['5'],3), round(m.get('gender_accuracy') or 0,3))" \
      "${ck%.pt}_rep_${split}_flip/report.json" "$ck" $split
  done
done
