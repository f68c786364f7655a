#!/usr/bin/env bash
# The papers table (docs/results/papers-on-utkface.md) from a clean clone: prepares the two UTKFace caches if they are missing,
# runs every experiment script that feeds the table in two lanes side by side (one thread each), then assembles the
# table with experiments/papers_table.py into OUT/papers_table.md. Each script is resumable only as far as it is itself
# (train_zoo.py restarts a recipe that was cut off); rerun a lane's script by hand after an interruption.
#   lane 1: papers20.sh (SSR-Net +- dynamic range, C3AE plain/full, HSR(30,10), MobileNetV1(0.25); 20 epochs, ~95 min)
#           -> hsr_family.sh single (SepHSR(60,10), (90,30); 10 epochs, ~40 min)
#           -> lrn_teacher.sh (LRN ResNet-10-Tiny, 4 x 15 epochs, + SepHSR distilled from it; ~90 min)
#           -> ablations.sh b d d2 (C3AE with/without cascade, 10 epochs; Depth(3,1), (3,2) on the cosine schedule, 20
#              epochs; ~100 min)
#   lane 2: sephsr_kd.sh (SepHSR(30,10) alone and distilled from the shipped ensemble's outputs; ~75 min)
#           -> hsr_kres.sh (3-res. SepHSR(30,10), 20 epochs; ~65 min)
#           -> hsr_family.sh k3 (3-res. SepHSR(60,10), (90,30), BSepHSR(90,30); EPOCHS3 epochs, ~25-40 min each per 5)
#           -> lrn_r18.sh 4 x 5 epochs (~100 min) and 1 x 20 epochs (~120 min)
# About 8 hours of wall time on a 2-core CPU (lane 2 is the longer), plus ~12 min for the two caches; the
# params/MACs/latency columns come from benchmarks/papers_latency.py (~3 min, run last, on a quiet machine).
# Usage: bash experiments/papers.sh OUT [UTKFACE_DIR] [EPOCHS3] [-- TRAIN_ZOO_OPTIONS]
#   UTKFACE_DIR default ../shared/data/utkface/UTKFace; EPOCHS3 (3-resolution runs) default 5; the options after
#   `--` go to every training run (a dry run: see experiments/common.sh)
set -euo pipefail
here=$(dirname "$0")
source "$here/common.sh"
split_args "$@"; set -- "${ARGS[@]}"
OUT=${1:?output dir}; UTK=${2:-../shared/data/utkface/UTKFace}; EP3=${3:-5}
C=$OUT/caches/utkface; K=$OUT/caches/utk_kres01
mkdir -p "$OUT/teachers"
# prepare's default views hold the three the scripts read (single_64_m0.1, single_64_m0.4, c3ae_triple_64_m0.4)
[ -f "$C/info.json" ] || agekit prepare utkface --root "$UTK" --out "$C" --workers 2
[ -f "$K/info.json" ] || agekit prepare utkface --root "$UTK" --out "$K" --views kres_64_m0.1 --workers 2
W=src/agekit/weights
for n in age_c3ae_wide_cosine_utkface gender_agenet_utkface; do  # the shipped ensemble teacher's outputs
  [ -f "$OUT/teachers/$n.npz" ] || agekit teacher-outputs "$W/$n.safetensors" --data "$C" --out "$OUT/teachers/$n.npz"
done
lane1() {
  bash "$here/papers20.sh" "$C" "$OUT/papers20" -- "${TRAIN_ARGS[@]}"
  bash "$here/hsr_family.sh" "$C" "$K" "$OUT/hsr_family" 10 "$EP3" single -- "${TRAIN_ARGS[@]}"
  bash "$here/lrn_teacher.sh" "$C" "$OUT/lrn_teacher" -- "${TRAIN_ARGS[@]}"
  bash "$here/ablations.sh" "$C" "$OUT/ablations" b d d2 -- "${TRAIN_ARGS[@]}"
}
lane2() {
  bash "$here/sephsr_kd.sh" "$C" "$OUT/sephsr_kd" "$OUT/teachers" -- "${TRAIN_ARGS[@]}"
  bash "$here/hsr_kres.sh" "$K" "$OUT/hsr_kres" -- "${TRAIN_ARGS[@]}"
  bash "$here/hsr_family.sh" "$C" "$K" "$OUT/hsr_family" 10 "$EP3" k3 -- "${TRAIN_ARGS[@]}"
  bash "$here/lrn_r18.sh" "$C" "$OUT/lrn_r18_g4" 4 5 -- "${TRAIN_ARGS[@]}"
  bash "$here/lrn_r18.sh" "$C" "$OUT/lrn_r18" 1 20 -- "${TRAIN_ARGS[@]}"
}
lane1 > "$OUT/lane1.log" 2>&1 &
lane2 > "$OUT/lane2.log" 2>&1 &
wait
python "$here/../benchmarks/papers_latency.py" --out "$OUT/papers_latency"
python "$here/papers_table.py" "$OUT/papers20/results.json" "$OUT/ablations/results.json" "$OUT/sephsr_kd/sephsr_kd.json" \
  "$OUT/lrn_teacher/skd_lrn/results.json" "$OUT/hsr_family/single/results.json" "$OUT/hsr_kres/kres.json" \
  "$OUT/hsr_family/k3/results.json" "$OUT/lrn_teacher/lrn/results.json" "$OUT/lrn_r18/r18/results.json" \
  "$OUT/lrn_r18_g4/r18/results.json" --latency "$OUT/papers_latency.json" --out "$OUT/papers_table"
