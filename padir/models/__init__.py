"""The AR and PaDIR models behind T5X's model interface, one module each:

  base.py    `BaseModel` (the interface, the decode config of a predict call), `shift_right`;
  ar.py      `ARModel`;
  padir.py   `PadirModel` and its `TrainingRecipe`.
(`ctc.CTCModel`, a `PadirModel` with another canvas and loss, is in `padir/ctc.py`.)

Every model has
  `get_initial_variables(rng, input_shapes, input_types=None) -> variables`,
  `loss_fn(params, batch, dropout_rng) -> (loss, metrics)`,
  `predict_batch_with_aux(params, batch, rng=None, decoder_params=None) -> (tokens [B, T], aux)`,
  `score_batch(params, batch) -> [B]`,
all pure functions of their arguments, to be wrapped in `jax.jit` by the caller. Batches use T5X's
feature names (`encoder_input_tokens`, `decoder_target_tokens`, `decoder_input_tokens`,
`decoder_loss_weights`, and for packed AR batches `encoder_segment_ids` / `decoder_segment_ids`).
Metrics are a flat dict of float32 scalars.

- `ARModel`: causal decoder, teacher forcing; greedy / beam / sampling with the KV cache.
- `PadirModel`: non-causal decoder, length predictor (`padir.length`), rejecter, parallel
  iterative refinement, unrolled multi-stage training built from `padir.decoding`'s pieces so
  that training and inference choose, reject and re-mask tokens identically. Its parts are
  objects bound in gin: `losses.LossSettings`, a `length.LengthPredictor`, a
  `decoding.RefinementScheme`, a `TrainingRecipe`.

The model owns the network-config fields that follow from its options and its vocabulary
(`vocab_size`, `max_target_length`, `decoder_causal`, `length_head`, `rejecter_head`): it sets
them on the `module` it is given, so gin only picks the network's size.

Every public name is re-exported here (`from padir import models`, `models.PadirModel`). gin knows
the models by the package's name, as runs recorded them before the split: `ARModel` and
`PadirModel` are registered with `module='padir.models'` (their `__module__` is the package's, so
a run's config.gin writes `from padir import models` and `models.PadirModel`), and a gin file's
`@models.TrainingRecipe()` resolves through the re-exports.
"""
# pylint: disable=unused-import
from padir.models.base import (Array, BaseModel, Batch, DecoderParams, Metrics, PyTree,
                               SourceRescoreFn, _float, _ratio, shift_right)
from padir.models.ar import AR_DECODE_FN_CONTRACT, NEG_INF, ARModel
from padir.models.padir import (LEGACY_ARGUMENTS, PadirModel, StageOutput, TrainingRecipe,
                                _with_legacy_arguments)
