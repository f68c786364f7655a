#!/usr/bin/env bash
# SepHSR(30,10) training images/s through `agekit train` on the CPU: one process with two threads against
# DDP with two one-thread processes (gloo), at the paper's global batch 50 (25 per rank) and at 50 per rank.
# FAST_HSR settings (bf16 + channels-last + padded channels), 2 epochs of 120 batches; ROUNDS interleaved rounds.
#   bash benchmarks/ddp_cpu_throughput.sh CACHE OUT [ROUNDS=2]
set -euo pipefail
CACHE=${1:?cache}; OUT=${2:?out}; ROUNDS=${3:-2}
source "$(dirname "$0")/../experiments/common.sh"
mkdir -p "$OUT"
F=("${FAST_HSR[@]}" --set trainer.max_epochs=2 --set trainer.limit_train_batches=120 --set trainer.limit_val_batches=2
   --set trainer.progress_bar=false)
DDP=(--set trainer.strategy=ddp --set trainer.devices=2 --set trainer.accelerator=cpu)
echo "| round | setting | processes x threads | batch per rank | images | images/s |" > "$OUT/results.md"
echo "|---|---|---|---:|---:|---:|" >> "$OUT/results.md"
for round in $(seq 1 "$ROUNDS"); do
  mkdir -p "$OUT/r$round"
  for setting in one_process ddp_b25 ddp_b50; do
    run="$OUT/r$round/$setting"; rm -rf "$run"
    case $setting in
      one_process) OMP_NUM_THREADS=2 agekit train --recipe sephsr_30_10_utkface --data "$CACHE" --out "$run" "${F[@]}" > "$run.log" 2>&1 ;;
      ddp_b25) OMP_NUM_THREADS=1 agekit train --recipe sephsr_30_10_utkface --data "$CACHE" --out "$run" "${F[@]}" "${DDP[@]}" --set data.batch_size=25 > "$run.log" 2>&1 ;;
      ddp_b50) OMP_NUM_THREADS=1 agekit train --recipe sephsr_30_10_utkface --data "$CACHE" --out "$run" "${F[@]}" "${DDP[@]}" > "$run.log" 2>&1 ;;
    esac
    python - "$run/card.json" "$round" "$setting" >> "$OUT/results.md" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
w = c.get("world_size", 1)
procs = {"one_process": "1 x 2", "ddp_b25": "2 x 1", "ddp_b50": "2 x 1"}[sys.argv[3]]
b = {"one_process": 50, "ddp_b25": 25, "ddp_b50": 50}[sys.argv[3]]
print(f"| {sys.argv[2]} | {sys.argv[3]} | {procs} | {b} | {c['train_images']:,} | {c['train_images_per_s']} |")
PY
  done
done
cat "$OUT/results.md"
