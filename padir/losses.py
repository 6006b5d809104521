"""Losses of the AR and PaDIR models, with T5X's semantics where T5X has the same loss.

- `cross_entropy_with_logits` / `compute_weighted_cross_entropy`: T5X's token cross-entropy with
  label smoothing (the loss is shifted so that a perfect prediction scores 0) and z-loss
  (`z_loss * log(Z)^2`, a stabiliser), with a memory-saving custom gradient.
- `get_loss_normalizing_factor_and_weights`: T5X's `loss_normalizing_factor` options — `None`
  (sum), a constant, or the special factors `NUM_REAL_TARGET_TOKENS` (per token),
  `NUM_TOTAL_TARGET_TOKENS`, `AVERAGE_PER_SEQUENCE` (each sequence's weights sum to 1).
- PaDIR-only losses, each normalised per sequence (or per token) and correct at batch size 1:
  `length_classifier_loss`, `length_offset_loss` (ordinal: Gaussian-smoothed targets),
  `length_regression_loss`, `binary_cross_entropy_with_logits` (the learned rejecter).

Pure functions of arrays: no seqio, no network.
"""
import dataclasses
import enum
import functools
from typing import Mapping, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


@jax.custom_vjp
def cross_entropy_with_logits(logits: Array, targets: Array, z_loss: float) -> Tuple[Array, Array]:
  """Cross-entropy against soft targets, plus z-loss (T5X semantics).

  Args:
    logits: [..., V] float logits.
    targets: [..., V] float target distribution (rows sum to 1).
    z_loss: coefficient of the auxiliary loss `log(Z)^2`, Z the softmax normaliser.

  Returns:
    (loss [...], z_loss [...]); `loss` already includes the z-loss term, the second output is
    that term alone, for logging.
  """
  return _cross_entropy_with_logits_fwd(logits, targets, z_loss)[0]


def _cross_entropy_with_logits_fwd(logits, targets, z_loss):
  max_logit = jnp.max(logits, axis=-1, keepdims=True)
  shifted = logits - max_logit
  exp_shifted = jnp.exp(shifted)
  sum_exp = jnp.sum(exp_shifted, axis=-1, keepdims=True)
  log_softmax = shifted - jnp.log(sum_exp)
  loss = -jnp.sum(targets * log_softmax, axis=-1)
  log_z = jnp.squeeze(jnp.log(sum_exp) + max_logit, axis=-1)
  total_z_loss = z_loss * jnp.square(log_z)
  loss = loss + total_z_loss
  return (loss, total_z_loss), (logits, targets, z_loss, exp_shifted, sum_exp, log_softmax, log_z)


def _cross_entropy_with_logits_bwd(res, g):
  g = g[0]  # The second output (z-loss alone) is for logging only.
  logits, targets, z_loss, exp_shifted, sum_exp, log_softmax, log_z = res
  deriv = jnp.expand_dims(1 + 2 * z_loss * log_z, -1) * exp_shifted / sum_exp - targets
  g_logits = jnp.expand_dims(g, axis=-1) * deriv
  g_targets = -jnp.expand_dims(g, axis=-1) * log_softmax
  return (jnp.asarray(g_logits, logits.dtype), jnp.asarray(g_targets, targets.dtype),
          jnp.zeros_like(jnp.asarray(z_loss, jnp.float32)))


