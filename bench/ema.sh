#!/usr/bin/env bash
# EMA of the weights on the shipped student's recipe (issue #6, session 6): agenet_mt_distill_balanced_utkface
# with trainer.ema_decay (TensorFlow's warm-up, agekit's default) - run a: seed 1, decay 0.999; run b: seed 2,
# decay 0.9998 - then bench/ema_compare.py measures raw against EMA weights of each run (same trajectory).
# Two runs side by side, one thread each: about 32 min on the 2-core CPU; results in bench/results/ema_utkface.md.
# Usage: bash bench/ema.sh CACHE OUT TEACHER_DIR   (TEACHER_DIR: bench/distill_npz.sh's OUT/teachers)
set -euo pipefail
here=$(dirname "$0")
source "$here/common.sh"
student_setup "$@"
python "$here/train_zoo.py" --data "$CACHE" --threads 1 --flip --epochs 60 --out "$OUT/ema_a" --recipes $R --set "$T" \
  --set trainer.seed=1 --set trainer.ema_decay=0.999 > "$OUT.a.log" 2>&1 &
python "$here/train_zoo.py" --data "$CACHE" --threads 1 --flip --epochs 60 --out "$OUT/ema_b" --recipes $R --set "$T" \
  --set trainer.seed=2 --set trainer.ema_decay=0.9998 > "$OUT.b.log" 2>&1 &
wait
python "$here/ema_compare.py" "$OUT/ema_a/$R" "$OUT/ema_b/$R" --data "$CACHE" --json "$OUT/ema_compare.json"
