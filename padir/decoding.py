"""Decoding loops driven by logits callbacks: AR sampling / beam search and PaDIR refinement.

This module knows nothing of the network (T5X's and Flax's pattern): models hand it callbacks.

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
import dataclasses
import math
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import flax
import jax
import jax.numpy as jnp
from jax import lax

from padir.special_tokens import BOS_ID, EOS_ID, PAD_ID, SpecialTokens

Array = jax.Array
TokensToLogits = Callable[[Array, Any], Tuple[Array, Any]]
LogitsFn = Callable[..., Tuple[Array, Optional[Array]]]
RescoreFn = Callable[[Array], Array]

NEG_INF = -jnp.inf
# T5X's NEG_INF, `beam_search`'s "not a hypothesis": the log-prob of its empty beams, and the
# score a finished (EOS) hypothesis must beat to count (T5X ranks unfinished entries of its
# finished set at this value).
BEAM_NEG_INF = -1.0e7

DECODER_INPUT_SCHEMES = ("random", "mask", "mask_range")
REJECTERS = ("passthrough", "stutter", "linear", "constant_k", "constant_fraction", "learned")
REMASKING_SCHEMES = ("initial", "previous", "logits_sum")
SCORINGS = ("mean", "sum")
AR_DECODE_METHODS = ("greedy", "beam", "sample")


# ------------------------------------------------------------------------------------------------
# Shared helpers.


def brevity_penalty(length: Array, alpha: float) -> Array:
  """T5X / GNMT length penalty `((5 + length) / 6) ** alpha`; scores are log-probs divided by it."""
  return jnp.power((5.0 + jnp.asarray(length, jnp.float32)) / 6.0, alpha)


def filter_logits(logits: Array, top_k: int = 0, top_p: float = 1.0) -> Array:
  """Keeps the top-k and the top-p (nucleus) ids of each row; the rest get -inf.

  Args:
    logits: [..., V] float.
    top_k: keep the k largest logits (0: no top-k filter).
    top_p: keep the smallest set of largest ids whose probability reaches `top_p` (the largest
      id is always kept; 1.0: no nucleus filter).

  Returns:
    [..., V] logits, filtered ids at -inf.
  """
  if top_k > 0:
    kth = lax.top_k(logits, min(top_k, logits.shape[-1]))[0][..., -1:]
    logits = jnp.where(logits < kth, NEG_INF, logits)
  if top_p < 1.0:
    sorted_logits = -jnp.sort(-logits, axis=-1)
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    kept = mass_before < top_p
    threshold = jnp.min(jnp.where(kept, sorted_logits, jnp.inf), axis=-1, keepdims=True)
    logits = jnp.where(logits < threshold, NEG_INF, logits)
  return logits


def _check_sampling(temperature: float, top_k: int, top_p: float):
  if temperature < 0:
    raise ValueError(f"temperature={temperature} must be >= 0 (0 means argmax / greedy)")
  if top_k < 0:
    raise ValueError(f"top_k={top_k} must be >= 0 (0 means no top-k filter)")
  if not 0.0 < top_p <= 1.0:
    raise ValueError(f"top_p={top_p} must be in (0, 1] (1 means no nucleus filter)")


def _repeat_batch(tree: Any, times: int) -> Any:
  """Repeats every batch-first leaf (ndim >= 1) `times` times: row b -> rows b*times .. +times-1.

  The cache contract of the AR loops (here and in `beam_search`'s reordering): every leaf with a
  leading axis is per row, `[B, ...]`; a shared value (a step counter) must be a scalar. T5X
  exempts leaves by name (`cache_index`) instead."""
  return jax.tree_util.tree_map(lambda x: jnp.repeat(x, times, axis=0) if x.ndim else x, tree)


# ------------------------------------------------------------------------------------------------
# AR decoding.


@flax.struct.dataclass
class SamplingState:
  """Loop state of `temperature_sample` (N = batch * num_decodes rows)."""
  step: Array  # [] int32, tokens generated so far.
  sequences: Array  # [N, T + 1] int32, column 0 holds BOS.
  log_probs: Array  # [N] float32, summed log-probs of the generated (non-forced) tokens.
  ended: Array  # [N] bool, the row has produced EOS.
  cache: Any
  rng: Optional[Array]


def _prepare_ar(prompt: Array, max_decode_len: Optional[int]) -> Tuple[Array, int]:
  """Pads `prompt [B, P]` to `[B, T]`; returns it with T."""
  prompt = jnp.asarray(prompt, jnp.int32)
  max_decode_len = prompt.shape[1] if max_decode_len is None else max_decode_len
  if max_decode_len < 1:
    raise ValueError(f"max_decode_len={max_decode_len} must be >= 1")
  if prompt.shape[1] > max_decode_len:
    raise ValueError(f"the prompt ({prompt.shape[1]} tokens) is longer than "
                     f"max_decode_len={max_decode_len}")
  return jnp.pad(prompt, ((0, 0), (0, max_decode_len - prompt.shape[1]))), max_decode_len


def temperature_sample(prompt: Array,
                       cache: Any,
                       tokens_to_logits: TokensToLogits,
                       *,
                       max_decode_len: Optional[int] = None,
                       rng: Optional[Array] = None,
                       temperature: float = 0.0,
                       top_k: int = 0,
                       top_p: float = 1.0,
                       num_decodes: int = 1,
                       eos_id: int = EOS_ID,
                       bos_id: int = BOS_ID,
                       pad_id: int = PAD_ID) -> Tuple[Array, Array]:
  """Greedy decoding (temperature 0) or temperature / top-k / top-p sampling with a KV cache.

  Args:
    prompt: [B, P] int32 forced prefix: a non-zero id at position i forces output token i (T5X's
      decoder prompt; all zeros, or P = 0, for free decoding).
    cache: the decoder's cache for B rows (expanded here to B * num_decodes rows).
    tokens_to_logits: `(ids [N, 1], cache) -> (logits [N, V], new_cache)`.
    max_decode_len: T, the most tokens to generate (default P).
    rng: PRNG key, needed when temperature > 0.
    temperature: 0 for argmax; otherwise sample from softmax(logits / temperature).
    top_k: sample among the k most likely ids only (0: all).
    top_p: sample within the nucleus of probability top_p (1.0: all).
    num_decodes: samples per example.
    eos_id, bos_id, pad_id: ids; BOS is the first decoder input, PAD fills after EOS.

  Returns:
    tokens [B, num_decodes, T] int32 (PAD after EOS) and scores [B, num_decodes] float32 (summed
    log-probs of the generated tokens under the model, forced prompt tokens excluded), sorted by
    score, best first.
  """
  _check_sampling(temperature, top_k, top_p)
  if num_decodes < 1:
    raise ValueError(f"num_decodes={num_decodes} must be >= 1")
  if temperature > 0 and rng is None:
    raise ValueError("temperature > 0 samples: pass an rng")
  prompt, length = _prepare_ar(prompt, max_decode_len)
  batch = prompt.shape[0]
  rows = batch * num_decodes
  prompt = jnp.repeat(prompt, num_decodes, axis=0)

  def body(state: SamplingState) -> SamplingState:
    ids = lax.dynamic_slice_in_dim(state.sequences, state.step, 1, axis=1)
    logits, cache = tokens_to_logits(ids, state.cache)
    logits = logits.astype(jnp.float32)
    rng = state.rng
    if temperature == 0:
      tokens, _ = argmax_and_max(logits)
    else:
      rng, step_rng = jax.random.split(rng)
      # The nucleus of the tempered distribution (T5X's, HF's and fairseq's order).
      tokens = jax.random.categorical(step_rng, filter_logits(logits / temperature, top_k, top_p))
    forced = lax.dynamic_index_in_dim(prompt, state.step, axis=1, keepdims=False)
    tokens = jnp.where(forced != 0, forced, tokens).astype(jnp.int32)
    # log_softmax(logits)[token] without materialising the [N, V] log-softmax.
    token_log_probs = (jnp.take_along_axis(logits, tokens[:, None], axis=-1)[:, 0]
                       - jax.nn.logsumexp(logits, axis=-1))
    counted = ~state.ended & (forced == 0)
    tokens = jnp.where(state.ended, pad_id, tokens)
    return state.replace(
        step=state.step + 1,
        sequences=lax.dynamic_update_slice_in_dim(
            state.sequences, tokens[:, None], state.step + 1, axis=1),
        log_probs=state.log_probs + jnp.where(counted, token_log_probs, 0.0),
        # Only a generated EOS ends a row; an EOS forced by the prompt does not (T5X).
        ended=state.ended | ((tokens == eos_id) & (forced == 0)),
        cache=cache,
        rng=rng)

  def cond(state: SamplingState) -> Array:
    return (state.step < length) & ~jnp.all(state.ended)

  sequences = jnp.full((rows, length + 1), pad_id, jnp.int32).at[:, 0].set(bos_id)
  state = SamplingState(
      step=jnp.array(0, jnp.int32),
      sequences=sequences,
      log_probs=jnp.zeros((rows,), jnp.float32),
      ended=jnp.zeros((rows,), bool),
      cache=_repeat_batch(cache, num_decodes),
      rng=rng)
  state = lax.while_loop(cond, body, state)
  tokens = state.sequences[:, 1:].reshape(batch, num_decodes, length)
  scores = state.log_probs.reshape(batch, num_decodes)
  order = jnp.argsort(-scores, axis=-1)
  return (jnp.take_along_axis(tokens, order[:, :, None], axis=1),
          jnp.take_along_axis(scores, order, axis=1))


@flax.struct.dataclass
class BeamState:
  """Loop state of `beam_search` (B examples, K beams)."""
  step: Array  # [] int32, tokens generated so far.
  alive_sequences: Array  # [B, K, T + 1] int32, column 0 holds BOS.
  alive_log_probs: Array  # [B, K] float32, sorted best first (<= BEAM_NEG_INF: empty beam).
  finished_sequences: Array  # [B, K, T] int32, PAD after EOS.
  finished_scores: Array  # [B, K] float32, brevity-penalised, sorted best first (-inf: empty).
  cache: Any  # leaves [B * K, ...], row b * K + k is beam k of example b.


def _gather_beams(x: Array, beam_indices: Array) -> Array:
  """x [B, M, ...], beam_indices [B, K] -> [B, K, ...]."""
  return x[jnp.arange(x.shape[0])[:, None], beam_indices]


def beam_search(prompt: Array,
                cache: Any,
                tokens_to_logits: TokensToLogits,
                *,
                num_decodes: int,
                max_decode_len: Optional[int] = None,
                alpha: float = 0.6,
                rng: Optional[Array] = None,
                eos_id: int = EOS_ID,
                bos_id: int = BOS_ID,
                pad_id: int = PAD_ID) -> Tuple[Array, Array]:
  """Beam search with a KV cache and T5X's brevity penalty.

  T5X's rule. Each step expands every alive beam and keeps the 2K best continuations; only
  those of them that end in a generated EOS are offered to the finished set (the K best
  finished so far), the others outside the 2K never are; the K best continuations without EOS
  stay alive. As in T5X, a log-prob at or below `BEAM_NEG_INF` (-1e7, T5X's NEG_INF) means "not
  a hypothesis": the K - 1 empty beams of the first step hold it (so they compete for the 2K
  as T5X's do), and an EOS continuation scoring no better is not finished (an EOS of log-prob
  -1e10 never is). The loop ends, per example, when K hypotheses are finished and no alive beam
  can beat the worst of them, or at `max_decode_len`. The result is T5X's: an example with a
  finished hypothesis returns its finished set, before any unfinished hypothesis whatever the
  scores (a hypothesis still running at T is usually a loop); one with none returns its alive
  beams at T (no EOS; scored with the penalty of T tokens, which keeps T5X's order among them).
  Beam size 1 is greedy decoding, except that an EOS ranked second is kept as a finished
  hypothesis and returned when its score is higher.

  Args:
    prompt: [B, P] int32 forced prefix (non-zero ids force the token at their position; forced
      tokens add nothing to the score).
    cache: the decoder's cache for B rows (expanded here to B * K rows).
    tokens_to_logits: `(ids [N, 1], cache) -> (logits [N, V], new_cache)`.
    num_decodes: K, the beam size (T5X's name: the AR decode_fn contract).
    max_decode_len: T (default P).
    alpha: brevity penalty exponent; a hypothesis of n tokens (EOS included) scores
      `log_prob / ((5 + n) / 6) ** alpha`. 0: plain log-prob.
    rng: unused (beam search is deterministic); part of the AR decode_fn contract.
    eos_id, bos_id, pad_id: ids.

  Returns:
    tokens [B, K, T] int32 (PAD after EOS) and scores [B, K] float32, best first
    (-inf and all PAD for slots with no finished hypothesis when some are finished).
  """
  del rng
  if num_decodes < 1:
    raise ValueError(f"num_decodes={num_decodes} (the beam size) must be >= 1")
  if alpha < 0:
    raise ValueError(f"alpha={alpha} must be >= 0")
  prompt, length = _prepare_ar(prompt, max_decode_len)
  batch = prompt.shape[0]
  k = num_decodes
  best_alive_penalty = brevity_penalty(length, alpha)

  def body(state: BeamState) -> BeamState:
    ids = lax.dynamic_slice_in_dim(state.alive_sequences, state.step, 1, axis=2)
    logits, cache = tokens_to_logits(ids.reshape(batch * k, 1), state.cache)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(batch, k, -1)
    vocab = log_probs.shape[-1]
    forced = lax.dynamic_index_in_dim(prompt, state.step, axis=1, keepdims=False)[:, None, None]
    forced_log_probs = jnp.where(jnp.arange(vocab) == forced, 0.0, NEG_INF)
    log_probs = jnp.where(forced != 0, forced_log_probs, log_probs)
    candidates = (state.alive_log_probs[:, :, None] + log_probs).reshape(batch, k * vocab)
    top_log_probs, top_indices = lax.top_k(candidates, 2 * k)
    origins = top_indices // vocab  # [B, 2K] beam each continuation extends.
    tokens = (top_indices % vocab).astype(jnp.int32)
    sequences = lax.dynamic_update_slice_in_dim(
        _gather_beams(state.alive_sequences, origins), tokens[:, :, None], state.step + 1, axis=2)
    # Finished: the generated-EOS continuations among the 2K (at most K: one per beam) that
    # are hypotheses (above T5X's sentinel).
    is_eos = (tokens == eos_id) & (forced[:, :, 0] == 0)
    newly_finished = is_eos & (top_log_probs > BEAM_NEG_INF)
    new_scores = jnp.where(
        newly_finished, top_log_probs / brevity_penalty(state.step + 1, alpha), NEG_INF)
    finished_scores, finished_indices = lax.top_k(
        jnp.concatenate([state.finished_scores, new_scores], axis=1), k)
    finished_sequences = _gather_beams(
        jnp.concatenate([state.finished_sequences, sequences[:, :, 1:]], axis=1),
        finished_indices)
    # Alive: the K best continuations without EOS.
    alive_log_probs, alive_indices = lax.top_k(jnp.where(is_eos, NEG_INF, top_log_probs), k)
    beam_origins = jnp.take_along_axis(origins, alive_indices, axis=1)
    flat_origins = (jnp.arange(batch)[:, None] * k + beam_origins).reshape(-1)
    cache = jax.tree_util.tree_map(lambda x: x[flat_origins] if x.ndim else x, cache)
    return BeamState(
        step=state.step + 1,
        alive_sequences=_gather_beams(sequences, alive_indices),
        alive_log_probs=alive_log_probs,
        finished_sequences=finished_sequences,
        finished_scores=finished_scores,
        cache=cache)

  def cond(state: BeamState) -> Array:
    best_alive = state.alive_log_probs[:, 0] / best_alive_penalty
    settled = state.finished_scores[:, -1] >= best_alive
    return (state.step < length) & ~jnp.all(settled)

  sequences = jnp.full((batch, k, length + 1), pad_id, jnp.int32).at[:, :, 0].set(bos_id)
  state = BeamState(
      step=jnp.array(0, jnp.int32),
      # Only beam 0 is alive at first: the K beams would otherwise expand identically.
      alive_sequences=sequences,
      alive_log_probs=jnp.tile(jnp.array([0.0] + [BEAM_NEG_INF] * (k - 1), jnp.float32),
                               (batch, 1)),
      finished_sequences=jnp.full((batch, k, length), pad_id, jnp.int32),
      finished_scores=jnp.full((batch, k), NEG_INF, jnp.float32),
      cache=_repeat_batch(cache, k))
  state = lax.while_loop(cond, body, state)
  none_finished = state.finished_scores[:, 0] == NEG_INF  # [B]
  alive_scores = state.alive_log_probs / best_alive_penalty
  return (jnp.where(none_finished[:, None, None], state.alive_sequences[:, :, 1:],
                    state.finished_sequences),
          jnp.where(none_finished[:, None], alive_scores, state.finished_scores))


# ------------------------------------------------------------------------------------------------
# PaDIR: configuration.


@dataclasses.dataclass(frozen=True)
class ARDecodeConfig:
  """Decode-time options of `models.ARModel`, bound at predict time (gin:
  `decoding.ARDecodeConfig.decode_method = 'greedy'` in an infer/eval run; a training run's
  bindings are its defaults, recorded in its config.gin). Frozen and hashable.

  Attributes:
    decode_method: 'greedy', 'beam' (beam search with brevity penalty `alpha`) or 'sample'
      (temperature / top-k / top-p, `num_decodes` samples, the best returned).
    beam_size: beams of 'beam'.
    alpha: brevity penalty exponent of 'beam'.
    temperature, top_k, top_p, num_decodes: for 'sample'; `num_decodes` is also the rows per
      example of a decoding method bound as `ARModel.decode_fn`.
    max_decode_length: most generated tokens (None: the batch's target length, else the
      vocabulary's max_target_length).
  """
  decode_method: str = "beam"
  beam_size: int = 4
  alpha: float = 0.6
  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0
  num_decodes: int = 1
  max_decode_length: Optional[int] = None

  def __post_init__(self):
    if self.decode_method not in AR_DECODE_METHODS:
      raise ValueError(f"decode_method={self.decode_method!r}: expected one of "
                       f"{AR_DECODE_METHODS}")
    if self.beam_size < 1 or self.num_decodes < 1:
      raise ValueError(f"beam_size={self.beam_size} and num_decodes={self.num_decodes} must be "
                       ">= 1")
    _check_sampling(self.temperature, self.top_k, self.top_p)


@dataclasses.dataclass(frozen=True)
class RefinementScheme:
  """How a PaDIR model refines: fixed when it is trained (the unrolled training stages and the
  data noise follow it), the same at inference: `models.PadirModel`'s `scheme` (gin:
  `models.PadirModel.scheme = @decoding.RefinementScheme()`). Frozen and hashable.

  Attributes:
    decoder_input_scheme: initial decoder input: 'random' (random real pieces), 'mask' ([MASK]
      everywhere) or 'mask_range' ([MASK_i] at position i).
    rejecter: which predicted tokens are re-masked between iterations: 'passthrough' (none),
      'stutter' (equal to the left neighbour), 'linear' (mask-predict: the lowest-confidence
      fraction (T-t-1)/T of the real positions at iteration t of T), 'constant_k' (the
      `rejecter_k` lowest-confidence), 'constant_fraction' (the lowest-confidence
      `rejecter_fraction`), 'learned' (accept logit below `rejecter_threshold`).
    rejecter_k: for 'constant_k'.
    rejecter_fraction: for 'constant_fraction', in [0, 1].
    rejecter_threshold: for 'learned', a logit (0.0 is probability 0.5).
    remasking_scheme: what replaces a rejected token: 'initial' (the initial decoder input token),
      'previous' (this iteration's decoder input token) or 'logits_sum' (argmax of the logits
      summed over the iterations so far).
    stutter_remasking: also reject tokens equal to their left neighbour, every iteration; after
      the last one stuttering tokens are removed, so no adjacent repeats remain.
    keep_visible: Mask-Predict's update: only the positions whose decoder input is their initial
      token (masked) are predicted anew; the others keep their token and the log-prob it had
      when predicted, as the model was trained (a CMLM loss is taken on masked positions only).
      Needs remasking_scheme 'initial'. False: every position takes the new prediction.
    aligned: the canvas is a CTC alignment (`padir.ctc`): the blank id may be chosen at any
      position, and the output is collapsed (`ctc_collapse`: repeats merged, blanks removed).
      Set by `ctc.CTCModel`, not by hand.
  """
  decoder_input_scheme: str = "random"
  rejecter: str = "passthrough"
  rejecter_k: int = 1
  rejecter_fraction: float = 0.1
  rejecter_threshold: float = 0.0
  remasking_scheme: str = "previous"
  stutter_remasking: bool = False
  keep_visible: bool = False
  aligned: bool = False

  def __post_init__(self):
    for name, value, allowed in (("decoder_input_scheme", self.decoder_input_scheme,
                                  DECODER_INPUT_SCHEMES),
                                 ("rejecter", self.rejecter, REJECTERS),
                                 ("remasking_scheme", self.remasking_scheme, REMASKING_SCHEMES)):
      if value not in allowed:
        raise ValueError(f"{name}={value!r}: expected one of {allowed}")
    if self.rejecter_k < 0:
      raise ValueError(f"rejecter_k={self.rejecter_k} must be >= 0")
    if not 0.0 <= self.rejecter_fraction <= 1.0:
      raise ValueError(f"rejecter_fraction={self.rejecter_fraction} must be in [0, 1]")
    if self.keep_visible and self.remasking_scheme != "initial":
      raise ValueError(f"keep_visible needs remasking_scheme='initial' (got "
                       f"{self.remasking_scheme!r}): only then is a masked position one whose "
                       "input is its initial token")


@dataclasses.dataclass(frozen=True)
class PadirDecodeConfig:
  """Decode-time options of `models.PadirModel`, bound at predict time (gin:
  `decoding.PadirDecodeConfig.num_decode_iterations = 8` in an infer/eval run; a training run's
  bindings are its defaults, recorded in its config.gin). Frozen and hashable (static under jit).

  Attributes:
    num_decode_iterations: most refinement iterations (decoder passes).
    temperature: 0 chooses tokens by argmax; otherwise sample from softmax(logits / temperature).
    top_k, top_p: sampling filters (0 / 1.0: off).
    top_k_lengths: most likely lengths kept from the length predictor.
    length_beam: odd number of offsets (-(n // 2) .. n // 2) tried around each length.
    num_parallel_samples: candidates per length from different random initial inputs
      ('random' scheme only).
    scoring: candidate score, 'mean' or 'sum' of the log-probs of its tokens (EOS included).
    alpha: brevity penalty exponent: the score is divided by ((5 + length) / 6) ** alpha.
    return_all_candidates: `padir_decode` also returns every candidate.
    return_history: also return the tokens predicted at every iteration.
    early_exit: stop the loop once every row has converged (the default). False runs exactly
      `num_decode_iterations` decoder passes (converged rows stay frozen, so the output is the
      same): fixed work, for speed benchmarks.
    num_canvas_sizes: refinement runs on the smallest of this many canvas lengths
      (`canvas_sizes`: T k / n for k = 1..n, rounded up to a multiple of 8) that holds the
      longest candidate, not on all T positions: a pass costs in proportion to its positions,
      and padding changes no real position's output (the decoder masks it). 1: always T.
    exit_confidence: a probability in [0, 1): a row also stops (early exit) once every one of
      its real tokens has at least this probability under the model; 0 turns it off. An
      adaptive iteration count: confident rows take fewer passes (the quality cost is measured
      in BENCHMARKS.md).
    masked_logits_only: with mask-predict's update (`keep_visible`, a [MASK] initial input and a
      rejecter that re-masks a bounded count: 'linear', 'constant_k', 'constant_fraction'),
      project to the vocabulary only the positions whose token can change (the masked ones and
      EOS, whose log-prob is scored): the first pass projects every position, the later ones
      the largest of their static counts (`projected_counts`); the same tokens and log-probs
      as projecting every position. Needs a `logits_fn` that takes `positions`. Off by
      default: on a CPU the gathers and scatters cost what the smaller projections save
      (BENCHMARKS.md).
    keep_candidates_after_first_pass: m: every length candidate gets the first pass, then only
      the m best of each example by their first-pass score (`score_candidates`, the model's own
      scores, duplicates never kept over valid ones) are refined further, on a batch of B * m
      rows (static shapes: their loop state and encoder rows gathered once; `logits_fn` gets
      `rows`). The others keep their first-pass output and rank last (-inf). None (the
      default), or m >= C: every candidate is refined. Off by default: it costs
      BLEU (the first pass's scores favour short candidates; BENCHMARKS.md).
    max_decode_length: not a field (the refinement loop never read it): accepted, as None, from
      configs recorded when it was one. The canvas length T is the batch's decoder length (a
      predict call may give it as `decoder_params['max_decode_length']`).
  """
  num_decode_iterations: int = 4
  temperature: float = 0.0
  top_k: int = 0
  top_p: float = 1.0
  top_k_lengths: int = 1
  length_beam: int = 1
  num_parallel_samples: int = 1
  scoring: str = "mean"
  alpha: float = 0.0
  return_all_candidates: bool = False
  return_history: bool = False
  early_exit: bool = True
  num_canvas_sizes: int = 4
  exit_confidence: float = 0.0
  masked_logits_only: bool = False
  keep_candidates_after_first_pass: Optional[int] = None
  max_decode_length: dataclasses.InitVar[Optional[int]] = None

  def __post_init__(self, max_decode_length: Optional[int] = None):
    if max_decode_length is not None:
      raise ValueError(
          f"PadirDecodeConfig.max_decode_length={max_decode_length}: the canvas length is no "
          "decode config field; it is the batch's decoder length, or a predict call's "
          "decoder_params['max_decode_length']")
    if self.scoring not in SCORINGS:
      raise ValueError(f"scoring={self.scoring!r}: expected one of {SCORINGS}")
    if self.num_decode_iterations < 1:
      raise ValueError(f"num_decode_iterations={self.num_decode_iterations} must be >= 1")
    _check_sampling(self.temperature, self.top_k, self.top_p)
    if self.top_k_lengths < 1:
      raise ValueError(f"top_k_lengths={self.top_k_lengths} must be >= 1")
    if self.length_beam < 1 or self.length_beam % 2 == 0:
      raise ValueError(f"length_beam={self.length_beam} must be odd (offsets -n//2 .. n//2)")
    if self.num_parallel_samples < 1:
      raise ValueError(f"num_parallel_samples={self.num_parallel_samples} must be >= 1")
    if self.alpha < 0:
      raise ValueError(f"alpha={self.alpha} must be >= 0")
    if not 0.0 <= self.exit_confidence < 1.0:
      raise ValueError(f"exit_confidence={self.exit_confidence} must be in [0, 1)")
    if self.num_canvas_sizes < 1:
      raise ValueError(f"num_canvas_sizes={self.num_canvas_sizes} must be >= 1")
    if (self.keep_candidates_after_first_pass is not None
        and self.keep_candidates_after_first_pass < 1):
      raise ValueError(f"keep_candidates_after_first_pass="
                       f"{self.keep_candidates_after_first_pass} must be >= 1 (None: keep all)")

  @property
  def num_candidates(self) -> int:
    """C, candidates per example: top_k_lengths x length_beam x num_parallel_samples."""
    return self.top_k_lengths * self.length_beam * self.num_parallel_samples


@dataclasses.dataclass(frozen=True, init=False)
class RefinementConfig:
  """Every option of a refinement loop, in its two parts: `scheme`, how the model refines (fixed
  when it is trained), and `decode`, the decode-time options of one predict call. What
  `padir_decode`, `refine` and training's unrolled stages read (`config.scheme.rejecter`,
  `config.decode.num_decode_iterations`). Frozen and hashable (a static argument under jit).

  Build it from its parts, `RefinementConfig(scheme, decode)` (or `RefinementConfig.of`); the
  fields of either part may also be given by name, each replacing that field of its part (or of
  the part's defaults), e.g. `RefinementConfig(rejecter='linear', num_decode_iterations=8)`.
  """
  scheme: RefinementScheme
  decode: PadirDecodeConfig

  def __init__(self, scheme: Optional[RefinementScheme] = None,
               decode: Optional[PadirDecodeConfig] = None, **fields):
    unknown = sorted(set(fields) - set(field_names(RefinementScheme))
                     - set(field_names(PadirDecodeConfig)))
    if unknown:
      raise TypeError(f"RefinementConfig got unknown fields {unknown}")
    scheme_fields = {k: v for k, v in fields.items() if k in field_names(RefinementScheme)}
    decode_fields = {k: v for k, v in fields.items() if k in field_names(PadirDecodeConfig)}
    scheme = RefinementScheme() if scheme is None else scheme
    decode = PadirDecodeConfig() if decode is None else decode
    object.__setattr__(self, "scheme", dataclasses.replace(scheme, **scheme_fields)
                       if scheme_fields else scheme)
    object.__setattr__(self, "decode", dataclasses.replace(decode, **decode_fields)
                       if decode_fields else decode)
    if self.decode.num_parallel_samples > 1 and self.scheme.decoder_input_scheme != "random":
      raise ValueError(
          f"num_parallel_samples={self.decode.num_parallel_samples} needs decoder_input_scheme="
          f"'random' (with {self.scheme.decoder_input_scheme!r} every sample would be identical)")

  @classmethod
  def of(cls, scheme: RefinementScheme, decode: PadirDecodeConfig) -> "RefinementConfig":
    """The loop's config of a model's `scheme` and a call's `decode` options."""
    return cls(scheme, decode)

  @property
  def num_candidates(self) -> int:
    """C, candidates per example (`PadirDecodeConfig.num_candidates`)."""
    return self.decode.num_candidates


def ablate_scheme(scheme: RefinementScheme, overrides: Mapping[str, Any]) -> RefinementScheme:
  """The trained `scheme` with fields replaced at decode time: an ablation.

  A model refines at inference as it was trained (its `RefinementScheme`); decode-time options
  (`PadirDecodeConfig`) never change that. This is the one, explicit, place where they may: a
  predict call's `decoder_params` mapping that names scheme fields (e.g. `{'rejecter':
  'constant_fraction', 'rejecter_fraction': 0.3}`, `padir demo --padir_decoder_params`) decodes
  with `ablate_scheme(model.scheme, those fields)`, to measure what another rejecter or
  remasking would give the trained model. Raises ValueError on a bad value.
  """
  unknown = sorted(set(overrides) - set(field_names(RefinementScheme)))
  if unknown:
    raise ValueError(f"{unknown} are no RefinementScheme fields")
  return dataclasses.replace(scheme, **overrides) if overrides else scheme


def field_names(cls: type) -> Tuple[str, ...]:
  """The field names of a config dataclass, in order."""
  return tuple(f.name for f in dataclasses.fields(cls))


# ------------------------------------------------------------------------------------------------
# PaDIR: pieces.


@jax.named_scope("length_candidates")  # Names its ops in profiles (benchmarks/profile_pass.py).
def length_candidates(length_predictions: Array, config: RefinementConfig,
                      max_decode_len: int) -> Tuple[Array, Array]:
  """Candidate lengths per example: top-k lengths x length beam x parallel samples.

  Args:
    length_predictions: either length classifier scores [B, num_classes] (class n = length n;
      class 0 is never chosen), or predicted lengths [B] (float or int, e.g. affine, fertility or
      oracle predictors), whose top-k lengths are the k integers nearest to the prediction.
    config: `decode.top_k_lengths`, `.length_beam`, `.num_parallel_samples`.
    max_decode_len: T; lengths are clipped to [1, T], so EOS always fits (never dropped).

  Returns:
    lengths [B, C] int32 and valid [B, C] bool, C = `config.num_candidates`, ordered
    (length rank, offset, sample). A length equal to an earlier candidate's (from clipping or
    overlapping beams) is marked invalid; its parallel samples are all valid.
  """
  if max_decode_len < 1:
    raise ValueError(f"max_decode_len={max_decode_len} must be >= 1")
  k = config.decode.top_k_lengths
  if length_predictions.ndim == 2:
    num_classes = length_predictions.shape[1]
    if k > num_classes - 1:
      raise ValueError(f"top_k_lengths={k} exceeds the {num_classes - 1} lengths the predictor "
                       "scores")
    scores = length_predictions.astype(jnp.float32).at[:, 0].set(NEG_INF)
    top = lax.top_k(scores, k)[1]
  elif length_predictions.ndim == 1:
    prediction = length_predictions.astype(jnp.float32)[:, None]
    window = jnp.floor(prediction) + jnp.arange(1 - k, k + 1, dtype=jnp.float32)  # [B, 2k]
    nearest = lax.top_k(-jnp.abs(window - prediction), k)[1]
    top = jnp.take_along_axis(window, nearest, axis=1)
  else:
    raise ValueError("length_predictions must be scores [B, num_classes] or lengths [B], got "
                     f"shape {length_predictions.shape}")
  half = config.decode.length_beam // 2
  offsets = jnp.arange(-half, half + 1)
  lengths = (top.astype(jnp.int32)[:, :, None] + offsets).reshape(top.shape[0], -1)
  lengths = jnp.clip(lengths, 1, max_decode_len)
  num_lengths = lengths.shape[1]
  earlier = jnp.tril(jnp.ones((num_lengths, num_lengths), bool), k=-1)  # earlier[j, i]: i < j.
  duplicate = jnp.any((lengths[:, :, None] == lengths[:, None, :]) & earlier, axis=-1)
  samples = config.decode.num_parallel_samples
  return jnp.repeat(lengths, samples, axis=1), jnp.repeat(~duplicate, samples, axis=1)


def canvas_sizes(max_decode_len: int, num_canvas_sizes: int) -> Tuple[int, ...]:
  """The canvas lengths refinement may run on, ascending, the last one T: T k / n for
  k = 1..n, rounded up to a multiple of 8 (at most T), without repeats."""
  def up_to_8(n):
    return -(-n // 8) * 8
  return tuple(sorted({min(max_decode_len, up_to_8(-(-max_decode_len * k // num_canvas_sizes)))
                       for k in range(1, num_canvas_sizes + 1)}))


def projected_counts(config: RefinementConfig, canvas: int) -> Optional[Tuple[int, ...]]:
  """Positions projected to the vocabulary at each iteration of mask-predict refinement.

  With `keep_visible`, a visible token keeps its value, so a pass needs the logits of the
  masked positions and of EOS only. Iteration 0 sees every position masked; iteration t >= 1
  sees what the rejecter re-masked after iteration t - 1, at most its count for a row of
  `canvas - 1` real tokens, plus the EOS.

  Returns:
    I static counts (each <= canvas), or None when every position is projected: the option is
    off, or the count is unbounded (the 'learned' rejecter, stutter re-masking, or a 'random'
    initial input, which a prediction can equal).
  """
  if not (config.decode.masked_logits_only and config.scheme.keep_visible
          and not config.scheme.stutter_remasking
          and config.scheme.decoder_input_scheme != "random"
          and config.scheme.rejecter in ("linear", "constant_k", "constant_fraction")):
    return None
  num_iterations, num_real = config.decode.num_decode_iterations, canvas - 1
  if config.scheme.rejecter == "linear":
    masked = [_linear_schedule_count(num_real, t - 1, num_iterations)
              for t in range(1, num_iterations)]
  elif config.scheme.rejecter == "constant_k":
    masked = [min(config.scheme.rejecter_k, num_real)] * (num_iterations - 1)
  else:  # Rounded up: jnp.floor of a float32 product may round the other way.
    masked = [min(math.ceil(config.scheme.rejecter_fraction * num_real), num_real)] * (
        num_iterations - 1)
  return (canvas,) + tuple(count + 1 for count in masked)


@jax.named_scope("initial_decoder_inputs")
def initial_decoder_inputs(lengths: Array,
                           max_len: int,
                           scheme: str,
                           special_tokens: SpecialTokens,
                           rng: Optional[Array] = None) -> Array:
  """The first decoder input of each row, EOS at length - 1 and PAD after.

  Args:
    lengths: [N] int lengths (EOS included), clipped to [1, max_len].
    max_len: T.
    scheme: 'random' (uniform over real pieces other than PAD/EOS/UNK/BOS), 'mask' ([MASK]) or
      'mask_range' ([MASK_{i+1}] at position i; needs T <= special_tokens.max_target_length, the
      one size of the range in training and inference).
    special_tokens: the id layout.
    rng: PRNG key, for 'random'.

  Returns:
    [N, T] int32.
  """
  if scheme not in DECODER_INPUT_SCHEMES:
    raise ValueError(f"decoder input scheme {scheme!r}: expected one of {DECODER_INPUT_SCHEMES}")
  shape = (lengths.shape[0], max_len)
  positions = jnp.arange(max_len)
  if scheme == "random":
    if rng is None:
      raise ValueError("the 'random' decoder input scheme needs an rng")
    low = special_tokens.first_real_piece
    if low >= special_tokens.num_pieces:
      raise ValueError(f"no real piece above the special ids to draw from "
                       f"(num_pieces={special_tokens.num_pieces})")
    tokens = jax.random.randint(rng, shape, low, special_tokens.num_pieces, jnp.int32)
  elif scheme == "mask":
    tokens = jnp.full(shape, special_tokens.mask_id, jnp.int32)
  else:
    if max_len > special_tokens.max_target_length:
      raise ValueError(f"max_len={max_len} exceeds the [MASK_i] range (max_target_length="
                       f"{special_tokens.max_target_length})")
    tokens = jnp.broadcast_to(special_tokens.mask_range_id(positions).astype(jnp.int32), shape)
  lengths = jnp.clip(lengths, 1, max_len)[:, None]
  tokens = jnp.where(positions == lengths - 1, special_tokens.eos_id, tokens)
  return jnp.where(positions >= lengths, special_tokens.pad_id, tokens)


def _allowed_ids(vocab: int, special_tokens: SpecialTokens, blank: bool = False) -> Array:
  """[V] bool: the ids a translation may contain, real pieces but PAD and BOS (and, on an aligned
  canvas, the CTC blank)."""
  ids = jnp.arange(vocab)  # V from the logits, never from a config.
  allowed = (special_tokens.is_real_piece(ids) & (ids != special_tokens.pad_id)
             & (ids != special_tokens.bos_id))
  return (allowed | (ids == special_tokens.blank_id)) if blank else allowed


def argmax_and_max(x: Array) -> Tuple[Array, Array]:
  """`jnp.argmax(x, -1)` (int32; the first maximum, as argmax) and `x.max(-1)`: [..., V] ->
  ([...], [...]). Two plain reductions (a max, then the smallest index holding it) instead of
  argmax's (value, index) reduction, which XLA:CPU runs ~1.5x slower at V = 32k (BENCHMARKS.md,
  decoding levers)."""
  best = jnp.max(x, axis=-1, keepdims=True)
  index = lax.broadcasted_iota(jnp.int32, x.shape, x.ndim - 1)
  first = jnp.min(jnp.where(x == best, index, x.shape[-1] - 1), axis=-1)
  return first, best[..., 0]


def _output_log_probs(logits: Array, special_tokens: SpecialTokens,
                      blank: bool = False) -> Array:
  """log_softmax over the ids a translation may contain (`_allowed_ids`). [.., V]."""
  allowed = _allowed_ids(logits.shape[-1], special_tokens, blank)
  return jax.nn.log_softmax(jnp.where(allowed, logits.astype(jnp.float32), NEG_INF), axis=-1)


def _argmax_without_eos(log_probs: Array, special_tokens: SpecialTokens) -> Array:
  eos = jnp.arange(log_probs.shape[-1]) == special_tokens.eos_id
  return jnp.argmax(jnp.where(eos, NEG_INF, log_probs), axis=-1).astype(jnp.int32)


def _id_bias(ids_allowed: Array) -> Array:
  """[V] float32: 0 where allowed, -inf elsewhere. Added to logits inside a reduction it keeps the
  reduction vectorised on CPU, where a `jnp.where` with a broadcast [V] mask does not (4-5x
  slower in XLA:CPU at V = 32k)."""
  return jnp.where(ids_allowed, 0.0, NEG_INF).astype(jnp.float32)


def _argmax_tokens(logits: Array, special_tokens: SpecialTokens,
                   initial_tokens: Optional[Array], blank: bool = False) -> Tuple[Array, Array]:
  """`choose_tokens` at temperature 0: two passes over the vocabulary and no [..., V] buffer.

  The argmax over the allowed ids but EOS, then log p(token) = logit(token) - logsumexp(allowed
  logits); the logsumexp is shifted by the larger of the argmax's logit and EOS's (the largest
  allowed logit is one of them), so the log-softmax is never materialised nor gathered from.
  """
  vocab = logits.shape[-1]
  eos_id, pad_id = special_tokens.eos_id, special_tokens.pad_id
  allowed = _allowed_ids(vocab, special_tokens, blank)
  logits = logits.astype(jnp.float32)
  choose_bias = _id_bias(allowed & (jnp.arange(vocab) != eos_id))
  best, best_logit = argmax_and_max(logits + choose_bias)
  best_logit = best_logit[..., None]
  eos_logit = logits[..., eos_id:eos_id + 1]
  shift = lax.stop_gradient(jnp.maximum(best_logit, eos_logit))
  shift = jnp.where(jnp.isfinite(shift), shift, 0.0)
  sum_exp = jnp.sum(jnp.exp(logits + _id_bias(allowed) - shift), axis=-1)
  log_norm = shift[..., 0] + jnp.log(sum_exp)
  tokens, chosen = best, best_logit[..., 0]
  if initial_tokens is not None:
    keep = (initial_tokens == eos_id) | (initial_tokens == pad_id)
    tokens = jnp.where(keep, initial_tokens, tokens)
    chosen = jnp.where(initial_tokens == eos_id, eos_logit[..., 0], chosen)
  return tokens, jnp.where(tokens == pad_id, 0.0, chosen - log_norm)


@jax.named_scope("choose_tokens")
def choose_tokens(logits: Array,
                  rng: Optional[Array],
                  config: RefinementConfig,
                  special_tokens: SpecialTokens,
                  initial_tokens: Optional[Array] = None) -> Tuple[Array, Array]:
  """Chooses a token per position: argmax, or temperature / top-k / top-p sampling.

  Only real pieces other than PAD, EOS and BOS are chosen (never a [MASK], a [LENGTH] or a
  padding id of the vocabulary; the CTC blank too with `config.scheme.aligned`); EOS appears
  only where `initial_tokens` puts it.

  Args:
    logits: [N, T, V].
    rng: PRNG key (used when config.decode.temperature > 0).
    config: `decode.temperature`, `.top_k`, `.top_p`.
    special_tokens: the id layout.
    initial_tokens: [N, T] optional; where it holds EOS or PAD the output keeps them (EOS at
      length - 1, PAD after), so predictions at padding are never used.

  Returns:
    tokens [N, T] int32 and token_log_probs [N, T] float32, the log-probs of the returned tokens
    under the model's distribution over real pieces but PAD and BOS (0 at PAD).
  """
  if config.decode.temperature == 0:
    return _argmax_tokens(logits, special_tokens, initial_tokens, config.scheme.aligned)
  if rng is None:
    raise ValueError("temperature > 0 samples tokens: pass an rng")
  log_probs = _output_log_probs(logits, special_tokens, config.scheme.aligned)
  eos = jnp.arange(log_probs.shape[-1]) == special_tokens.eos_id
  # The nucleus of the tempered distribution.
  filtered = filter_logits(jnp.where(eos, NEG_INF, log_probs) / config.decode.temperature,
                           config.decode.top_k, config.decode.top_p)
  tokens = jax.random.categorical(rng, filtered).astype(jnp.int32)
  if initial_tokens is not None:
    keep = (initial_tokens == special_tokens.eos_id) | (initial_tokens == special_tokens.pad_id)
    tokens = jnp.where(keep, initial_tokens, tokens)
  token_log_probs = jnp.take_along_axis(log_probs, tokens[..., None], axis=-1)[..., 0]
  return tokens, jnp.where(tokens == special_tokens.pad_id, 0.0, token_log_probs)


def _real_positions(tokens: Array, pad_id: int, eos_id: int) -> Array:
  return (tokens != pad_id) & (tokens != eos_id)


def stutter_mask(tokens: Array, pad_id: int = PAD_ID, eos_id: int = EOS_ID) -> Array:
  """True where a token equals its left neighbour. [..., T] -> [..., T] bool.

  No wrap-around: position 0 has no left neighbour and is never a stutter. PAD and EOS are never
  stutters. Of a run of equal tokens all but the first are marked.
  """
  repeats = tokens[..., 1:] == tokens[..., :-1]
  first = jnp.zeros(tokens.shape[:-1] + (1,), bool)
  return jnp.concatenate([first, repeats], axis=-1) & _real_positions(tokens, pad_id, eos_id)


def _linear_schedule_count(num_real: Array, iteration: Array, num_iterations: int) -> Array:
  """floor(num_real * (T - t - 1) / T): how many positions the linear rejecter re-masks."""
  return num_real * (num_iterations - iteration - 1) // num_iterations


def _lowest_confidence(token_log_probs: Array, real: Array, count: Array) -> Array:
  """True at the `count [N]` real positions with the lowest log-prob (ties: leftmost first).

  A position's rank is the number of positions before it in that order, counted by comparing
  all pairs ([N, T, T]): no sort, which XLA:CPU runs as a slow comparator loop.
  """
  scores = jnp.where(real, token_log_probs, jnp.inf)
  mine, theirs = scores[:, :, None], scores[:, None, :]
  earlier = jnp.arange(scores.shape[-1])[None, :] < jnp.arange(scores.shape[-1])[:, None]
  rank = jnp.sum((theirs < mine) | ((theirs == mine) & earlier), axis=-1)
  return real & (rank < count[:, None])


def _front_order(first: Array) -> Array:
  """The positions where `first` [N, T] is True, then the others, each in position order:
  [N, T] int32 (a stable partition, `argsort(~first, stable=True)`, without a sort)."""
  before = jnp.cumsum(first, axis=-1) - 1
  after = jnp.sum(first, axis=-1, keepdims=True) + jnp.cumsum(~first, axis=-1) - 1
  slot = jnp.where(first, before, after)
  rows, length = first.shape
  return jnp.zeros((rows, length), jnp.int32).at[jnp.arange(rows)[:, None], slot].set(
      jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (rows, length)))


@jax.named_scope("reject")
def reject(tokens: Array,
           token_log_probs: Array,
           iteration: Array,
           config: RefinementConfig,
           special_tokens: SpecialTokens,
           accept_logits: Optional[Array] = None) -> Array:
  """Which predicted tokens the rejecter re-masks (`RefinementScheme.rejecter`).

  Only real positions (not PAD, not EOS) are ever rejected.

  Args:
    tokens: [N, T] predicted tokens.
    token_log_probs: [N, T] their log-probs (the confidence of the ranking rejecters).
    iteration: [] int, 0-based (for 'linear': t of T = config.decode.num_decode_iterations).
    config: `scheme.rejecter` and its parameters.
    special_tokens: the id layout.
    accept_logits: [N, T] the learned rejecter's logits ('learned' only).

  Returns:
    [N, T] bool, True = rejected.
  """
  pad_id, eos_id = special_tokens.pad_id, special_tokens.eos_id
  real = _real_positions(tokens, pad_id, eos_id)
  if config.scheme.rejecter == "passthrough":
    return jnp.zeros_like(real)
  if config.scheme.rejecter == "stutter":
    return stutter_mask(tokens, pad_id, eos_id)
  if config.scheme.rejecter == "learned":
    if accept_logits is None:
      raise ValueError("rejecter='learned' needs accept_logits from logits_fn (the model's "
                       "rejecter head)")
    return real & (accept_logits < config.scheme.rejecter_threshold)
  num_real = jnp.sum(real, axis=-1, dtype=jnp.int32)
  if config.scheme.rejecter == "linear":
    count = _linear_schedule_count(num_real, iteration, config.decode.num_decode_iterations)
  elif config.scheme.rejecter == "constant_k":
    count = jnp.minimum(config.scheme.rejecter_k, num_real)
  else:
    count = jnp.floor(config.scheme.rejecter_fraction * num_real).astype(jnp.int32)
  return _lowest_confidence(token_log_probs, real, count)


@jax.named_scope("keep_visible_tokens")
def keep_visible_tokens(tokens: Array, token_log_probs: Array, inputs: Array,
                        input_log_probs: Array, initial_tokens: Array) -> Tuple[Array, Array]:
  """Mask-Predict's update: new predictions only where the input is its initial (masked) token.

  Args:
    tokens, token_log_probs: [N, T] this pass's predictions and their log-probs.
    inputs: [N, T] the decoder input of this pass.
    input_log_probs: [N, T] the log-probs the visible input tokens had when predicted.
    initial_tokens: [N, T] the initial decoder input.

  Returns:
    tokens [N, T] and token_log_probs [N, T]: the input's token and log-prob where it is
    visible, this pass's elsewhere.
  """
  visible = inputs != initial_tokens
  return (jnp.where(visible, inputs, tokens),
          jnp.where(visible, input_log_probs, token_log_probs))


@jax.named_scope("remask")
def remask(tokens: Array,
           rejected: Array,
           config: RefinementConfig,
           special_tokens: SpecialTokens,
           *,
           initial_tokens: Array,
           previous_tokens: Array,
           logits_sum: Optional[Array] = None) -> Array:
  """Replaces rejected tokens by `config.scheme.remasking_scheme`'s replacement.

  Args:
    tokens: [N, T] predicted tokens.
    rejected: [N, T] bool.
    config: `scheme.remasking_scheme`: 'initial' -> `initial_tokens`, 'previous' ->
      `previous_tokens`, 'logits_sum' -> argmax of `logits_sum` (over real pieces but PAD, EOS and BOS).
    special_tokens: the id layout.
    initial_tokens: [N, T] the initial decoder input.
    previous_tokens: [N, T] the decoder input that produced `tokens`.
    logits_sum: [N, T, V] the logits summed over the iterations so far ('logits_sum' only).

  Returns:
    [N, T] int32, the next decoder input.
  """
  if config.scheme.remasking_scheme == "initial":
    replacement = initial_tokens
  elif config.scheme.remasking_scheme == "previous":
    replacement = previous_tokens
  else:
    if logits_sum is None:
      raise ValueError("remasking_scheme='logits_sum' needs the logits sum")
    replacement = _argmax_without_eos(_output_log_probs(logits_sum, special_tokens),
                                      special_tokens)
  return jnp.where(rejected, replacement, tokens)


def glance(targets: Array,
           predictions: Array,
           initial_tokens: Array,
           ratio: float,
           rng: Array,
           special_tokens: SpecialTokens) -> Tuple[Array, Array]:
  """GLAT's glancing sampler: reveal gold tokens in proportion to the first pass's errors.

  Each row gets `ratio` x (its wrong predictions) gold tokens, stochastically rounded, at
  uniformly random real positions (neither PAD nor EOS); the other positions keep their initial
  token. A model that gets everything right sees a fully initial canvas.

  Args:
    targets: [N, T] gold tokens.
    predictions: [N, T] a pass's predictions from `initial_tokens`.
    initial_tokens: [N, T] the initial canvas of the gold length (`initial_decoder_inputs`).
    ratio: the glancing ratio, in [0, 1].
    rng: PRNG key.
    special_tokens: the id layout.

  Returns:
    decoder inputs [N, T] int32 and revealed [N, T] bool.
  """
  real = _real_positions(targets, special_tokens.pad_id, special_tokens.eos_id)
  wrong = jnp.sum(real & (predictions != targets), axis=-1)
  round_rng, position_rng = jax.random.split(rng)
  count = jnp.floor(ratio * wrong + jax.random.uniform(round_rng, wrong.shape)).astype(jnp.int32)
  revealed = _lowest_confidence(jax.random.uniform(position_rng, targets.shape), real, count)
  return jnp.where(revealed, targets, initial_tokens).astype(jnp.int32), revealed


def _compact(keep: Array, tokens: Array, token_log_probs: Array,
             pad_id: int) -> Tuple[Array, Array]:
  """Moves the kept positions of each row to the front, in order; PAD (log-prob 0) after."""
  order = _front_order(keep)
  filled = jnp.arange(keep.shape[-1]) < jnp.sum(keep, axis=-1, keepdims=True)
  tokens = jnp.where(filled, jnp.take_along_axis(tokens, order, axis=-1), pad_id)
  token_log_probs = jnp.where(filled, jnp.take_along_axis(token_log_probs, order, axis=-1), 0.0)
  return tokens, token_log_probs


def cut_at_eos(tokens: Array, eos_id: int = EOS_ID, pad_id: int = PAD_ID) -> Array:
  """PAD after the first EOS of each row (the EOS stays). [..., T] -> [..., T]."""
  eos = tokens == eos_id
  after_eos = (jnp.cumsum(eos, axis=-1) - eos) > 0
  return jnp.where(after_eos, pad_id, tokens)


def remove_stutter(tokens: Array, pad_id: int = PAD_ID, eos_id: int = EOS_ID) -> Array:
  """Removes every token equal to its left neighbour and closes the gap. [N, T] -> [N, T]."""
  keep = (tokens != pad_id) & ~stutter_mask(tokens, pad_id, eos_id)
  return _compact(keep, tokens, jnp.zeros(tokens.shape, jnp.float32), pad_id)[0]


@jax.named_scope("ctc_collapse")
def ctc_collapse(tokens: Array, blank_id: int, pad_id: int = PAD_ID) -> Array:
  """CTC's collapse of an alignment: repeats merged, then blanks removed, the rest moved to the
  front (PAD after). [N, T] -> [N, T]; e.g. `a a _ a b b _` -> `a a b`."""
  previous = jnp.pad(tokens[:, :-1], ((0, 0), (1, 0)), constant_values=-1)
  keep = (tokens != pad_id) & (tokens != blank_id) & (tokens != previous)
  return _compact(keep, tokens, jnp.zeros(tokens.shape, jnp.float32), pad_id)[0]


@jax.named_scope("postprocess")
def postprocess(tokens: Array,
                collapse_stutter: bool = True,
                eos_id: int = EOS_ID,
                pad_id: int = PAD_ID) -> Array:
  """Output clean-up: cut at the first EOS, then (optionally) remove stutter. [N, T] -> [N, T].

  Tokens are never deleted for equalling their initial decoder input (the paper's public code
  does, which drops correct words that happen to match a random initial token).
  """
  tokens = cut_at_eos(tokens, eos_id, pad_id)
  return remove_stutter(tokens, pad_id, eos_id) if collapse_stutter else tokens


@jax.named_scope("score_candidates")
def score_candidates(tokens: Array, token_log_probs: Array, config: RefinementConfig,
                     pad_id: int = PAD_ID) -> Array:
  """Candidate scores: mean or summed token log-probs over non-PAD tokens, brevity-penalised.

  Args:
    tokens: [N, T] final tokens.
    token_log_probs: [N, T] their log-probs.
    config: `decode.scoring` ('mean' | 'sum') and `decode.alpha`.
    pad_id: PAD.

  Returns:
    [N] float32: `sum(log_probs) / (n if mean else 1) / ((5 + n) / 6) ** alpha`, n the number of
    non-PAD tokens.
  """
  present = tokens != pad_id
  total = jnp.sum(jnp.where(present, token_log_probs, 0.0), axis=-1)
  n = jnp.sum(present, axis=-1)
  if config.decode.scoring == "mean":
    total = total / jnp.maximum(n, 1)
  return total / brevity_penalty(n, config.decode.alpha)


# ------------------------------------------------------------------------------------------------
# PaDIR: the refinement loop.


def _choose_at_masked(logits_fn: LogitsFn, inputs: Array, count: int, rng: Array,
                      config: RefinementConfig, special_tokens: SpecialTokens,
                      initial_tokens: Array) -> Tuple[Array, Array]:
  """`choose_tokens` on the logits of the masked positions and EOS only.

  The positions still holding their initial token (PAD aside) are gathered first and the pass
  projects `count` of them (a static shape, at least as many as any row has; `refine` gives the
  largest of `projected_counts`' later iterations), and the choices are scattered back;
  elsewhere the initial token stays, log-prob 0 (what `keep_visible_tokens` then replaces by the
  visible input). [N, T] -> ([N, T], [N, T]).
  """
  rows, length = inputs.shape
  projected = (inputs == initial_tokens) & (inputs != special_tokens.pad_id)
  positions = _front_order(projected)[:, :count]
  logits, _ = logits_fn(inputs, positions)
  tokens, token_log_probs = choose_tokens(
      logits, rng, config, special_tokens, jnp.take_along_axis(initial_tokens, positions, axis=-1))
  at = (jnp.arange(rows)[:, None], positions)
  tokens = jnp.zeros((rows, length), jnp.int32).at[at].set(tokens)
  token_log_probs = jnp.zeros((rows, length), jnp.float32).at[at].set(token_log_probs)
  return (jnp.where(projected, tokens, initial_tokens),
          jnp.where(projected, token_log_probs, 0.0))


@flax.struct.dataclass
class RefinementStep:
  """What one refinement step gives (N rows, T positions, V ids).

  Attributes:
    tokens: [N, T] int32, the predictions (with `keep_visible`, the visible inputs kept).
    token_log_probs: [N, T] float32, their log-probs.
    rejected: [N, T] bool, what the rejecter re-masked (all False without `remask_next`).
    next_inputs: [N, T] int32, the next decoder input (no gradient).
    logits_sum: [N, T, V] float32, the logits summed so far ('logits_sum' remasking with
      `remask_next` only; no gradient), else the one given.
    logits: [N, T, V], or None when only `count` masked positions were projected.
    accept_logits: [N, T] the learned rejecter's logits, or None.
  """
  tokens: Array
  token_log_probs: Array
  rejected: Array
  next_inputs: Array
  logits_sum: Optional[Array]
  logits: Optional[Array]
  accept_logits: Optional[Array]


def refinement_step(logits_fn: LogitsFn,
                    inputs: Array,
                    input_log_probs: Array,
                    iteration: Array,
                    config: RefinementConfig,
                    special_tokens: SpecialTokens,
                    *,
                    initial_tokens: Array,
                    previous_tokens: Array,
                    logits_sum: Optional[Array] = None,
                    rng: Optional[Array] = None,
                    count: Optional[int] = None,
                    remask_next: bool = True) -> RefinementStep:
  """One step of parallel iterative refinement: what `refine`'s loop body and the model's
  unrolled training stages both run (fairseq's step / loop split).

  One decoder pass on `inputs`; tokens chosen (`choose_tokens`: EOS and PAD kept where
  `initial_tokens` has them); with `keep_visible`, mask-predict's update
  (`keep_visible_tokens`); then, with `remask_next`, the rejecter (`reject`, plus
  `stutter_mask` with `stutter_remasking`) and the re-masking (`remask`) that make the next
  decoder input.

  Args:
    logits_fn: `(decoder_input_tokens [N, T], positions=None) -> (logits, accept_logits)`.
    inputs: [N, T] this step's decoder input.
    input_log_probs: [N, T] the log-probs the visible input tokens had when predicted
      (`keep_visible`; zeros at the first step).
    iteration: [] int, 0-based (the linear rejecter's schedule).
    config: the refinement options.
    special_tokens: the id layout.
    initial_tokens: [N, T] the initial decoder input.
    previous_tokens: [N, T] what 'previous' remasking puts back (decoding: `inputs`; training's
      first stage: `initial_tokens`, never its partly gold input).
    logits_sum: [N, T, V] the logits summed over the earlier steps ('logits_sum' remasking;
      None: none yet).
    rng: PRNG key of sampled choice (None: argmax).
    count: project only this many masked positions (`_choose_at_masked`; None: every one).
    remask_next: run the rejecter and the re-masking (False: the next input is the tokens, e.g.
      after the last step).
  """
  if count is None:
    logits, accept_logits = logits_fn(inputs)
    tokens, token_log_probs = choose_tokens(logits, rng, config, special_tokens, initial_tokens)
  else:
    logits = accept_logits = None
    tokens, token_log_probs = _choose_at_masked(logits_fn, inputs, count, rng, config,
                                                special_tokens, initial_tokens)
  if config.scheme.keep_visible:
    tokens, token_log_probs = keep_visible_tokens(tokens, token_log_probs, inputs,
                                                  input_log_probs, initial_tokens)
  rejected = jnp.zeros(tokens.shape, bool)
  next_inputs = tokens
  if remask_next:
    if config.scheme.remasking_scheme == "logits_sum":
      logits_sum = lax.stop_gradient(logits if logits_sum is None else logits_sum + logits)
    rejected = reject(tokens, token_log_probs, iteration, config, special_tokens, accept_logits)
    if config.scheme.stutter_remasking:
      rejected |= stutter_mask(tokens, special_tokens.pad_id, special_tokens.eos_id)
    next_inputs = remask(tokens, rejected, config, special_tokens, initial_tokens=initial_tokens,
                         previous_tokens=previous_tokens, logits_sum=logits_sum)
  return RefinementStep(tokens, token_log_probs, rejected, lax.stop_gradient(next_inputs),
                        logits_sum, logits, accept_logits)


@flax.struct.dataclass
class RefinementState:
  """Loop state of `refine` (N rows, T positions, I = config.decode.num_decode_iterations)."""
  iteration: Array  # [] int32, iterations run so far.
  inputs: Array  # [N, T] int32, the next decoder input.
  tokens: Array  # [N, T] int32, the latest predictions.
  token_log_probs: Array  # [N, T] float32.
  done: Array  # [N] bool, the row has converged.
  iterations: Array  # [N] int32, iterations the row used.
  rng: Array
  logits_sum: Optional[Array] = None  # [N, T, V] float32, 'logits_sum' remasking only.
  history: Optional[Array] = None  # [I, N, T] int32, return_history only.


def _take_rows(state: "RefinementState", rows: Array) -> "RefinementState":
  """The loop state of `rows` [N'] of its N rows."""
  return state.replace(
      inputs=state.inputs[rows], tokens=state.tokens[rows],
      token_log_probs=state.token_log_probs[rows], done=state.done[rows],
      iterations=state.iterations[rows],
      logits_sum=None if state.logits_sum is None else state.logits_sum[rows],
      history=None if state.history is None else state.history[:, rows])


def _final_tokens(tokens: Array, token_log_probs: Array, config: RefinementConfig,
                  special_tokens: SpecialTokens) -> Tuple[Array, Array]:
  """What `refine` returns of its last predictions [N, T]: stutter removed with
  `stutter_remasking`."""
  if not config.scheme.stutter_remasking:
    return tokens, token_log_probs
  pad_id, eos_id = special_tokens.pad_id, special_tokens.eos_id
  keep = (tokens != pad_id) & ~stutter_mask(tokens, pad_id, eos_id)
  return _compact(keep, tokens, token_log_probs, pad_id)


def refine(logits_fn: LogitsFn,
           initial_tokens: Array,
           rng: Array,
           config: RefinementConfig,
           special_tokens: SpecialTokens,
           prune_fn: Optional[Callable[[Array, Array], Array]] = None
           ) -> Tuple[Array, Array, Dict[str, Array]]:
  """Parallel iterative refinement of N rows of fixed lengths.

  Each iteration makes one `logits_fn` call on all rows, chooses tokens (EOS and PAD kept where
  the initial input has them), then, except on the last iteration, re-masks the rejecter's
  tokens; with `stutter_remasking` tokens equal to their left neighbour are re-masked too (and
  removed after the last iteration). A row is done when its next decoder input equals its
  current one and nothing iteration-dependent is left to change it (the linear schedule still
  re-masking something, or the logits sum replacing something): with argmax choice it is then a
  fixed point, so stopping it changes nothing. Done rows are frozen; the loop stops when every
  row is done (with `config.decode.early_exit`, the default) or after
  `config.decode.num_decode_iterations`.

  Args:
    logits_fn: `(decoder_input_tokens [N, T]) -> (logits [N, T, V], accept_logits [N, T] | None)`.
    initial_tokens: [N, T] int32 from `initial_decoder_inputs`.
    rng: PRNG key (token sampling).
    config: the refinement options.
    special_tokens: the id layout.
    prune_fn: optional `(tokens [N, T], token_log_probs [N, T]) -> rows [N'] int32`, given the
      first pass's output (as `refine` would return it): only these rows are refined further,
      as a batch of N' rows (their state gathered once; `logits_fn` is then called with
      `rows=rows`, the rows of its N whose decoder inputs it gets). Ignored with one iteration.

  Returns:
    tokens [N, T] int32 (EOS-terminated, PAD after), token_log_probs [N, T] float32 (0 at PAD),
    and aux: 'iterations' [N] int32 (decoder passes each row used) and, with
    `config.decode.return_history`, 'history' [I, N, T] (each iteration's predictions; a row's final
    predictions repeat after it is done). With `prune_fn`, the rows it dropped return their
    first pass (1 iteration) and aux has 'kept' [N] bool.
  """
  num_iterations = config.decode.num_decode_iterations
  if num_iterations == 1:
    prune_fn = None  # Nothing after the first pass to spare.
  pad_id, eos_id = special_tokens.pad_id, special_tokens.eos_id
  rows, length = initial_tokens.shape
  initial_tokens = initial_tokens.astype(jnp.int32)
  # What the configuration does not need is left out when tracing, not masked at run time:
  # argmax choice splits no key; a configuration that re-masks nothing (passthrough, or a
  # rejecter of count 0, without stutter re-masking) runs no rejecter, no re-masking and keeps
  # no logits sum; one pass runs no loop.
  sampling = config.decode.temperature > 0
  remasks = config.scheme.stutter_remasking or not (
      config.scheme.rejecter == "passthrough"
      or (config.scheme.rejecter == "constant_k" and config.scheme.rejecter_k == 0)
      or (config.scheme.rejecter == "constant_fraction" and config.scheme.rejecter_fraction == 0.0))
  if config.scheme.remasking_scheme == "logits_sum" and remasks and num_iterations > 1:
    vocab = jax.eval_shape(logits_fn, initial_tokens)[0].shape[-1]
    logits_sum = jnp.zeros((rows, length, vocab), jnp.float32)
  else:
    logits_sum = None

  if num_iterations == 1:
    # One pass: what it re-masks no later pass reads; no loop.
    step = refinement_step(
        logits_fn, initial_tokens, jnp.zeros((rows, length), jnp.float32), jnp.array(0),
        config, special_tokens, initial_tokens=initial_tokens, previous_tokens=initial_tokens,
        rng=jax.random.split(rng)[1] if sampling else None, remask_next=False)
    tokens, token_log_probs = step.tokens, step.token_log_probs
    aux = {"iterations": jnp.ones((rows,), jnp.int32)}
    if config.decode.return_history:
      aux["history"] = tokens[None]
    return (*_final_tokens(tokens, token_log_probs, config, special_tokens), aux)

  counts = projected_counts(config, length)
  # Mask-predict projecting its masked positions only: the first pass (every position masked)
  # runs before the loop, the later ones project one static count, their largest.
  count = None if counts is None or len(counts) == 1 else max(counts[1:])

  def make_body(logits_fn: LogitsFn, initial_tokens: Array):
    """One iteration on the rows `logits_fn` and `initial_tokens` [N', T] are for."""

    def body(state: RefinementState, count: Optional[int] = count) -> RefinementState:
      t = state.iteration
      rng, choice_rng = jax.random.split(state.rng) if sampling else (state.rng, None)
      # (After the last pass the next input is read by nothing: no mask for it.)
      step = refinement_step(
          logits_fn, state.inputs, state.token_log_probs, t, config, special_tokens,
          initial_tokens=initial_tokens, previous_tokens=state.inputs,
          logits_sum=state.logits_sum, rng=choice_rng, count=count, remask_next=remasks)
      tokens, token_log_probs, next_inputs = step.tokens, step.token_log_probs, step.next_inputs
      summed, rejected = step.logits_sum, step.rejected
      converged = jnp.all(next_inputs == state.inputs, axis=-1)
      if config.scheme.rejecter == "linear":
        num_real = jnp.sum(_real_positions(tokens, pad_id, eos_id), axis=-1)
        converged &= _linear_schedule_count(num_real, t, num_iterations) == 0
      if summed is not None:
        converged &= ~jnp.any(rejected, axis=-1)
      if config.decode.exit_confidence > 0:
        real = _real_positions(tokens, pad_id, eos_id)
        sure = token_log_probs >= math.log(config.decode.exit_confidence)
        converged |= jnp.all(sure | ~real, axis=-1)
      active = ~state.done
      update = active[:, None]
      tokens = jnp.where(update, tokens, state.tokens)
      return RefinementState(
          iteration=t + 1,
          inputs=jnp.where(update, next_inputs, state.inputs),
          tokens=tokens,
          token_log_probs=jnp.where(update, token_log_probs, state.token_log_probs),
          done=state.done | converged,
          iterations=jnp.where(active, t + 1, state.iterations),
          rng=rng,
          logits_sum=summed,
          history=None if state.history is None else state.history.at[t].set(tokens))

    return body

  def cond(state: RefinementState) -> Array:
    if not config.decode.early_exit:
      return state.iteration < num_iterations
    return (state.iteration < num_iterations) & ~jnp.all(state.done)

  def history(state: RefinementState) -> Array:  # [I, N', T]
    ran = jnp.arange(num_iterations)[:, None, None] < state.iteration
    return jnp.where(ran, state.history, state.tokens[None])

  state = RefinementState(
      iteration=jnp.array(0, jnp.int32),
      inputs=initial_tokens,
      tokens=initial_tokens,
      token_log_probs=jnp.zeros((rows, length), jnp.float32),
      done=jnp.zeros((rows,), bool),
      iterations=jnp.zeros((rows,), jnp.int32),
      rng=rng,
      logits_sum=logits_sum,
      history=(jnp.zeros((num_iterations, rows, length), jnp.int32)
               if config.decode.return_history else None))
  body = make_body(logits_fn, initial_tokens)
  if count is not None or prune_fn is not None:
    state = body(state, None)  # The first pass: iteration 0 always runs.
  first = None
  if prune_fn is not None:
    # Only the rows `prune_fn` keeps go on, as a smaller batch: their state and encoder rows are
    # gathered once, so every later pass costs N' rows, not N.
    first = state
    kept = prune_fn(*_final_tokens(state.tokens, state.token_log_probs, config,
                                   special_tokens))
    state = _take_rows(state, kept)
    body = make_body(lambda tokens, positions=None: logits_fn(tokens, positions, rows=kept),
                     initial_tokens[kept])
  state = lax.while_loop(cond, body, state)
  tokens, token_log_probs = _final_tokens(state.tokens, state.token_log_probs, config,
                                          special_tokens)
  aux = {"iterations": state.iterations}
  if config.decode.return_history:
    aux["history"] = history(state)
  if first is not None:  # The dropped rows return their first pass.
    first_tokens, first_log_probs = _final_tokens(first.tokens, first.token_log_probs, config,
                                                  special_tokens)
    tokens = first_tokens.at[kept].set(tokens)
    token_log_probs = first_log_probs.at[kept].set(token_log_probs)
    aux["iterations"] = first.iterations.at[kept].set(state.iterations)
    aux["kept"] = jnp.zeros((rows,), bool).at[kept].set(True)
    if config.decode.return_history:
      aux["history"] = history(first).at[:, kept].set(aux["history"])
  return tokens, token_log_probs, aux


def _refine_on_fitted_canvas(logits_fn: LogitsFn, initial_tokens: Array, longest: Array,
                             rng: Array, config: RefinementConfig, special_tokens: SpecialTokens,
                             prune_fn: Optional[Callable[[Array, Array], Array]] = None
                             ) -> Tuple[Array, Array, Dict[str, Array]]:
  """`refine` on the first `canvas` positions of `initial_tokens` [N, T], `canvas` the smallest
  of `canvas_sizes` >= `longest` (a traced [] int: `lax.switch` picks the branch at run time),
  the outputs padded back to T."""
  length = initial_tokens.shape[1]
  sizes = canvas_sizes(length, config.decode.num_canvas_sizes)

  def on_canvas(canvas: int):
    def run(tokens: Array):
      tokens, token_log_probs, aux = refine(logits_fn, tokens[:, :canvas], rng, config,
                                            special_tokens, prune_fn)
      pad = [(0, 0)] * (tokens.ndim - 1) + [(0, length - canvas)]
      aux = dict(aux)
      if "history" in aux:
        aux["history"] = jnp.pad(aux["history"], [(0, 0)] + pad,
                                 constant_values=special_tokens.pad_id)
      return (jnp.pad(tokens, pad, constant_values=special_tokens.pad_id),
              jnp.pad(token_log_probs, pad), aux)
    return run

  if len(sizes) == 1:
    return on_canvas(length)(initial_tokens)
  branch = jnp.searchsorted(jnp.asarray(sizes), longest)
  return lax.switch(branch, [on_canvas(size) for size in sizes], initial_tokens)


def padir_decode(logits_fn: LogitsFn,
                 length_predictions: Array,
                 rng: Array,
                 config: RefinementConfig,
                 special_tokens: SpecialTokens,
                 max_decode_len: int,
                 rescore_fn: Optional[RescoreFn] = None) -> Tuple[Array, Dict[str, Array]]:
  """PaDIR decoding: length candidates -> refinement -> scoring -> the best candidate.

  Args:
    logits_fn: `(decoder_input_tokens [B * C, T]) -> (logits [B * C, T, V], accept_logits
      [B * C, T] | None)`, rows example-major (row b * C + c), C = `config.num_candidates`;
      with `keep_candidates_after_first_pass` < C also `(decoder_input_tokens [N', T],
      positions, rows=rows [N'])` for the inputs of its rows `rows` only.
    length_predictions: length scores [B, num_classes] or predicted lengths [B]
      (see `length_candidates`).
    rng: PRNG key (random initial inputs, token sampling).
    config: the refinement options.
    special_tokens: the id layout.
    max_decode_len: T.
    rescore_fn: optional `(tokens [B * C, T]) -> scores [B * C]` (higher is better, e.g. an AR
      teacher's log-likelihood) that replaces the candidates' own scores for ranking.

  Returns:
    tokens [B, T] int32, the best candidate of each example (EOS-terminated, PAD after, no
    stutter when `stutter_remasking`), and aux:
      'scores' [B, C] ranking scores (-inf for duplicate candidates, and for those dropped
        after the first pass with `keep_candidates_after_first_pass`);
      'model_scores' [B, C] the candidates' own scores (when rescoring);
      'candidate_lengths' [B, C], 'candidate_valid' [B, C] (False for duplicates);
      'candidate_kept' [B, C] the candidates refined past the first pass (with
        `keep_candidates_after_first_pass` < C);
      'best' [B] index of the chosen candidate, 'lengths' [B] its length;
      'iterations' [B] decoder passes the chosen candidate used;
      'candidates' [B, C, T] (with `return_all_candidates`);
      'history' [B, I, T] the chosen candidate's predictions at every iteration (with
      `return_history`).
  """
  lengths, valid = length_candidates(length_predictions, config, max_decode_len)
  batch, num_candidates = lengths.shape
  init_rng, refine_rng = jax.random.split(rng)
  initial = initial_decoder_inputs(lengths.reshape(-1), max_decode_len,
                                   config.scheme.decoder_input_scheme, special_tokens, init_rng)
  keep = config.decode.keep_candidates_after_first_pass
  prune_fn = None
  if keep is not None and keep < num_candidates:

    def prune_fn(tokens: Array, token_log_probs: Array) -> Array:
      """The `keep` best valid candidates of each example after the first pass, by their own
      scores: [B * C, W] -> rows [B * keep]."""
      first_scores = score_candidates(tokens, token_log_probs, config, special_tokens.pad_id)
      first_scores = jnp.where(valid, first_scores.reshape(batch, num_candidates), NEG_INF)
      best_first = lax.top_k(first_scores, keep)[1]
      return (jnp.arange(batch)[:, None] * num_candidates + best_first).reshape(-1)

  tokens, token_log_probs, refine_aux = _refine_on_fitted_canvas(
      logits_fn, initial, jnp.max(lengths), refine_rng, config, special_tokens, prune_fn)
  model_scores = score_candidates(tokens, token_log_probs, config,
                                  special_tokens.pad_id).reshape(batch, num_candidates)
  scores = model_scores if rescore_fn is None else (
      rescore_fn(tokens).astype(jnp.float32).reshape(batch, num_candidates))
  kept = refine_aux["kept"].reshape(batch, num_candidates) if "kept" in refine_aux else None
  scores = jnp.where(valid if kept is None else valid & kept, scores, NEG_INF)
  best = jnp.argmax(scores, axis=-1)
  candidates = tokens.reshape(batch, num_candidates, max_decode_len)

  def pick(x):  # [B, C, ...] -> [B, ...], the chosen candidate.
    return x[jnp.arange(batch), best]

  aux = {
      "scores": scores,
      "candidate_lengths": lengths,
      "candidate_valid": valid,
      "best": best,
      "lengths": pick(lengths),
      "iterations": pick(refine_aux["iterations"].reshape(batch, num_candidates)),
  }
  if rescore_fn is not None:
    aux["model_scores"] = model_scores
  if kept is not None:
    aux["candidate_kept"] = kept
  if config.decode.return_all_candidates:
    aux["candidates"] = candidates
  if config.decode.return_history:
    history = refine_aux["history"].reshape(-1, batch, num_candidates, max_decode_len)
    aux["history"] = jnp.moveaxis(history, 0, 2)[jnp.arange(batch), best]
  return pick(candidates), aux


def aligned_decode(logits_fn: LogitsFn,
                   initial_tokens: Array,
                   rng: Array,
                   config: RefinementConfig,
                   special_tokens: SpecialTokens,
                   rescore_fn: Optional[RescoreFn] = None) -> Tuple[Array, Dict[str, Array]]:
  """Decoding on an aligned (CTC) canvas: one candidate per example, refined by `refine` on the
  Imputer's schedule (the config's rejecter re-masks the least confident canvas positions, blanks
  included, and the next pass predicts them again, the alignment kept), then collapsed.

  Args:
    logits_fn: `(decoder_input_tokens [B, W]) -> (logits [B, W, V], None)`.
    initial_tokens: [B, W] the initial canvas (`ctc.initial_canvas`: EOS at its last real
      position, PAD after).
    rng: PRNG key (token sampling).
    config: the refinement options, with `aligned`.
    special_tokens: the id layout (`blank_id`).
    rescore_fn: unused (one candidate per example); accepted for `decode_fn`'s signature.

  Returns:
    tokens [B, W] (the collapsed output, EOS-terminated, PAD after) and aux: 'scores' [B, 1] the
    alignment's mean token log-prob, 'best' [B] (0), 'lengths' [B] output lengths (EOS included),
    'iterations' [B], 'alignments' [B, W] the refined canvas before collapsing, and with
    `return_history` 'history' [B, I, W].
  """
  del rescore_fn
  if not config.scheme.aligned:
    raise ValueError("aligned_decode needs a config with aligned=True (a ctc.CTCModel's)")
  canvas_lengths = jnp.sum(initial_tokens != special_tokens.pad_id, axis=-1)
  path, token_log_probs, refine_aux = _refine_on_fitted_canvas(
      logits_fn, initial_tokens, jnp.max(canvas_lengths), rng, config, special_tokens)
  tokens = ctc_collapse(path, special_tokens.blank_id, special_tokens.pad_id)
  aux = {"scores": score_candidates(path, token_log_probs, config, special_tokens.pad_id)[:, None],
         "best": jnp.zeros(tokens.shape[:1], jnp.int32),
         "lengths": jnp.sum(tokens != special_tokens.pad_id, axis=-1),
         "iterations": refine_aux["iterations"],
         "alignments": path}
  if config.decode.return_history:
    aux["history"] = jnp.moveaxis(refine_aux["history"], 0, 1)
  return tokens, aux
