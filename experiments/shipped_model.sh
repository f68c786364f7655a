#!/usr/bin/env bash
# The shipped default (issue #6, session 7): the recipe agenet_mt_distill_ema100_utkface - session 6's EMA student
# (seed 2, decay 0.9998) trained for 100 epochs instead of 60 - then its test reports (plain and flip), its
# validation report (flip) and the one-row table OUT/ema100_table.md (quoted in bench/results/ema_utkface.md). Resumable: rerun the same command after
# an interruption. 57 min on one core of the 2-core CPU next to another run (484 img/s).
# Usage: bash bench/ema100.sh CACHE OUT TEACHER_DIR   (TEACHER_DIR: bench/distill_npz.sh's OUT/teachers)
set -euo pipefail
here=$(dirname "$0")
source "$here/common.sh"
student_setup "$@"
RUN=$OUT/agenet_mt_distill_ema100_utkface
agekit train --recipe agenet_mt_distill_ema100_utkface --data "$CACHE" --set "$T" --set trainer.progress_bar=false \
  --out "$RUN" --resume
eval_test "$RUN" "$CACHE"
agekit evaluate "$RUN/final.pt" --data "$CACHE" --split val --flip --out "$RUN/rep_val--flip" > /dev/null
python "$here/compact_table.py" "ema100 (shipped; 100 epochs)=$RUN" --out "$OUT/ema100_table"
