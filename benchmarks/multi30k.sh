#!/usr/bin/env bash
# Multi30k En->De, the whole pipeline on the CPU budget: AR teacher (60 minutes of
# training) -> distillation of train -> PaDIR students on raw and distilled data (each
# started from the teacher's parameters) -> every system on test_2016_flickr, with speed.
#
#   bash benchmarks/multi30k.sh [ROOT]          # default ROOT: runs/multi30k
#
# Re-running resumes: a stage whose marker ROOT/STAGE.done exists is skipped, an interrupted
# training resumes from its newest checkpoint with what is left of its wall-time budget, an
# interrupted distillation from its finished shards. Results: ROOT/results/{results.json,results.md,
# tradeoff.png}. Data: ../shared/data/multi30k (or $PADIR_MULTI30K_DIR).
# Wall-time budgets (seconds) of the trainings: TEACHER_SECONDS (3600), STUDENT_SECONDS (3600).
# DISTILL_METHOD: greedy (default: ~5 minutes for the 29k sentences on 2 CPU cores; the whole run
# takes ~3.5 hours) or beam (4 beams, the paper's choice, ~4x the cost).
# GPU setting: MODEL_SIZE=small EXTRA_GIN=experiments/multi30k_gpu.gin DISTILL_METHOD=beam
# (6+6 layers, d_model 512, bfloat16, larger batches) with TEACHER_SECONDS/STUDENT_SECONDS of
# your budget.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${1:-runs/multi30k}
TEACHER_SECONDS=${TEACHER_SECONDS:-3600}
STUDENT_SECONDS=${STUDENT_SECONDS:-3600}
MODEL_SIZE=${MODEL_SIZE:-tiny}
DISTILL_METHOD=${DISTILL_METHOD:-greedy}  # greedy or beam (4 beams)
EXTRA=(${EXTRA_GIN:+--gin_file=$EXTRA_GIN})  # added to every training
mkdir -p "$ROOT"
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$ROOT/jax_cache}
# A data-parallel mesh over the 2 CPU cores: XLA's CPU runtime keeps both threads busy for only
# ~15 % of a step on one device; two devices train the AR teacher 1.33x faster (BENCHMARKS.md,
# "Training throughput"). Only the CPU backend reads it.
export JAX_NUM_CPU_DEVICES=${JAX_NUM_CPU_DEVICES:-2}

log() { echo "[multi30k $(date -u +%H:%M:%S)] $*" >&2; }

# A training stage: `padir train ARGS...` with a wall-time budget of SECONDS, summed over
# resumes (trainer.train.max_train_seconds); the stage is done when `padir train` returns.
timed_train() {
  local stage=$1 seconds=$2; shift 2
  if [[ -e $ROOT/$stage.done ]]; then log "$stage: done earlier, reused"; return; fi
  log "$stage: training for at most ${seconds}s"
  padir train "$@" "${EXTRA[@]}" --gin.trainer.train.max_train_seconds="$seconds"
  date -u +%FT%TZ > "$ROOT/$stage.done"
}

timed_train teacher "$TEACHER_SECONDS" \
  --gin_file=models/ar_$MODEL_SIZE.gin --gin_file=runs/train.gin \
  --gin_file=experiments/multi30k_ar.gin --model_dir="$ROOT/teacher"

if [[ ! -e $ROOT/distill.done ]]; then
  log "distill: the training split, $DISTILL_METHOD"
  padir distill --teacher_dir "$ROOT/teacher" --task multi30k_en_de_ar --module tasks.multi30k \
    --split train --output "$ROOT/distilled" --decode_method "$DISTILL_METHOD" --beam_size 4 \
    --name multi30k_distilled
  date -u +%FT%TZ > "$ROOT/distill.done"
fi

STUDENT=(--gin_file=models/padir_$MODEL_SIZE.gin --gin_file=runs/train.gin
         --gin_file=experiments/multi30k_padir.gin
         --gin.trainer.train.init_checkpoint="'$ROOT/teacher'")
# The distilled task's validation split is Multi30k's, with the real references.
timed_train student_distilled "$STUDENT_SECONDS" "${STUDENT[@]}" \
  --gin_file="$ROOT/distilled/task.gin" --model_dir="$ROOT/student_distilled"
timed_train student_raw "$STUDENT_SECONDS" "${STUDENT[@]}" \
  --gin.MIXTURE_OR_TASK_NAME="'multi30k_en_de_padir'" --model_dir="$ROOT/student_raw"

log "evaluate: every system on test_2016_flickr"
python -m benchmarks.multi30k_report --root "$ROOT"
