# Sourced by the experiments' shell scripts (not run on its own).
# One thread per run (two runs share the 2 cores) and glibc's allocator told to keep freed memory.
export OMP_NUM_THREADS=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 MALLOC_TOP_PAD_=1000000000
# agekit's settled schedule for short comparisons: AdamW 2e-3 (wd 1e-4), 2 warm-up epochs, cosine to zero.
COSINE=(--set optimizer.name=adamw --set optimizer.lr=0.002 --set optimizer.weight_decay=1.0e-4
        --set scheduler.name=cosine --set scheduler.warmup=2)
# Every training run of a script that calls split_args can be changed from its command line: the arguments after
# `--` go to each train_zoo.py (or agekit train) the script runs, after its own options (the last --set of a key
# wins). A dry run of the whole papers table (about an hour):
#   bash experiments/papers.sh OUT -- --set trainer.max_epochs=1 --set trainer.limit_train_batches=2 \
#     --set trainer.limit_val_batches=1
# split_args "$@" sets ARGS (the arguments before `--`) and TRAIN_ARGS (those after it); the script then runs
# `set -- "${ARGS[@]}"` and adds "${TRAIN_ARGS[@]}" to its training commands.
split_args() {
  ARGS=(); TRAIN_ARGS=()
  while [ $# -gt 0 ]; do
    if [ "$1" = -- ]; then shift; TRAIN_ARGS=("$@"); return; fi
    ARGS+=("$1"); shift
  done
}
# eval_test RUN_DIR CACHE: the test reports experiments/compact_table.py reads (RUN_DIR/rep_test, RUN_DIR/rep_test--flip).
eval_test() {
  agekit evaluate "$1/final.safetensors" --data "$2" --split test --out "$1/rep_test" > /dev/null
  agekit evaluate "$1/final.safetensors" --data "$2" --split test --flip --out "$1/rep_test--flip" > /dev/null
}
# Fast CPU training of the HSR family: bf16 autocast + channels-last + the backbone run with channels
# zero-padded to 16 (HSRNet pad_channels: same parameters, outputs and gradients); about 2x the img/s of bf16 alone.
FAST_HSR=(--set trainer.precision=bf16-mixed --set trainer.channels_last=true --set model.config.pad_channels=16)
# student_setup CACHE OUT TEACHER_DIR (the distillation students' scripts): sets CACHE, OUT, TD, T (the two-model teacher's
# precomputed outputs, as a --set value) and R (the shipped student's base recipe).
student_setup() {
  CACHE=${1:?prepared UTKFace cache (view single_64_m0.1)}; OUT=${2:?output dir}; TD=${3:?folder with the teacher .npz files}
  T="teacher=[$TD/age_c3ae_wide_cosine_utkface.npz,$TD/gender_agenet_utkface.npz]"
  R=agenet_mt_distill_balanced_utkface
}
