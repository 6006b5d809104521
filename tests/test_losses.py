"""Losses against hand computation: label smoothing, z-loss, T5X normalisation, PaDIR losses."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from padir import losses


def _log_softmax(x):
  x = np.asarray(x, np.float64)
  m = x.max(-1, keepdims=True)
  return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def test_cross_entropy_plain_matches_hand_computation():
  logits = np.array([[1.0, 2.0, 0.5, -1.0]], np.float32)
  total, z, weight_sum = losses.compute_weighted_cross_entropy(logits, np.array([1]))
  assert float(total) == pytest.approx(-_log_softmax(logits)[0, 1], rel=1e-6)
  assert float(z) == 0.0 and float(weight_sum) == 1.0


def test_label_smoothing_and_z_loss_match_hand_computation():
  logits = np.array([[1.0, 2.0, 0.5, -1.0], [0.0, 0.0, 3.0, 1.0]], np.float32)
  targets = np.array([1, 2])
  weights = np.array([1.0, 0.5], np.float32)
  s, zc, v = 0.1, 1e-2, 4
  soft = np.full((2, v), s / (v - 1))
  soft[np.arange(2), targets] = 1 - s
  entropy = -((1 - s) * np.log(1 - s) + s * np.log(s / (v - 1)))
  log_z = np.log(np.exp(np.asarray(logits, np.float64)).sum(-1))
  per_row = -(soft * _log_softmax(logits)).sum(-1) - entropy + zc * log_z**2
  total, z, weight_sum = losses.compute_weighted_cross_entropy(
      logits, targets, weights, label_smoothing=s, z_loss=zc, loss_normalizing_factor=2.0)
  assert float(total) == pytest.approx((per_row * weights).sum() / 2.0, rel=1e-5)
  assert float(z) == pytest.approx((zc * log_z**2 * weights).sum() / 2.0, rel=1e-5)
  assert float(weight_sum) == pytest.approx(1.5)


def test_perfect_prediction_with_label_smoothing_is_zero():
  s, v = 0.2, 5
  probs = np.full(v, s / (v - 1))
  probs[3] = 1 - s
  total, _, _ = losses.compute_weighted_cross_entropy(np.log(probs)[None], np.array([3]),
                                                      label_smoothing=s)
  assert float(total) == pytest.approx(0.0, abs=1e-5)


def test_custom_gradient_equals_autodiff():
  logits = jax.random.normal(jax.random.PRNGKey(0), (3, 7))
  targets = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(1), (3, 7)))

  def reference(x):
    log_z = jax.scipy.special.logsumexp(x, axis=-1)
    return jnp.sum(-(targets * (x - log_z[:, None])).sum(-1) + 0.3 * log_z**2)

  got = jax.jit(jax.grad(
      lambda x: jnp.sum(losses.cross_entropy_with_logits(x, targets, 0.3)[0])))(logits)
  np.testing.assert_allclose(got, jax.jit(jax.grad(reference))(logits), rtol=1e-5, atol=1e-6)


def test_loss_normalizing_factors_as_t5x():
  targets = np.array([[5, 6, 1, 0], [7, 1, 0, 0]])
  batch = {"decoder_target_tokens": targets}
  assert losses.get_loss_normalizing_factor_and_weights(None, batch) == (None, None)
  assert losses.get_loss_normalizing_factor_and_weights(3.0, batch) == (3.0, None)
  factor, w = losses.get_loss_normalizing_factor_and_weights("NUM_REAL_TARGET_TOKENS", batch)
  assert float(factor) == 5.0
  np.testing.assert_array_equal(w, targets > 0)
  factor, _ = losses.get_loss_normalizing_factor_and_weights(
      losses.SpecialLossNormalizingFactor.NUM_TOTAL_TARGET_TOKENS, batch)
  assert factor == 8.0
  factor, w = losses.get_loss_normalizing_factor_and_weights("average_per_sequence", batch)
  assert float(factor) == pytest.approx(2.0)
  np.testing.assert_allclose(w, [[1 / 3, 1 / 3, 1 / 3, 0], [0.5, 0.5, 0, 0]], rtol=1e-6)
  with pytest.raises(ValueError, match="loss_normalizing_factor"):
    losses.get_loss_normalizing_factor_and_weights("per_banana", batch)


def test_average_per_sequence_with_packed_rows():
  batch = {"decoder_target_tokens": np.array([[5, 1, 6, 7, 1, 0]]),
           "decoder_segment_ids": np.array([[1, 1, 2, 2, 2, 0]])}
  factor, w = losses.get_loss_normalizing_factor_and_weights("AVERAGE_PER_SEQUENCE", batch)
  assert float(factor) == pytest.approx(2.0)
  np.testing.assert_allclose(w, [[0.5, 0.5, 1 / 3, 1 / 3, 1 / 3, 0]], rtol=1e-6)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_length_classifier_loss_is_a_per_sequence_mean(batch_size):
  logits = jax.random.normal(jax.random.PRNGKey(batch_size), (batch_size, 9))
  lengths = jnp.arange(batch_size) + 2
  got = losses.length_classifier_loss(logits, lengths)
  expected = -np.mean(_log_softmax(logits)[np.arange(batch_size), np.asarray(lengths)])
  assert got.shape == ()
  assert float(got) == pytest.approx(expected, rel=1e-5)
  # Duplicating the batch leaves a per-sequence mean unchanged.
  doubled = losses.length_classifier_loss(jnp.concatenate([logits, logits]),
                                          jnp.concatenate([lengths, lengths]))
  assert float(doubled) == pytest.approx(expected, rel=1e-5)


def test_length_classifier_loss_clips_lengths_beyond_the_classes():
  logits = jnp.zeros((1, 4)).at[0, 3].set(10.0)
  assert float(losses.length_classifier_loss(logits, jnp.array([7]))) < 1e-3


@pytest.mark.parametrize("batch_size", [1, 4])
def test_length_regression_loss_is_a_per_sequence_mean(batch_size):
  predicted = jnp.arange(batch_size, dtype=jnp.float32) + 0.5
  target = jnp.arange(batch_size) + 2
  assert float(losses.length_regression_loss(predicted, target)) == pytest.approx(2.25)


def test_binary_cross_entropy_matches_hand_computation():
  logits = np.array([[2.0, -1.0, 0.0], [30.0, -30.0, 0.5]], np.float32)
  labels = np.array([[1, 0, 1], [0, 1, 1]])
  weights = np.array([[1, 1, 0], [1, 1, 1]], np.float32)
  x = logits.astype(np.float64)
  per = labels * np.logaddexp(0, -x) + (1 - labels) * np.logaddexp(0, x)  # -log sigmoid(+-x)
  total, count = losses.binary_cross_entropy_with_logits(logits, labels, weights)
  assert float(total) == pytest.approx((per * weights).sum(), rel=1e-5)
  assert float(count) == 5.0
  single, _ = losses.binary_cross_entropy_with_logits(logits[:1, :1], labels[:1, :1])
  assert float(single) == pytest.approx(per[0, 0], rel=1e-5)


def test_weighted_accuracy():
  logits = jnp.eye(4)[jnp.array([[1, 2, 3], [0, 0, 0]])]
  correct, counted = losses.weighted_accuracy(logits, jnp.array([[1, 0, 3], [0, 1, 2]]),
                                              jnp.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
  assert (float(correct), float(counted)) == (2.0, 3.0)


@pytest.mark.slow
def test_smoothed_cross_entropy_equals_the_one_hot_loss_and_gradient():
  """The integer-target loss (no [..., V] target array) = cross_entropy_with_logits against the
  label-smoothed one-hot, in value and gradient."""
  logits = 3 * jax.random.normal(jax.random.PRNGKey(0), (2, 3, 11))
  targets = jnp.array([[1, 0, 10], [4, 4, 7]])
  smoothing, z = 0.1, 1e-2
  low = smoothing / 10
  soft = jax.nn.one_hot(targets, 11) * (1 - smoothing - low) + low

  def one_hot_loss(x):
    return jnp.sum(losses.cross_entropy_with_logits(x, soft, z)[0] * jnp.arange(1.0, 4.0))

  def integer_loss(x):
    return jnp.sum(losses.smoothed_cross_entropy(x, targets, smoothing, z)[0]
                   * jnp.arange(1.0, 4.0))

  np.testing.assert_allclose(integer_loss(logits), one_hot_loss(logits), rtol=1e-5)
  np.testing.assert_allclose(jax.jit(jax.grad(integer_loss))(logits),
                             jax.jit(jax.grad(one_hot_loss))(logits), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(losses.smoothed_cross_entropy(logits, targets, smoothing, z)[1],
                             losses.cross_entropy_with_logits(logits, soft, z)[1], rtol=1e-5)
