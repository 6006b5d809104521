"""The decoder-input scheme x the number of decode iterations, on `padir demo`'s corpus and
students, sized to finish in about 20 minutes on 2 CPU cores:

  padir demo --workdir runs/demo          # first: its AR teacher initialises every student
  python -m launch.local --sweep sweeps/builtin_decoding.py --root runs/sweeps/builtin_decoding

3 training runs (random / [MASK] / [MASK_i] initial decoder inputs; otherwise the demo's raw-data
student: experiments/builtin_padir.gin, 1500 steps, mask-predict), each decoded with 1, 2, 4 and 8
refinement iterations: 12 trials, scored on the demo's 512 test sentences.
"""
from launch.sweeps import Sweep, sweep

SWEEP = Sweep(
    name="builtin_decoding",
    gin_files=["models/padir_tiny.gin", "runs/train.gin", "experiments/builtin_mini.gin",
               "experiments/builtin_padir.gin"],
    train=sweep("decoding.RefinementScheme.decoder_input_scheme", ["random", "mask", "mask_range"]),
    decode=sweep("decoding.PadirDecodeConfig.num_decode_iterations", [1, 2, 4, 8]),
    # Run from the repository root (the path is relative to it).
    bindings={"trainer.train.init_checkpoint": "runs/demo/teacher_init",
              "trainer.train.progress_bar": False},
    eval_bindings={"TranslatorOptions.length_buckets": (32,)},  # one compiled shape
    eval_task="builtin_demo_padir")
