"""The decoder-input scheme x the number of decode iterations, on the built-in corpus, sized to
finish in minutes on a CPU (`builtin_quick.gin`).

  python -m launch.local --sweep sweeps/builtin_decoding.py --root runs/sweeps/builtin_decoding

3 training runs (random / [MASK] / [MASK_i] initial decoder inputs), each decoded with 1, 2, 4
and 8 refinement iterations: 12 trials, scored on the first 200 test sentences.
"""
from launch.sweeps import Sweep, sweep

SWEEP = Sweep(
    name="builtin_decoding",
    gin_files=["models/padir_tiny.gin", "runs/train.gin", "tasks/builtin.gin",
               "sweeps/builtin_base.gin", "sweeps/builtin_quick.gin"],
    train=sweep("DECODER_INPUT_SCHEME", ["random", "mask", "mask_range"]),
    decode=sweep("models.PadirModel.num_decode_iterations", [1, 2, 4, 8]),
    eval_bindings={"TranslatorOptions.length_buckets": (64,)},  # one compiled shape
    eval_task="builtin_padir",
    eval_max_examples=200)
