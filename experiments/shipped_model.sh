#!/usr/bin/env bash
# The shipped age + gender weights (agenet_mt_distill_ema100_utkface; docs/results/shipped-weights.md), from the package
# alone: the two teachers' precomputed outputs, the student (recipe agenet_mt_distill_ema100_utkface: AgeNet-MT,
# DLDL-v2 + 5 x gender CE, half of the age loss distilled from the teachers, age-balanced epochs, EMA 0.9998, 100
# epochs), the median decoder (tools/with_decoder.py), flip-averaged validation and test reports, and the weight files
# with their card (tools/ship_weights.py, written to OUT/weights, not into the package).
# Resumable: rerun the same command after an interruption. About an hour on one core of a 2-core CPU.
# Usage: bash experiments/shipped_model.sh CACHE OUT [WEIGHTS_DIR]
#   CACHE: `agekit prepare utkface --root ../shared/data/utkface/UTKFace --out caches/utkface` (view single_64_m0.1)
#   WEIGHTS_DIR: where the two teacher weights are (default src/agekit/weights)
set -euo pipefail
here=$(dirname "$0")
source "$here/common.sh"
CACHE=${1:?prepared UTKFace cache}; OUT=${2:?output dir}; W=${3:-src/agekit/weights}
mkdir -p "$OUT/teachers"
for t in age_c3ae_wide_cosine_utkface gender_agenet_utkface; do
  [ -f "$OUT/teachers/$t.npz" ] || agekit teacher-outputs "$W/$t.safetensors" --data "$CACHE" --out "$OUT/teachers/$t.npz"
done
RUN=$OUT/agenet_mt_distill_ema100_utkface
agekit train --recipe agenet_mt_distill_ema100_utkface --data "$CACHE" --out "$RUN" --resume \
  --set "teacher=[$OUT/teachers/age_c3ae_wide_cosine_utkface.npz,$OUT/teachers/gender_agenet_utkface.npz]" \
  --set trainer.progress_bar=false
python "$here/../tools/with_decoder.py" "$RUN/final.safetensors" "$RUN/final_median.pt" --decoder median
for split in val test; do
  agekit evaluate "$RUN/final_median.pt" --data "$CACHE" --split "$split" --flip --out "$RUN/rep_${split}--flip" > /dev/null
done
python "$here/../tools/ship_weights.py" "$RUN/final_median.pt" --name agenet_mt_distill_ema100_utkface \
  --alias age --alias gender --data "$CACHE" --flip --out-dir "$OUT/weights"
