"""What makes a PaDIR student learn: a length predictor that counts (the offset head), its prior
fitted to the data, glancing training, and the data's noise filled with the model's canvas."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from padir import decoding
from padir import length
from padir import losses
from padir import models
from padir import network
from padir.special_tokens import EOS_ID, PAD_ID, SpecialTokens

ST = SpecialTokens.create(num_pieces=24, max_target_length=32)
S = T = 32


def _network():
  return network.Transformer(network.get_config(
      "test", num_encoder_layers=1, num_decoder_layers=1, emb_dim=32, num_heads=2, head_dim=16,
      mlp_dim=64, dropout_rate=0.0))


def _model(length_predictor=length.Classifier(), decoder_input_scheme="mask",
           loss=losses.LossSettings(), training=models.TrainingRecipe()):
  return models.PadirModel(
      _network(), special_tokens=ST, loss=loss, length_predictor=length_predictor,
      scheme=decoding.RefinementScheme(decoder_input_scheme=decoder_input_scheme),
      training=training)


def _length_rule_batch(rs: np.random.RandomState, rows: int):
  """Sources of 2..16 pieces + EOS; the target has round(1.5 x) as many pieces + EOS, so the
  length offset grows with the source length: a predictor must count the source."""
  src = np.zeros((rows, S), np.int32)
  tgt = np.zeros((rows, T), np.int32)
  for b in range(rows):
    n = rs.randint(2, 17)
    m = int(round(1.5 * n))
    src[b, :n + 1] = np.append(rs.randint(4, ST.num_pieces, n), EOS_ID)
    tgt[b, :m + 1] = np.append(rs.randint(4, ST.num_pieces, m), EOS_ID)
  initial = np.asarray(decoding.initial_decoder_inputs(
      jnp.asarray((tgt != PAD_ID).sum(-1)), T, "mask", ST))
  return {"encoder_input_tokens": src, "decoder_target_tokens": tgt,
          "decoder_input_tokens": initial,
          "decoder_loss_weights": (tgt != PAD_ID).astype(np.float32)}


def _init(model, batch):
  shapes = {k: v.shape for k, v in batch.items() if k != "decoder_loss_weights"}
  return nn.meta.unbox(model.get_initial_variables(jax.random.PRNGKey(0), shapes))["params"]


def _train(model, batches, params=None, learning_rate=3e-3):
  """Adam over `batches` (a list, one step each); returns (params, metrics of every step)."""
  params = _init(model, batches[0]) if params is None else params
  tx = optax.adam(learning_rate)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, batch, rng):
    (_, metrics), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(params, batch, rng)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, metrics

  history = []
  for i, batch in enumerate(batches):
    params, opt_state, metrics = step(params, opt_state, batch, jax.random.PRNGKey(i))
    history.append(jax.device_get(metrics))
  return params, history


def _length_accuracy(model, params, batch) -> float:
  return float(jax.jit(model.loss_fn)(params, batch, None)[1]["length_accuracy"])


def test_the_offset_predictor_learns_a_length_rule_that_the_classifier_cannot():
  rs = np.random.RandomState(0)
  train = [_length_rule_batch(rs, 32) for _ in range(150)]
  held_out = _length_rule_batch(rs, 256)
  accuracy = {}
  for predictor in (length.Offset(), length.Classifier()):
    model = _model(length_predictor=predictor, loss=losses.LossSettings(length_loss_weight=5.0))
    params = model.initialize_from_data(_init(model, train[0]), train[:8])
    params, _ = _train(model, train, params)
    accuracy[predictor.name] = _length_accuracy(model, params, held_out)
  assert accuracy["offset"] >= 0.8, accuracy
  assert accuracy["classifier"] <= accuracy["offset"] - 0.3, accuracy


def test_offset_scores_put_each_offset_at_source_length_plus_offset():
  model = _model(length_predictor=length.Offset(max_offset=2))
  logits = jnp.asarray([[0.0, 1.0, 5.0, 2.0, 3.0]])  # offsets -2..2; best +0, then +2
  src = jnp.asarray([[7, 8, 9, EOS_ID] + [PAD_ID] * 4])  # 4 tokens
  scores = model._length_scores(logits, src)  # pylint: disable=protected-access
  assert scores.shape == (1, ST.max_target_length + 1)
  np.testing.assert_allclose(scores[0, 2:7], logits[0])
  assert np.all(np.asarray(scores[0, :2]) <= models.NEG_INF)
  assert np.all(np.asarray(scores[0, 7:]) <= models.NEG_INF)
  lengths, _ = decoding.length_candidates(
      scores, decoding.RefinementConfig(top_k_lengths=2), T)
  assert lengths.tolist() == [[4, 6]]


def test_the_length_prior_is_fitted_to_the_data():
  rs = np.random.RandomState(1)
  batches = [_length_rule_batch(rs, 64) for _ in range(4)]
  source = np.concatenate([(b["encoder_input_tokens"] != 0).sum(-1) for b in batches])
  gold = np.concatenate([(b["decoder_target_tokens"] != 0).sum(-1) for b in batches])
  offset = _model(length_predictor=length.Offset())
  params = offset.initialize_from_data(_init(offset, batches[0]), batches)
  most_frequent = np.bincount(gold - source + offset.length_predictor.max_offset).argmax()
  assert int(np.argmax(params["length_head"]["bias"])) == most_frequent
  affine = _model(length_predictor=length.Affine())
  params = affine.initialize_from_data(_init(affine, batches[0]), batches)
  scale, bias = float(params["length_head"]["scale"]), float(params["length_head"]["bias"])
  assert scale == pytest.approx(np.polyfit(source, gold, 1)[0], rel=1e-4)
  assert np.mean(np.abs(scale * source + bias - gold)) < 0.6


@pytest.mark.slow
def test_the_model_fills_the_datas_mask_marks_with_its_own_initial_inputs():
  """The data marks noised positions [MASK]; stage 1 starts them from what decoding starts from
  (the scheme's initial tokens at the gold length), and keeps every other input."""
  batch = _length_rule_batch(np.random.RandomState(2), 8)
  targets = batch["decoder_target_tokens"]
  marked = np.arange(T)[None, :] % 3 == 0
  inputs = np.where(marked & (targets > EOS_ID), ST.mask_id, targets)
  batch = dict(batch, decoder_input_tokens=inputs)
  lengths = jnp.asarray((targets != PAD_ID).sum(-1))
  for scheme in ("mask", "mask_range", "random"):
    model = _model(decoder_input_scheme=scheme)
    _, [stage] = model.unrolled_stages(_init(model, batch), batch, None)
    seen = np.asarray(stage.decoder_input_tokens)
    np.testing.assert_array_equal(seen[inputs != ST.mask_id], inputs[inputs != ST.mask_id])
    if scheme != "random":
      initial = np.asarray(decoding.initial_decoder_inputs(lengths, T, scheme, ST))
      np.testing.assert_array_equal(seen[inputs == ST.mask_id], initial[inputs == ST.mask_id])
    else:
      assert ST.is_real_piece(seen[inputs == ST.mask_id]).all()
      assert (seen[inputs == ST.mask_id] >= ST.first_real_piece).all()


def test_glance_reveals_gold_tokens_in_proportion_to_the_errors():
  targets = jnp.asarray([[5, 6, 7, 8, 9, 10, 11, 12, EOS_ID, 0]] * 2)
  initial = decoding.initial_decoder_inputs(jnp.asarray([9, 9]), 10, "mask", ST)
  predictions = targets.at[0].set(jnp.where(jnp.arange(10) < 8, 4, targets[0]))  # 8 wrong, 0
  inputs, revealed = decoding.glance(targets, predictions, initial, 0.5, jax.random.PRNGKey(0),
                                     ST)
  assert revealed[0].sum() == 4 and revealed[1].sum() == 0
  assert not np.any(np.asarray(revealed)[:, 8:])  # Never EOS or PAD.
  np.testing.assert_array_equal(np.where(revealed, targets, initial), inputs)


def test_glancing_reveals_less_as_the_model_learns():
  rs = np.random.RandomState(3)
  batch = _length_rule_batch(rs, 16)
  batch["decoder_target_tokens"] = batch["encoder_input_tokens"]  # A copy task: learnable.
  model = _model(length_predictor=length.Offset(),
                 training=models.TrainingRecipe(glancing_ratio=0.5))
  _, history = _train(model, [batch] * 200, learning_rate=1e-2)
  revealed = [float(m["glancing_revealed"]) for m in history]
  assert np.mean(revealed[:10]) > 0.3  # Nearly every first-pass token wrong: half revealed.
  assert np.mean(revealed[-10:]) < 0.5 * np.mean(revealed[:10])


def test_glancing_trains_one_stage():
  with pytest.raises(ValueError, match="glancing"):
    models.TrainingRecipe(glancing_ratio=0.5, num_train_stages=2)
