#!/usr/bin/env bash
# Acceptance run of `agekit prepare` on the whole UTKFace release (23,708 files), dlib detector:
#   1. start the run, kill it (SIGKILL, the whole process group) after KILL_AFTER seconds;
#   2. rerun the same command: it resumes from the committed chunks and finishes;
#   3. optionally (REF=1) an uninterrupted run into $OUT.ref, and a comparison of the two caches;
#      REF_LIMIT=N makes that reference run only the first N samples (a prefix of the cache: rows,
#      metadata and crops are compared, splits are not, as they depend on the whole set).
# Usage: experiments/prepare_utkface.sh [UTKFACE_DIR] [OUT]    (env: KILL_AFTER=300 WORKERS=2 REF=0 REF_LIMIT=)
set -u
UTK=${1:-../shared/data/utkface/UTKFace}
OUT=${2:-/tmp/utk_cache}
KILL_AFTER=${KILL_AFTER:-300}
WORKERS=${WORKERS:-2}
CMD=(agekit prepare utkface --root "$UTK" --out "$OUT" --detector dlib --workers "$WORKERS")

rm -rf "$OUT"
echo "== $(date -Is) run 1 (killed after ${KILL_AFTER}s): ${CMD[*]}"
setsid "${CMD[@]}" --quiet &
PID=$!
sleep "$KILL_AFTER"
kill -KILL -- -"$PID" 2>/dev/null
wait "$PID" 2>/dev/null
echo "== killed; committed chunks: $(grep -c chunk_done "$OUT/work/journal.jsonl" 2>/dev/null || echo 0)"
echo "== $(date -Is) run 2 (resume)"
/usr/bin/time -v "${CMD[@]}" --quiet 2> "$OUT.time2.txt"
echo "== $(date -Is) done; timing of the resumed run in $OUT.time2.txt"

if [ "${REF:-0}" = 1 ]; then
  rm -rf "$OUT.ref"
  echo "== $(date -Is) reference run, uninterrupted"
  LIMIT=()
  [ -n "${REF_LIMIT:-}" ] && LIMIT=(--limit "$REF_LIMIT")
  /usr/bin/time -v agekit prepare utkface --root "$UTK" --out "$OUT.ref" --detector dlib --workers "$WORKERS" \
    "${LIMIT[@]}" --quiet 2> "$OUT.ref.time.txt"
  tools/compare_caches.py "$OUT" "$OUT.ref"
fi
