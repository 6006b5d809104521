#!/bin/bash
# After the CTC ablation students: the mask-predict student resumed to the CTC students' 400-step time (~29 solo minutes).
set -x
cd /work/main; . .venv/bin/activate
while [ ! -e runs/m30k/chain_ablation.done ]; do sleep 20; done
[ -d runs/m30k/student_mp820 ] || cp -a runs/m30k/student_distilled runs/m30k/student_mp820
JAX_NUM_CPU_DEVICES=1 padir train --gin_file=models/padir_tiny.gin --gin_file=runs/train.gin --gin_file=experiments/multi30k_padir.gin --gin_file=runs/m30k/distilled/task.gin "--gin.trainer.train.init_checkpoint='runs/m30k/teacher'" --gin.TRAIN_STEPS=1000 --gin.trainer.train.num_train_steps=820 --gin.trainer.train.max_train_seconds=9000 --gin.KEEP_CHECKPOINTS=None --model_dir=runs/m30k/student_mp820 > runs/m30k/student_mp820.log 2>&1
touch runs/m30k/chain_mp.done
