#!/usr/bin/env bash
# Knowledge distillation on UTKFace (issue #6, "Beat it"): an ensemble teacher of three compact models
# distilled into C3AE-wide (75,625 params) and AgeNet-MT (98,871 params, age + gender); each student is
# compared with the same student trained alone (bench/compact.sh's c3ae_wide_cosine_utkface and
# agenet_mt_utkface runs: same recipe, seed and epochs, only the loss differs).
#   teacher: agenet_gender_utkface + agenet_mt_utkface + c3ae_wide_cosine_utkface (281,543 params):
#            mean age, mean 101-bin distribution (agekit.training.teacher.TeacherEnsemble)
# Usage: bash bench/distill.sh CACHE OUT [TEACHER_RUNS]
#   TEACHER_RUNS: a folder holding the three teacher runs (RECIPE/final.pt, e.g. bench/compact.sh's OUT/a
#   and OUT/b merged by symlinks); trained here first when absent (about 1 h more).
# Two processes, one thread each: about 1 h for the two round-1 students and 45 min for round 2 on the
# 2-core CPU (the teacher's forward passes roughly double the 30-35 s per epoch of a student alone).
set -euo pipefail
CACHE=${1:?prepared UTKFace cache (view single_64_m0.1)}; OUT=${2:?output dir}; TR=${3:-$OUT/teachers}
export OMP_NUM_THREADS=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 MALLOC_TOP_PAD_=1000000000
here=$(dirname "$0")
T1=agenet_gender_utkface; T2=agenet_mt_utkface; T3=c3ae_wide_cosine_utkface
if [ ! -f "$TR/$T1/final.pt" ] || [ ! -f "$TR/$T2/final.pt" ] || [ ! -f "$TR/$T3/final.pt" ]; then
  python "$here/train_zoo.py" --data "$CACHE" --epochs 60 --threads 1 --flip --out "$TR" --recipes $T1,$T2 > "$OUT.t1.log" 2>&1 &
  python "$here/train_zoo.py" --data "$CACHE" --epochs 60 --threads 1 --flip --out "$TR" --recipes $T3 > "$OUT.t2.log" 2>&1 &
  wait
fi
teacher="teacher=[$TR/$T1/final.pt,$TR/$T2/final.pt,$TR/$T3/final.pt]"
python "$here/ensemble.py" "$TR/$T1/final.pt" "$TR/$T2/final.pt" "$TR/$T3/final.pt" --data "$CACHE" --flip \
  --threads 2 --out "$OUT/teacher" | tee "$OUT.teacher.log"
python "$here/train_zoo.py" --data "$CACHE" --epochs 60 --threads 1 --flip --out "$OUT/a" --recipes agenet_mt_distill_utkface \
  --set "$teacher" > "$OUT.a.log" 2>&1 &
python "$here/train_zoo.py" --data "$CACHE" --epochs 60 --threads 1 --flip --out "$OUT/b" --recipes c3ae_wide_distill_utkface \
  --set "$teacher" > "$OUT.b.log" 2>&1 &
wait
# Round 2, 45 epochs each (what fitted this session's CPU time; the cosine decays over the 45):
#   c: a second refinery generation (LRN Alg. 1 with an ensemble): AgeNet-MT taught by the two
#      round-1 students and agenet_gender;
#   d: the age extremes: agenet_mt_distill_balanced_utkface (round-1 teacher, data.balance 0.25).
S1=$OUT/a/agenet_mt_distill_utkface/final.pt; S2=$OUT/b/c3ae_wide_distill_utkface/final.pt
python "$here/train_zoo.py" --data "$CACHE" --epochs 45 --threads 1 --flip --out "$OUT/c" \
  --recipes agenet_mt_distill_utkface --set "teacher=[$S1,$S2,$TR/$T1/final.pt]" > "$OUT.c.log" 2>&1 &
python "$here/train_zoo.py" --data "$CACHE" --epochs 45 --threads 1 --flip --out "$OUT/d" \
  --recipes agenet_mt_distill_balanced_utkface --set "$teacher" > "$OUT.d.log" 2>&1 &
wait
python "$here/train_zoo.py" --merge "$OUT/a/results.json" "$OUT/b/results.json" "$OUT/c/results.json" \
  "$OUT/d/results.json" --out "$OUT"
python "$here/compact_table.py" "$OUT/a/agenet_mt_distill_utkface" "$OUT/b/c3ae_wide_distill_utkface" \
  "agenet_mt_distill_gen2=$OUT/c/agenet_mt_distill_utkface" "$OUT/d/agenet_mt_distill_balanced_utkface" \
  --out "$OUT/students"
