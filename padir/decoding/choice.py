"""Token choice and the sampling filters, below everything else of `padir.decoding`: AR search
(`padir.decoding.ar`), the decode configs (`padir.decoding.config`) and PaDIR refinement
(`padir.decoding.pieces`, `padir.decoding.refine`) all use them.

- `choose_tokens`: a token per position of PaDIR's [N, T, V] logits, argmax (two fused passes
  over the vocabulary, no [N, T, V] log-softmax) or temperature / top-k / top-p sampling; it
  reads `config.scheme.aligned` and `config.decode.temperature` / `.top_k` / `.top_p` of a
  `padir.decoding.config.RefinementConfig` (not imported: that module sits above this one).
- `filter_logits` (top-k / top-p), `argmax_and_max`, `brevity_penalty` (T5X / GNMT), and the
  sampling options' check the configs share.
"""
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
from jax import lax

from padir.special_tokens import SpecialTokens

Array = jax.Array

NEG_INF = -jnp.inf


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
                  config: "RefinementConfig",
                  special_tokens: SpecialTokens,
                  initial_tokens: Optional[Array] = None,
                  iteration: Optional[Array] = None) -> Tuple[Array, Array]:
  """Chooses a token per position: argmax, or temperature / top-k / top-p sampling.

  Only real pieces other than PAD, EOS and BOS are chosen (never a [MASK], a [LENGTH] or a
  padding id of the vocabulary; the CTC blank too with `config.scheme.aligned`); EOS appears
  only where `initial_tokens` puts it.

  Args:
    logits: [N, T, V].
    rng: PRNG key (used when config.decode.temperature > 0).
    config: `decode.temperature`, `.top_k`, `.top_p`, `.blank_penalty` and
      `.blank_penalty_decay` (aligned schemes).
    special_tokens: the id layout.
    initial_tokens: [N, T] optional; where it holds EOS or PAD the output keeps them (EOS at
      length - 1, PAD after), so predictions at padding are never used.
    iteration: [] int, the 0-based refinement pass (the blank penalty's decay; None: 0).

  Returns:
    tokens [N, T] int32 and token_log_probs [N, T] float32, the log-probs of the returned tokens
    under the model's distribution over real pieces but PAD and BOS (0 at PAD).
  """
  if config.scheme.aligned and config.decode.blank_penalty:
    penalty = config.decode.blank_penalty
    if iteration is not None and config.decode.blank_penalty_decay != 1.0:
      penalty = penalty * jnp.power(config.decode.blank_penalty_decay, iteration)
    logits = logits - penalty * (
        jnp.arange(logits.shape[-1]) == special_tokens.blank_id).astype(logits.dtype)
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