cross_entropy_with_logits.defvjp(_cross_entropy_with_logits_fwd, _cross_entropy_with_logits_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def smoothed_cross_entropy(logits: Array, targets: Array, label_smoothing: float,
                           z_loss: float) -> Tuple[Array, Array]:
  """`cross_entropy_with_logits` against the label-smoothed one-hot of integer `targets`,
  without materialising that target distribution: the same values and gradient, in one pass
  over the logits each way (the backward pass recomputes the softmax from the logits and
  log Z instead of keeping [..., V] residuals).

  Args:
    logits: [..., V] float32; targets: [...] int class ids; label_smoothing: s (the target
      puts 1 - s on the gold class and s / (V - 1) on each other one); z_loss: as above.

  Returns:
    (loss [...], z_loss [...]) as `cross_entropy_with_logits`.
  """
  return _smoothed_cross_entropy_fwd(logits, targets, label_smoothing, z_loss)[0]


def _smoothing(vocab_size: int, label_smoothing: float) -> Tuple[float, float]:
  """(gold weight - other weight, other weight) of the smoothed target distribution."""
  low = label_smoothing / (vocab_size - 1)
  return 1.0 - label_smoothing - low, low


def _smoothed_cross_entropy_fwd(logits, targets, label_smoothing, z_loss):
  gold_extra, low = _smoothing(logits.shape[-1], label_smoothing)
  log_z = jax.nn.logsumexp(logits, axis=-1)
  gold = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  # -sum_v t_v log p_v with t = low + gold_extra * onehot, and sum_v t_v = 1.
  loss = log_z - gold_extra * gold - low * jnp.sum(logits, axis=-1)
  total_z_loss = z_loss * jnp.square(log_z)
  return (loss + total_z_loss, total_z_loss), (logits, targets, log_z)


def _smoothed_cross_entropy_bwd(label_smoothing, z_loss, res, g):
  logits, targets, log_z = res
  gold_extra, low = _smoothing(logits.shape[-1], label_smoothing)
  g = g[0]  # The second output (z-loss alone) is for logging only.
  probs = jnp.exp(logits - log_z[..., None]) * (1 + 2 * z_loss * log_z)[..., None]
  onehot = jnp.arange(logits.shape[-1]) == targets[..., None]
  deriv = probs - low - jnp.where(onehot, gold_extra, 0.0)
  return g[..., None] * deriv, None


smoothed_cross_entropy.defvjp(_smoothed_cross_entropy_fwd, _smoothed_cross_entropy_bwd)


def compute_weighted_cross_entropy(
    logits: Array,
    targets: Array,
    weights: Optional[Array] = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    loss_normalizing_factor: Optional[Union[float, Array]] = None,
) -> Tuple[Array, Array, Array]:
  """Weighted, label-smoothed cross-entropy with z-loss, summed (T5X semantics).

  With label smoothing s the target puts 1-s on the gold class and s/(V-1) on each other one;
  the entropy of that target is subtracted, so a perfect prediction has loss 0.

  Args:
    logits: [..., V] float logits.
    targets: [...] int class ids.
    weights: [...] float weights, or None for all ones.
    label_smoothing: s above.
    z_loss: z-loss coefficient.
    loss_normalizing_factor: the summed loss is divided by it (None: no division).

  Returns:
    (total loss, total z-loss, weight sum): scalars; the losses summed over every position.
  """
  vocab_size = logits.shape[-1]
  gold_extra, low_confidence = _smoothing(vocab_size, label_smoothing)
  confidence = gold_extra + low_confidence
  normalizing_constant = -(confidence * np.log(confidence) +
                           (vocab_size - 1) * low_confidence * np.log(low_confidence + 1e-20))
  total_loss, total_z_loss = smoothed_cross_entropy(
      logits.astype(jnp.float32), jnp.asarray(targets, jnp.int32), label_smoothing, z_loss)
  total_loss = total_loss - normalizing_constant
  weight_sum = jnp.asarray(np.prod(targets.shape), jnp.float32)
  if weights is not None:
    total_loss = total_loss * weights
    total_z_loss = total_z_loss * weights
    weight_sum = jnp.sum(weights)
  if loss_normalizing_factor is not None:
    total_loss = total_loss / loss_normalizing_factor
    total_z_loss = total_z_loss / loss_normalizing_factor
  return jnp.sum(total_loss), jnp.sum(total_z_loss), weight_sum


@enum.unique
class SpecialLossNormalizingFactor(enum.Enum):
  """T5X's data-dependent loss normalising factors.

  NUM_REAL_TARGET_TOKENS: divide by the sum of the loss weights (a per-token mean).
  NUM_TOTAL_TARGET_TOKENS: divide by batch x length, padding included.
  AVERAGE_PER_SEQUENCE: each sequence's weights are rescaled to sum to 1, then divided by the
    number of sequences with any weight (a per-sequence mean of per-token means).
  """
  NUM_REAL_TARGET_TOKENS = 1
  NUM_TOTAL_TARGET_TOKENS = 2
  AVERAGE_PER_SEQUENCE = 3


LossNormalizingFactor = Optional[Union[float, int, str, SpecialLossNormalizingFactor]]


def special_loss_normalizing_factor(
    factor: Union[str, SpecialLossNormalizingFactor]) -> SpecialLossNormalizingFactor:
  """The `SpecialLossNormalizingFactor` named by `factor` (case-insensitive); ValueError if none."""
  if isinstance(factor, SpecialLossNormalizingFactor):
    return factor
  try:
    return SpecialLossNormalizingFactor[factor.upper()]
  except KeyError:
    raise ValueError(
        f"loss_normalizing_factor={factor!r}: expected None, a number, or one of "
        f"{[f.name for f in SpecialLossNormalizingFactor]}") from None


@dataclasses.dataclass(frozen=True)
class LossSettings:
  """How a PaDIR model weighs and normalises its losses (gin: `models.PadirModel.loss =
  @losses.LossSettings()`, `losses.LossSettings.label_smoothing = 0.1`). Frozen.

  Attributes:
    label_smoothing: token (and length classifier) cross-entropy label smoothing, in [0, 1).
    z_loss: z-loss coefficient.
    loss_normalizing_factor: as T5X's: None (summed loss), a number, or one of
      'NUM_REAL_TARGET_TOKENS' (per token), 'NUM_TOTAL_TARGET_TOKENS', 'AVERAGE_PER_SEQUENCE'.
    length_loss_weight: weight of the length loss (a per-sequence mean).
    rejecter_loss_weight: weight of the learned rejecter's loss (a per-position mean).
  """
  label_smoothing: float = 0.0
  z_loss: float = 0.0
  loss_normalizing_factor: LossNormalizingFactor = "NUM_REAL_TARGET_TOKENS"
  length_loss_weight: float = 1.0
  rejecter_loss_weight: float = 1.0

  def __post_init__(self):
    if not 0.0 <= self.label_smoothing < 1.0:
      raise ValueError(f"label_smoothing={self.label_smoothing} must be in [0, 1)")
    if isinstance(self.loss_normalizing_factor, str):
      special_loss_normalizing_factor(self.loss_normalizing_factor)  # Fails early if unknown.


def _sum_weights_per_segment(segment_ids: Array, weights: Array) -> Array:
  """For packed rows: every position gets the weight sum of its own segment. [B, T] -> [B, T]."""
  batch, length = segment_ids.shape
  ids = segment_ids + (length + 1) * jnp.arange(batch)[:, None]
  sums = jax.ops.segment_sum(weights.ravel(), ids.ravel(), num_segments=batch * (length + 1))
  return sums[ids]


def get_loss_normalizing_factor_and_weights(
    loss_normalizing_factor: LossNormalizingFactor,
    batch: Mapping[str, Array],
) -> Tuple[Optional[Union[float, Array]], Optional[Array]]:
  """T5X's `get_loss_normalizing_factor_and_weights`.

  Args:
    loss_normalizing_factor: None, a number, or a `SpecialLossNormalizingFactor` (or its name).
    batch: has `decoder_target_tokens` [B, T] and optionally `decoder_loss_weights` [B, T]
      (default: target != 0), and for packed rows `decoder_segment_ids`.

  Returns:
    (factor to divide the summed loss by or None, the loss weights [B, T] to use or None).
  """
  loss_weights = batch.get("decoder_loss_weights", None)
  if loss_normalizing_factor is None or not isinstance(
      loss_normalizing_factor, (str, SpecialLossNormalizingFactor)):
    return loss_normalizing_factor, loss_weights
  factor = special_loss_normalizing_factor(loss_normalizing_factor)
  targets = batch["decoder_target_tokens"]
  if loss_weights is None:
    loss_weights = jnp.asarray(targets > 0, jnp.float32)
  loss_weights = jnp.asarray(loss_weights, jnp.float32)
  if factor == SpecialLossNormalizingFactor.NUM_REAL_TARGET_TOKENS:
    return jnp.sum(loss_weights), loss_weights
  if factor == SpecialLossNormalizingFactor.NUM_TOTAL_TARGET_TOKENS:
    return float(np.prod(targets.shape)), loss_weights
  if "decoder_segment_ids" in batch:
    norm = _sum_weights_per_segment(batch["decoder_segment_ids"], loss_weights)
  else:
    norm = jnp.sum(loss_weights, axis=-1, keepdims=True)
  loss_weights = jnp.nan_to_num(loss_weights / norm, nan=0.0, posinf=0.0, neginf=0.0)
  return jnp.sum(loss_weights), loss_weights


def weighted_accuracy(logits: Array, targets: Array, weights: Array) -> Tuple[Array, Array]:
  """(number correct, number counted): the target's logit is the largest (argmax == target, a
  tie counting as correct) at positions with weight > 0. A max and a gather, cheaper than an
  argmax's (value, index) reduction over [..., V].

  Args:
    logits: [..., V]; targets, weights: [...].
  """
  counted = (weights > 0).astype(jnp.float32)
  gold = jnp.take_along_axis(logits, jnp.asarray(targets, jnp.int32)[..., None], axis=-1)[..., 0]
  correct = (gold >= jnp.max(logits, axis=-1)).astype(jnp.float32) * counted
  return jnp.sum(correct), jnp.sum(counted)


def length_classifier_loss(length_logits: Array, target_lengths: Array,
                           label_smoothing: float = 0.0, z_loss: float = 0.0) -> Array:
  """Mean over sequences of the cross-entropy of the gold length.

  Args:
    length_logits: [B, C] logits; class c is length c.
    target_lengths: [B] int gold lengths (clipped to C-1 here).

  Returns:
    scalar: the per-sequence mean, independent of the batch size (also at B = 1).
  """
  num_classes = length_logits.shape[-1]
  targets = jnp.clip(target_lengths.astype(jnp.int32), 0, num_classes - 1)
  total, _, _ = compute_weighted_cross_entropy(
      length_logits, targets, label_smoothing=label_smoothing, z_loss=z_loss,
      loss_normalizing_factor=targets.shape[0])
  return total


def length_offset_loss(offset_logits: Array, gold_offsets: Array, sigma: float = 1.0,
                       z_loss: float = 0.0) -> Array:
  """Mean over sequences of the cross-entropy of an ordinal length-offset target.

  The target is a Gaussian of width `sigma` around the gold offset (clipped to -R..R),
  normalised over the 2R + 1 classes: being one off costs less than being five off. With
  `sigma` 0 it is one-hot. Shifted by the target's entropy, so a perfect prediction scores 0.

  Args:
    offset_logits: [B, 2R + 1] logits; class j is offset j - R.
    gold_offsets: [B] int target length - source length.

  Returns:
    scalar: the per-sequence mean (also correct at B = 1).
  """
  num_classes = offset_logits.shape[-1]
  r = (num_classes - 1) // 2
  gold = jnp.clip(gold_offsets.astype(jnp.int32), -r, r) + r
  if sigma > 0:
    distance = jnp.arange(num_classes)[None, :] - gold[:, None]
    targets = jax.nn.softmax(-0.5 * jnp.square(distance / sigma).astype(jnp.float32), axis=-1)
  else:
    targets = jax.nn.one_hot(gold, num_classes, dtype=jnp.float32)
  loss, _ = cross_entropy_with_logits(offset_logits.astype(jnp.float32), targets, z_loss)
  entropy = -jnp.sum(targets * jnp.log(jnp.maximum(targets, 1e-20)), axis=-1)
  return jnp.mean(loss - entropy)


def length_regression_loss(predicted_lengths: Array, target_lengths: Array) -> Array:
  """Mean over sequences of the squared error of a real-valued length prediction.

  Args:
    predicted_lengths: [B] float; target_lengths: [B] int or float.

  Returns:
    scalar mean squared error (also correct at B = 1).
  """
  diff = predicted_lengths.astype(jnp.float32) - target_lengths.astype(jnp.float32)
  return jnp.mean(jnp.square(diff))


def binary_cross_entropy_with_logits(logits: Array, labels: Array,
                                     weights: Optional[Array] = None) -> Tuple[Array, Array]:
  """Summed, weighted binary cross-entropy of `sigmoid(logits)` against 0/1 labels.

  Args:
    logits: [...] float logits of the positive class; labels: [...] 0/1;
    weights: [...] float or None for all ones.

  Returns:
    (loss sum, weight sum): scalars; divide one by the other for a per-position mean.
  """
  logits = logits.astype(jnp.float32)
  labels = labels.astype(jnp.float32)
  per_position = jnp.maximum(logits, 0.0) - logits * labels + jnp.log1p(jnp.exp(-jnp.abs(logits)))
  if weights is None:
    weights = jnp.ones_like(per_position)
  return jnp.sum(per_position * weights), jnp.sum(weights)
