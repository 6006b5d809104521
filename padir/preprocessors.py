"""PaDIR target-side noise, as a seqio preprocessor.

`noise_targets` is the core (TF ops on a `[..., L]` batch, testable alone); `padir_noise` maps it
over a task's examples. It runs after EOS is appended and targets are trimmed, so the EOS it
must never noise is in place. For each target position that is neither PAD nor EOS:

  1. the position is noised with probability `ratio`, drawn per example: uniform on [0, 1]
     ("uniform", the default), a constant ("fixed") or Beta(a, b) ("beta");
  2. a noised token stays correct with `correct_prob`, becomes a random real piece with
     `random_prob`, and otherwise becomes `[MASK]`: a mark, not the decoder's input. The model
     fills the marked positions with its own initial decoder input, the one decoding starts
     from (`decoding.initial_decoder_inputs` of its `RefinementScheme.decoder_input_scheme`:
     `[MASK]`, `[MASK_i]` or random pieces), so the data pipeline never builds a canvas itself.

Loss weights (1.0 where the loss is taken, else 0.0), from the noise indicators, never from id
ranges: "all" (every non-pad target), "noise" (noised positions + EOS/BOS), "mask" (positions
marked [MASK] + EOS/BOS).

Features added: `targets_noised` (int32, the PaDIR decoder input before the model fills its
[MASK] marks, aligned with `targets`) and `targets_loss_weights` (float32).
"""
import dataclasses
from typing import Dict, Mapping, Optional

import gin
import seqio
import tensorflow as tf

from padir import special_tokens as special_tokens_lib

RATIO_DISTRIBUTIONS = ("uniform", "fixed", "beta")
LOSS_WEIGHT_SCHEMES = ("all", "noise", "mask")
NOISED_FEATURE = "targets_noised"
LOSS_WEIGHTS_FEATURE = "targets_loss_weights"


@dataclasses.dataclass(frozen=True)
class NoiseConfig:
  """Parameters of the target noise (see the module docstring); validated on construction."""
  ratio_distribution: str = "uniform"
  fixed_ratio: float = 0.5
  beta_a: float = 1.0
  beta_b: float = 1.0
  correct_prob: float = 0.1
  random_prob: float = 0.1
  loss_weights: str = "noise"

  def __post_init__(self):
    for value, allowed, name in ((self.ratio_distribution, RATIO_DISTRIBUTIONS,
                                  "ratio_distribution"),
                                 (self.loss_weights, LOSS_WEIGHT_SCHEMES, "loss_weights")):
      if value not in allowed:
        raise ValueError(f"{name}={value!r}: expected one of {allowed}")
    if not 0.0 <= self.fixed_ratio <= 1.0:
      raise ValueError(f"fixed_ratio={self.fixed_ratio} must be in [0, 1]")
    if self.beta_a <= 0 or self.beta_b <= 0:
      raise ValueError(f"beta_a={self.beta_a}, beta_b={self.beta_b} must be > 0")
    if (self.correct_prob < 0 or self.random_prob < 0 or
        self.correct_prob + self.random_prob > 1.0):
      raise ValueError(f"correct_prob={self.correct_prob}, random_prob={self.random_prob}: need "
                       "both >= 0 and a sum <= 1")


def _sample_ratio(shape, seed, config: NoiseConfig) -> tf.Tensor:
  if config.ratio_distribution == "fixed":
    return tf.fill(shape, tf.constant(config.fixed_ratio, tf.float32))
  if config.ratio_distribution == "uniform":
    return tf.random.stateless_uniform(shape, seed)
  seed_a, seed_b = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  gamma_a = tf.random.stateless_gamma(shape, seed_a, alpha=config.beta_a)
  gamma_b = tf.random.stateless_gamma(shape, seed_b, alpha=config.beta_b)
  return gamma_a / (gamma_a + gamma_b)


def _random_pieces(shape, seed, special_tokens: special_tokens_lib.SpecialTokens) -> tf.Tensor:
  """Uniform real pieces, never PAD/EOS/UNK/BOS."""
  return tf.random.stateless_uniform(shape, seed, minval=special_tokens.first_real_piece,
                                     maxval=special_tokens.num_pieces, dtype=tf.int32)


