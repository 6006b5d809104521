#!/bin/bash
# Issue 28's ablation students (2026-12-07 session 2).
set -x
cd /work/main; . .venv/bin/activate
COMMON=(--gin_file=models/ctc_tiny.gin --gin_file=runs/train.gin --gin_file=experiments/multi30k_ctc.gin "--gin.trainer.train.init_checkpoint='runs/m30k/teacher'" --gin.TRAIN_STEPS=750 --gin.KEEP_CHECKPOINTS=None --gin.trainer.train.max_train_seconds=9000)
padir train "${COMMON[@]}" --gin_file=runs/m30k/distilled_beam/task.gin --model_dir=runs/m30k/student_ctc_beam > runs/m30k/student_ctc_beam.log 2>&1
padir train "${COMMON[@]}" --gin_file=runs/m30k/distilled/task.gin --gin.ctc.CTCModel.glancing_ratio=0.0 --gin.trainer.train.num_train_steps=400 --model_dir=runs/m30k/student_ctc_noglance > runs/m30k/student_ctc_noglance.log 2>&1
touch runs/m30k/chain_ablation.done
