"""The pieces of PaDIR refinement, public so that the model's unrolled multi-stage training uses
what inference uses: `length_candidates`, `length_log_probs`, `canvas_sizes`,
`projected_counts`, `initial_decoder_inputs`, `stutter_mask`, `reject`, `keep_visible_tokens`,
`remask`, `glance` (training's glancing sampler), and the output clean-up `cut_at_eos`,
`remove_stutter`, `ctc_collapse`, `postprocess`. The token choice is
`padir.decoding.choice.choose_tokens`; the step and the loop that put them together are in
`padir.decoding.refine`.
"""
import math
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
from jax import lax

from padir.decoding.choice import NEG_INF, _argmax_without_eos, _output_log_probs
from padir.decoding.config import DECODER_INPUT_SCHEMES, RefinementConfig
from padir.special_tokens import EOS_ID, PAD_ID, SpecialTokens

Array = jax.Array


def _length_class_scores(length_predictions: Array) -> Array:
  """Length classifier scores [B, num_classes] as float32, class 0 (length 0) ruled out."""
  return length_predictions.astype(jnp.float32).at[:, 0].set(NEG_INF)


def length_log_probs(length_predictions: Array, lengths: Array) -> Array:
  """Each candidate length's log-prob under length classifier scores [B, num_classes]:
  lengths [B, C] -> [B, C] float32; a length without a class (past the last one, as a length
  beam's offset can reach) gets NEG_INF."""
  log_probs = jax.nn.log_softmax(_length_class_scores(length_predictions), axis=-1)
  num_classes = log_probs.shape[1]
  chosen = jnp.take_along_axis(log_probs, jnp.minimum(lengths, num_classes - 1), axis=1)
  return jnp.where(lengths < num_classes, chosen, NEG_INF)


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
    top = lax.top_k(_length_class_scores(length_predictions), k)[1]
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
