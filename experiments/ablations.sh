#!/usr/bin/env bash
# The papers' ablations on UTKFace as short experiments/train_zoo.py runs, results in
# experiments/results/ablations_utkface.json (docs/results/papers-on-utkface.md):
#   a: SSR-Net with / without the dynamic range (SSR-Net Sec. 4.4), 3 epochs, margin-0.4 crops
#   b: C3AE plain with / without cascade training (C3AE Fig. 5), 10 epochs, margin-0.4 crops
#   c: SepHSR(30,10) Depth(3,1) (HSR-Net Table 9; Depth(3,3) is sephsr_30_10 itself, the sephsr_30_10_m0.1
#      row of experiments/results/distill_utkface.json), 20 epochs of the HSR recipe, margin 0.1, bf16 autocast,
#      flip-averaged test; `c2` adds Depth(3,2) on that schedule (no published result)
#   d: Depth(3,1) on experiments/sephsr_kd.sh's settled schedule (AdamW, cosine over 20 epochs), to compare with
#      that script's `alone` run (Depth(3,3)); `d2` is Depth(3,2) on the same schedule
# LRN's generations t = 1..4 (LRN Table 8) come from experiments/lrn_teacher.sh.
# Usage: bash experiments/ablations.sh CACHE OUT [a b c c2 d d2] [-- TRAIN_ZOO_OPTIONS]   (default: a b c d; two at a
#   time, one thread each)
# Measured on a 2-core CPU with two runs side by side: a 11 min, b 18 min, c and d about 38 min each.
set -euo pipefail
here=$(dirname "$0")
source "$here/common.sh"
split_args "$@"; set -- "${ARGS[@]}"
CACHE=${1:?prepared UTKFace cache}; OUT=${2:?output dir}; shift 2
parts=("${@:-a b c d}"); parts=(${parts[*]})
zoo() { python "$here/train_zoo.py" --data "$CACHE" --threads 1 --set trainer.precision=bf16-mixed "$@" "${TRAIN_ARGS[@]}"; }
run() {
  case "$1" in
    a) zoo --epochs 3 --out "$OUT/a" --recipes ssrnet_utkface,ssrnet_no_dr_utkface ;;
    b) zoo --epochs 10 --out "$OUT/b" --recipes c3ae_plain_utkface,c3ae_plain_no_cascade_utkface ;;
    c) zoo --epochs 20 --flip --out "$OUT/c" --set preprocess.margin=0.1 --recipes sephsr_30_10_depth3_1_utkface ;;
    d) zoo --epochs 20 --flip --out "$OUT/d" --set preprocess.margin=0.1 "${COSINE[@]}" \
         --recipes sephsr_30_10_depth3_1_utkface ;;
    d2) zoo --epochs 20 --flip --out "$OUT/d2" --set preprocess.margin=0.1 "${COSINE[@]}" \
         --recipes sephsr_30_10_depth3_2_utkface ;;
    c2) zoo --epochs 20 --flip --out "$OUT/c2" --set preprocess.margin=0.1 --recipes sephsr_30_10_depth3_2_utkface ;;
  esac > "$OUT.$1.log" 2>&1
}
mkdir -p "$OUT"
for ((i = 0; i < ${#parts[@]}; i += 2)); do
  run "${parts[i]}" &
  if ((i + 1 < ${#parts[@]})); then run "${parts[i + 1]}" & fi
  wait
done
python "$here/train_zoo.py" --merge $(for p in "${parts[@]}"; do echo "$OUT/$p/results.json"; done) --out "$OUT"
