"""The paper's ablations (`ablations.py`) on the built-in corpus with the tiny student (CPU):
12 training runs x 6 decodings = 72 trials (hours on a CPU; `--parallel` helps on many cores).

  python -m launch.local --sweep sweeps/builtin_ablations.py --root runs/sweeps/builtin_ablations
"""
import ablations  # gin/sweeps/ablations.py (a sweep file imports the files beside it)
from launch.sweeps import Sweep

SWEEP = Sweep(
    name="builtin_ablations",
    gin_files=["models/padir_tiny.gin", "runs/train.gin", "tasks/builtin.gin",
               "sweeps/builtin_base.gin"],
    train=ablations.TRAIN,
    decode=ablations.DECODE,
    eval_task="builtin_padir",
    eval_max_examples=500)
