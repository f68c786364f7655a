#!/usr/bin/env bash
# The shipped student's recipe (agenet_mt_distill_ema100_utkface: the two-model teacher, EMA, seed 2) trained for
# EPOCHS epochs in two lanes of one thread each (issue #6, session 9):
#   OUT/train_EPOCHS     on the train split: its validation MAE says whether EPOCHS beats 100 epochs (4.839 mean /
#                        4.806 median decoder);
#   OUT/trainval_EPOCHS  the same recipe refitted on train + val (18,270 faces instead of 15,986); val is trained on,
#                        so nothing is chosen on it: the decoder (median) and the length come from the train lane.
# Then each lane's final.pt gets the median decoder (bench/with_decoder.py) and flip-averaged reports: val (train
# lane only) and test. Resumable: rerun the same command after an interruption.
# Usage: bash bench/final_fit.sh CACHE OUT TEACHER_DIR [EPOCHS=150]
set -euo pipefail
here=$(dirname "$0")
source "$here/common.sh"
student_setup "$@"
E=${4:-150}
lane() {  # lane NAME RECIPE: agenet_mt_distill_tv150_utkface is the ema100 recipe on train + val at 150 epochs
  local run=$OUT/$1_$E
  agekit train --recipe "$2" --data "$CACHE" --set "$T" --set trainer.progress_bar=false --set trainer.max_epochs=$E \
    --out "$run" --resume > "$run.log" 2>&1
  python "$here/with_decoder.py" "$run/final.pt" "$run/median.pt" --decoder median
  for ck in final median; do
    agekit evaluate "$run/$ck.pt" --data "$CACHE" --split test --flip --out "$run/rep_test_$ck" > /dev/null
    [ "$1" = train ] && agekit evaluate "$run/$ck.pt" --data "$CACHE" --split val --flip --out "$run/rep_val_$ck" > /dev/null
  done
  return 0
}
mkdir -p "$OUT"
lane train agenet_mt_distill_ema100_utkface & a=$!
lane trainval agenet_mt_distill_tv150_utkface & b=$!
wait $a; wait $b
python - "$OUT" "$E" <<'PY'
import json, sys
out, e = sys.argv[1], sys.argv[2]
print("| run | decoder | val MAE | test MAE | CA(3) | CA(5) | gender acc |\n|---|---|---:|---:|---:|---:|---:|")
for lane in ("train", "trainval"):
    for ck, dec in (("final", "mean"), ("median", "median")):
        t = json.load(open(f"{out}/{lane}_{e}/rep_test_{ck}/report.json"))["metrics"]
        try:
            v = "%.3f" % json.load(open(f"{out}/{lane}_{e}/rep_val_{ck}/report.json"))["metrics"]["mae"]
        except FileNotFoundError:
            v = "(trained on)"
        g = t.get("gender_accuracy", float("nan"))
        print(f"| {lane} {e} ep | {dec} | {v} | {t['mae']:.3f} | {t['ca']['3']:.3f} | {t['ca']['5']:.3f} | {g:.3f} |")
PY
