#!/usr/bin/env bash
# The papers' ablations on UTKFace (issue #6), as short runs of bench/train_zoo.py:
#   SSR-Net with / without the dynamic range (SSR-Net Table 3),
#   C3AE plain with / without cascade training and with the three-scale context (C3AE Table 4),
#   SepHSR(30,10) Depth(3,s), s = 1, 2, 3 (HSR-Net Table 9),
#   LRN ResNet-10-Tiny (64x64) generations t = 1..4 (each generation's test MAE).
# Usage: bash bench/ablations.sh CACHE OUT [EPOCHS]   (EPOCHS per run and per LRN generation; default 8)
# Two shards run side by side with one thread each (faster than one process with two threads on 2 cores).
set -euo pipefail
CACHE=${1:?prepared UTKFace cache}; OUT=${2:?output dir}; EP=${3:-8}
export OMP_NUM_THREADS=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 MALLOC_TOP_PAD_=1000000000
here=$(dirname "$0")
common=(--data "$CACHE" --epochs "$EP" --threads 1 --set trainer.precision=bf16-mixed)
python "$here/train_zoo.py" "${common[@]}" --out "$OUT/a" \
  --recipes ssrnet_utkface,ssrnet_no_dr_utkface,c3ae_plain_utkface,c3ae_plain_no_cascade_utkface,c3ae_full_utkface \
  > "$OUT.a.log" 2>&1 &
python "$here/train_zoo.py" "${common[@]}" --out "$OUT/b" \
  --recipes sephsr_30_10_depth3_1_utkface,sephsr_30_10_depth3_2_utkface,sephsr_30_10_depth3_3_utkface,lrn_resnet10_tiny_64_g4_utkface \
  --set-for lrn_resnet10_tiny_64_g4_utkface:trainer.max_epochs=$(( (EP + 1) / 2 )) \
  > "$OUT.b.log" 2>&1 &
wait
python "$here/train_zoo.py" --merge "$OUT/a/results.json" "$OUT/b/results.json" --out "$OUT"
