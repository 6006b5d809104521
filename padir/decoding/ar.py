"""AR decoding with a KV cache, driven by a `tokens_to_logits(ids [N, 1] int32, cache) ->
(logits [N, V] float32, new_cache)` callback (the contract: `padir/decoding/__init__.py`):

- `temperature_sample`: greedy (temperature 0), or temperature / top-k / top-p sampling.
- `beam_search`: beam search with T5X's (GNMT) brevity penalty.
"""
from typing import Any, Callable, Optional, Tuple

import flax
import jax
import jax.numpy as jnp
from jax import lax

from padir.decoding.choice import NEG_INF, _check_sampling, argmax_and_max, brevity_penalty
from padir.decoding.choice import filter_logits
from padir.special_tokens import BOS_ID, EOS_ID, PAD_ID

Array = jax.Array
TokensToLogits = Callable[[Array, Any], Tuple[Array, Any]]

# T5X's NEG_INF, `beam_search`'s "not a hypothesis": the log-prob of its empty beams, and the
# score a finished (EOS) hypothesis must beat to count (T5X ranks unfinished entries of its
# finished set at this value).
BEAM_NEG_INF = -1.0e7


def _repeat_batch(tree: Any, times: int) -> Any:
  """Repeats every batch-first leaf (ndim >= 1) `times` times: row b -> rows b*times .. +times-1.

  The cache contract of the AR loops (here and in `beam_search`'s reordering): every leaf with a
  leading axis is per row, `[B, ...]`; a shared value (a step counter) must be a scalar. T5X
  exempts leaves by name (`cache_index`) instead."""
  return jax.tree_util.tree_map(lambda x: jnp.repeat(x, times, axis=0) if x.ndim else x, tree)


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
