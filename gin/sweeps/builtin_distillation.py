"""Raw vs AR-distilled training data on the built-in corpus (CPU), each decoded with 1, 2, 4
and 8 iterations; both scored on the raw test set.

Needs a distilled copy of the training set: train an AR teacher and distill with it, e.g.

  padir train --gin_file=models/ar_tiny.gin --gin_file=runs/train.gin \\
    --gin_file=tasks/builtin.gin --gin.MIXTURE_OR_TASK_NAME="'builtin_ar'" \\
    --gin.TRAIN_STEPS=3000 --model_dir=runs/builtin_ar
  padir distill --teacher_dir runs/builtin_ar --task builtin_ar --output runs/builtin_distilled
  BUILTIN_DISTILLED=runs/builtin_distilled python -m launch.local \\
    --sweep sweeps/builtin_distillation.py --root runs/sweeps/builtin_distillation

(`padir demo` makes the same teacher and distilled set.)
"""
import os

from launch.sweeps import GIN_FILE, Sweep, sweep

DISTILLED_TASK_GIN = os.path.abspath(
    os.path.join(os.environ.get("BUILTIN_DISTILLED", "runs/builtin_distilled"), "task.gin"))

SWEEP = Sweep(
    name="builtin_distillation",
    gin_files=["models/padir_tiny.gin", "runs/train.gin", "tasks/builtin.gin",
               "sweeps/builtin_base.gin"],
    train=sweep(GIN_FILE, {"raw": None, "distilled": DISTILLED_TASK_GIN}),
    decode=sweep("decoding.PadirDecodeConfig.num_decode_iterations", [1, 2, 4, 8]),
    eval_task="builtin_padir",
    eval_max_examples=500)
