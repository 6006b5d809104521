"""Decoding loops driven by logits callbacks: AR sampling / beam search and PaDIR refinement.

This package knows nothing of the network (T5X's and Flax's pattern): models hand it callbacks.
Its modules, bottom first (each imports only those above it in this list):

  choice.py   the token choice (`choose_tokens`, argmax / sampling) and the sampling filters
              (`filter_logits`, `brevity_penalty`), which all the others share;
  config.py   the decode configs: `ARDecodeConfig`, `RefinementScheme`, `PadirDecodeConfig`,
              `RefinementConfig` (scheme + decode), `ablate_scheme`;
  ar.py       AR search: `temperature_sample`, `beam_search`;
  pieces.py   PaDIR's pieces: length candidates, initial decoder inputs, rejecters, re-masking,
              glancing, output clean-up;
  refine.py   PaDIR refinement: `refinement_step`, `refine`, `score_candidates`, `padir_decode`,
              `aligned_decode`.

Every public name is re-exported here, so code says `decoding.X` (`from padir import decoding`),
and gin does too: a gin file's `from padir import decoding` and `@decoding.PadirDecodeConfig`
resolve through these re-exports and register the object under the module `padir.decoding`, the
names that runs recorded in their config.gin before the package was split.

AR decoding (`ARModel`, with a KV cache):
  `tokens_to_logits(ids [N, 1] int32, cache) -> (logits [N, V] float32, new_cache)`. The cache is
  any pytree; its leaves with ndim >= 1 have the batch first (they are repeated per decode / beam
  and gathered when beams are reordered), leaves with ndim 0 (e.g. `cache_index`) are shared.
  - `temperature_sample`: greedy (temperature 0), or temperature / top-k / top-p sampling.
  - `beam_search`: beam search with T5X's (GNMT) brevity penalty.
  Both are `lax.while_loop`s that stop when every row has ended (EOS) or at `max_decode_len`, and
  share the AR decode_fn contract (T5X's): `(prompt [B, P], cache, tokens_to_logits, *,
  num_decodes, max_decode_len, rng, eos_id, bos_id, pad_id, **options) -> (tokens [B,
  num_decodes, T], scores [B, num_decodes])`, best first, PAD after EOS. A new AR method is one
  such function, bound with `ARModel.decode_fn = @decoding.<name>`.

PaDIR decoding (`PadirModel`):
  `logits_fn(decoder_input_tokens [N, T], positions=None) -> (logits [N, T, V], accept_logits
  [N, T] or None)`, one full non-causal decoder pass (accept logits come from the learned
  rejecter's head). Given `positions [N, M]` int32, the logits are those at these positions only,
  [N, M, V] (the decoder still runs on all T; only the output projection is gathered): mask-predict
  refinement asks for the masked positions alone (`RefinementConfig.masked_logits_only`).
  Given `rows [N']` int32 (keyword), the decoder inputs are those of these of its N rows only,
  [N', T] (their encoder states): length candidates pruned after the first pass
  (`keep_candidates_after_first_pass`) are refined as a smaller batch.
  - `RefinementConfig`: every option of the loop, in two parts: the model's `RefinementScheme`
    (`config.scheme`, fixed at training) and the call's `PadirDecodeConfig` (`config.decode`);
    `ablate_scheme` is the one explicit way for decode-time options to change the scheme.
  - Pieces, public so that the model's unrolled multi-stage training uses what inference uses:
    `length_candidates`, `initial_decoder_inputs`, `choose_tokens`, `stutter_mask`, `reject`,
    `remask`, `score_candidates`; `refinement_step` (one pass, the choice, the rejecter and the
    re-masking) is the step both `refine`'s loop and the training stages run.
  - `refine`: the refinement loop (one `lax.while_loop` over a `RefinementState`).
  - `padir_decode`: candidates -> refine -> score (-> optional rescoring) -> best per example;
    `PadirModel`'s default `decode_fn`. Another method with its signature is bound with
    `PadirModel.decode_fn = @decoding.<name>`.
  - Output clean-up: `cut_at_eos`, `remove_stutter`, `postprocess`.

Conventions: a "length" counts the real tokens *and* the EOS, so a candidate of length L has EOS
at position L - 1 and PAD after it. PaDIR candidate rows are example-major: row `b * C + c` is
candidate `c` of example `b`, with `C = config.num_candidates` (static), so a model repeats its
encoder states `C` times (`jnp.repeat(x, C, axis=0)`) before building `logits_fn`.

Speed (see benchmarks/decode_speed.py): argmax choice reads the [N, T, V] logits in two fused
passes (argmax, then the log-normaliser) and never materialises a log-softmax; vocabulary masks are
additive [V] biases (a broadcast `jnp.where` mask de-vectorises XLA:CPU reductions); the loop is
one `lax.while_loop` inside the caller's jit (no host round-trip); `early_exit=False` fixes the
work at `num_decode_iterations` passes for benchmarks.

Where the paper's public code goes wrong, this does not: range masks sized by
`SpecialTokens.max_target_length` only; lengths clipped so EOS is never dropped; the candidate
count derived from the config and duplicate lengths removed; V read from the logits and the
[N, T, V] logits sum allocated only for the `logits_sum` scheme; convergence tracked per row; no
deletion of tokens equal to their initial value; no wrap-around in the stutter mask.
"""
# pylint: disable=unused-import
from padir.decoding.choice import (NEG_INF, Array, _allowed_ids, _argmax_tokens,
                                   _argmax_without_eos, _check_sampling, _id_bias,
                                   _output_log_probs, argmax_and_max, brevity_penalty,
                                   choose_tokens, filter_logits)
from padir.decoding.config import (AR_DECODE_METHODS, DECODER_INPUT_SCHEMES, REJECTERS,
                                   REMASKING_SCHEMES, SCORINGS, ARDecodeConfig, PadirDecodeConfig,
                                   RefinementConfig, RefinementScheme, ablate_scheme,
                                   field_names)
from padir.decoding.ar import (BEAM_NEG_INF, BeamState, SamplingState, TokensToLogits,
                               _gather_beams, _prepare_ar, _repeat_batch, beam_search,
                               temperature_sample)
from padir.decoding.pieces import (_compact, _front_order, _linear_schedule_count,
                                   _lowest_confidence, _real_positions, canvas_sizes,
                                   ctc_collapse, cut_at_eos, glance, initial_decoder_inputs,
                                   keep_visible_tokens, length_candidates, postprocess,
                                   projected_counts, reject, remask, remove_stutter,
                                   stutter_mask)
from padir.decoding.refine import (LogitsFn, RefinementState, RefinementStep, RescoreFn,
                                   _choose_at_masked, _final_tokens, _refine_on_fitted_canvas,
                                   _take_rows, aligned_decode, padir_decode, refine,
                                   refinement_step, score_candidates)
from padir.special_tokens import BOS_ID, EOS_ID, PAD_ID, SpecialTokens
