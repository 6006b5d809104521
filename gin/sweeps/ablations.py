"""The paper's ablations (Li et al. 2024, arXiv 2407.21046) as axes shared by
`builtin_ablations.py` and `wmt14_ablations.py`.

TRAIN varies one training setting at a time around the default student (random initial decoder
inputs, previous-token remasking, loss on noised tokens, one training stage, uniform mask ratio,
passthrough rejecter): the first axis holds the default run (`decoder_input_scheme=random`), the
others only their alternatives, so the default is trained once; in tables a setting a trial does
not change shows as `(base)`. DECODE is what every trained student is decoded with.
"""
from launch.sweeps import product, sweep, union

TRAIN = union(
    sweep("decoding.RefinementScheme.decoder_input_scheme", ["random", "mask", "mask_range"]),
    sweep("decoding.RefinementScheme.remasking_scheme", ["initial", "logits_sum"]),
    sweep("preprocessors.padir_noise.loss_weights", ["mask", "all"]),
    sweep("models.TrainingRecipe.num_train_stages", [2, 3]),
    sweep("preprocessors.padir_noise.ratio_distribution", ["fixed"]),
    sweep("decoding.RefinementScheme.rejecter", ["linear", "learned"]),
)

# Iterations at length beam 1, and length beams 3 and 5 at 4 iterations.
DECODE = union(
    sweep("decoding.PadirDecodeConfig.num_decode_iterations", [1, 2, 4, 8]),
    product(sweep("decoding.PadirDecodeConfig.num_decode_iterations", [4]),
            sweep("decoding.PadirDecodeConfig.length_beam", [3, 5])),
)