def noise_targets(targets, seed, special_tokens: special_tokens_lib.SpecialTokens,
                  config: NoiseConfig = NoiseConfig()) -> Dict[str, tf.Tensor]:
  """Noises target ids the PaDIR way.

  Args:
    targets: int32 `[..., L]` target ids ending in EOS, padded with PAD (0) or not.
    seed: a stateless seed, int32 `[2]`.
    special_tokens: the vocabulary's special ids.
    config: the noise parameters.

  Returns:
    A dict of `[..., L]` tensors: `targets_noised` (int32), `targets_loss_weights` (float32),
    and the indicators they were made from, `noise_mask` (position noised) and `init_mask`
    (position marked [MASK], for the model's initial token); both bool, False on PAD, EOS and
    BOS.
  """
  targets = tf.convert_to_tensor(targets, tf.int32)
  shape = tf.shape(targets)
  seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
  ratio = _sample_ratio(tf.concat([shape[:-1], [1]], axis=0), seeds[0], config)
  is_pad = tf.equal(targets, special_tokens.pad_id)
  is_boundary = (tf.equal(targets, special_tokens.eos_id) |
                 tf.equal(targets, special_tokens.bos_id))
  eligible = ~is_pad & ~is_boundary
  noise_mask = eligible & (tf.random.stateless_uniform(shape, seeds[1]) < ratio)
  choice = tf.random.stateless_uniform(shape, seeds[2])
  keep = choice < config.correct_prob
  randomize = ~keep & (choice < config.correct_prob + config.random_prob)
  init_mask = noise_mask & ~keep & ~randomize
  noised = tf.where(noise_mask & randomize, _random_pieces(shape, seeds[3], special_tokens),
                    targets)
  noised = tf.where(init_mask, special_tokens.mask_id, noised)
  if config.loss_weights == "all":
    weights = ~is_pad
  elif config.loss_weights == "noise":
    weights = noise_mask | is_boundary
  else:
    weights = init_mask | is_boundary
  return {
      NOISED_FEATURE: noised,
      LOSS_WEIGHTS_FEATURE: tf.cast(weights, tf.float32),
      "noise_mask": noise_mask,
      "init_mask": init_mask,
  }


@gin.configurable(denylist=["dataset", "sequence_length", "output_features"])
def padir_noise(dataset: tf.data.Dataset,
                sequence_length: Optional[Mapping[str, int]] = None,
                output_features: Optional[Mapping[str, seqio.Feature]] = None,
                *,
                ratio_distribution: str = "uniform",
                fixed_ratio: float = 0.5,
                beta_a: float = 1.0,
                beta_b: float = 1.0,
                correct_prob: float = 0.1,
                random_prob: float = 0.1,
                loss_weights: str = "noise") -> tf.data.Dataset:
  """Seqio preprocessor adding `targets_noised` and `targets_loss_weights` (module docstring).

  Put it after `seqio.preprocessors.append_eos_after_trim`. The target vocabulary must be a
  `padir.vocab.PadirVocabulary` (it gives the special ids). Randomness comes from seqio's
  per-example seeds, so a dataset built with a seed is reproducible.
  """
  config = NoiseConfig(ratio_distribution=ratio_distribution,
                       fixed_ratio=fixed_ratio, beta_a=beta_a, beta_b=beta_b,
                       correct_prob=correct_prob, random_prob=random_prob,
                       loss_weights=loss_weights)
  vocabulary = output_features["targets"].vocabulary if output_features else None
  special_tokens = getattr(vocabulary, "special_tokens", None)
  if special_tokens is None:
    raise ValueError(f"padir_noise needs a PadirVocabulary for 'targets', got {vocabulary}")
  max_length = (sequence_length or {}).get("targets")
  if max_length is not None and max_length > special_tokens.max_target_length:
    raise ValueError(
        f"targets length {max_length} exceeds the vocabulary's max_target_length="
        f"{special_tokens.max_target_length} (the [MASK_i] range and length classes are sized "
        "by it): raise max_target_length where the task is registered, or shorten targets")

  @seqio.map_over_dataset(num_seeds=1)
  def add_noise(features, seed):
    noise = noise_targets(features["targets"], seed, special_tokens, config)
    return {**features, NOISED_FEATURE: noise[NOISED_FEATURE],
            LOSS_WEIGHTS_FEATURE: noise[LOSS_WEIGHTS_FEATURE]}

  return add_noise(dataset)


def is_noise_preprocessor(preprocessor) -> bool:
  """True for `padir_noise`, bare or partially applied (to strip it for evaluation)."""
  return getattr(preprocessor, "func", preprocessor) is padir_noise
