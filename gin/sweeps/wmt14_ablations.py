"""The paper's ablations (`ablations.py`) on WMT14 En->De with the `base` student, for
accelerators: 12 training runs x 6 decodings = 72 trials, plus the raw-vs-distilled pair.

  python -m launch.xm_launch --sweep sweeps/wmt14_ablations.py --platform tpu \\
    --root /gcs/BUCKET/padir/sweeps/wmt14_ablations --dry_run

Distilled data: the AR teacher's `padir distill` output (its task.gin registers the distilled
training set), e.g. `padir distill --teacher_dir .../wmt14_ar_base --task wmt14_en_de_ar
--output $WMT14_DISTILLED`; set WMT14_DISTILLED to that directory before launching (default
`/gcs/padir/wmt14_en_de/distilled`). Every trial is scored on the raw newstest2014.
"""
import os

import ablations  # gin/sweeps/ablations.py (a sweep file imports the files beside it)
from launch.sweeps import GIN_FILE, Sweep, sweep, union

DISTILLED_TASK_GIN = os.path.join(
    os.environ.get("WMT14_DISTILLED", "/gcs/padir/wmt14_en_de/distilled"), "task.gin")

SWEEP = Sweep(
    name="wmt14_ablations",
    gin_files=["models/padir_base.gin", "runs/train.gin", "tasks/wmt14_en_de.gin",
               "sweeps/wmt14_base.gin"],
    train=union(ablations.TRAIN, sweep(GIN_FILE, {"distilled": DISTILLED_TASK_GIN})),
    decode=ablations.DECODE,
    eval_task="wmt14_en_de_padir",
    task_modules=["tasks.wmt"])
