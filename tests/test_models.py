"""AR and PaDIR models: overfitting, every PaDIR option through a jitted train step, multi-stage
training without the reference's mistakes 1-3, predict and score, the gin model files."""
import dataclasses
import pathlib

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from padir import decoding
from padir import length
from padir import models
from padir import network
from padir.special_tokens import EOS_ID, PAD_ID, SpecialTokens

ST = SpecialTokens.create(num_pieces=24, max_target_length=8)
B, S, T = 4, 6, 8
GIN_MODELS = pathlib.Path(__file__).resolve().parents[1] / "gin" / "models"


def _network(dropout_rate=0.0):
  return network.Transformer(network.get_config(
      "test", num_encoder_layers=1, num_decoder_layers=1, emb_dim=32, num_heads=2, head_dim=16,
      mlp_dim=64, dropout_rate=dropout_rate))


def _padir(num_train_stages=1, dropout_rate=0.0, length_predictor=length.Classifier(),
           special_tokens=ST, **scheme):
  """A PaDIR model of the test network; `scheme`: `decoding.RefinementScheme`'s fields."""
  return models.PadirModel(_network(dropout_rate), special_tokens=special_tokens,
                           length_predictor=length_predictor,
                           scheme=decoding.RefinementScheme(**scheme),
                           training=models.TrainingRecipe(num_train_stages=num_train_stages))


def _data():
  """4 examples: targets are the reversed source pieces + EOS (lengths 3..6 with EOS)."""
  rs = np.random.RandomState(0)
  src = np.zeros((B, S), np.int32)
  tgt = np.zeros((B, T), np.int32)
  for b, n in enumerate([2, 3, 4, 5]):
    pieces = rs.randint(4, ST.num_pieces, n)
    src[b, :n + 1] = np.append(pieces, EOS_ID)
    tgt[b, :n + 1] = np.append(pieces[::-1], EOS_ID)
  return src, tgt


SRC, TGT = _data()


def _init(model):
  variables = model.get_initial_variables(
      jax.random.PRNGKey(0), {"encoder_input_tokens": (B, S), "decoder_input_tokens": (B, T)})
  return nn.meta.unbox(variables)["params"]


def _padir_batch(scheme, noise=0.5, seed=1):
  """A PaDIR batch as the data pipeline makes it: a fraction of the real target positions
  replaced by the scheme's initial tokens; stage-1 loss on those positions plus EOS."""
  rs = np.random.RandomState(seed)
  lengths = jnp.asarray((TGT != PAD_ID).sum(-1))
  initial = np.asarray(decoding.initial_decoder_inputs(lengths, T, scheme, ST,
                                                       jax.random.PRNGKey(seed)))
  noised = (TGT > EOS_ID) & (rs.rand(B, T) < noise)
  return {"encoder_input_tokens": SRC, "decoder_target_tokens": TGT,
          "decoder_input_tokens": np.where(noised, initial, TGT).astype(np.int32),
          "decoder_loss_weights": (noised | (TGT == EOS_ID)).astype(np.float32)}


def _ar_batch():
  return {"encoder_input_tokens": SRC, "decoder_target_tokens": TGT,
          "decoder_input_tokens": np.asarray(models.shift_right(TGT, ST.bos_id)),
          "decoder_loss_weights": (TGT > 0).astype(np.float32)}


def _fit(model, batch, steps, learning_rate=1e-2):
  """A plain optax loop; returns (params, first loss, last loss)."""
  params = _init(model)
  tx = optax.adam(learning_rate)

  @jax.jit
  def step(params, opt_state, rng):
    (loss, _), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(params, batch, rng)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  opt_state = tx.init(params)
  losses = []
  for i in range(steps):
    params, opt_state, loss = step(params, opt_state, jax.random.PRNGKey(i))
    losses.append(float(loss))
  return params, losses[0], losses[-1]


# ------------------------------------------------------------------------------------------------
# AR.


@pytest.fixture(scope="module")
def trained_ar():
  model = models.ARModel(_network(), special_tokens=ST)
  params, first, last = _fit(model, _ar_batch(), steps=60)
  return model, params, first, last


def test_ar_overfits_a_few_examples(trained_ar):
  _, _, first, last = trained_ar
  assert first > 2.5 and last < 0.05, (first, last)


def test_ar_predict_returns_the_memorised_targets(trained_ar):
  model, params, _, _ = trained_ar
  tokens, aux = jax.jit(model.predict_batch_with_aux)(params, {"encoder_input_tokens": SRC,
                                                               "decoder_input_tokens": TGT})
  assert tokens.shape == (B, T) and aux["scores"].shape == (B,)
  np.testing.assert_array_equal(tokens, TGT)


def test_ar_greedy_and_sampling(trained_ar):
  model, params, _, _ = trained_ar
  batch = {"encoder_input_tokens": SRC, "decoder_input_tokens": TGT}

  @jax.jit
  def predict(params):
    greedy = model.predict_batch_with_aux(params, batch, decoder_params={"decode_method": "greedy"})
    samples = model.predict_batch_with_aux(
        params, batch, jax.random.PRNGKey(1), return_all_decodes=True,
        decoder_params={"decode_method": "sample", "num_decodes": 2, "temperature": 0.5})
    rescored = model.score_batch(params, {"encoder_input_tokens": SRC,
                                          "decoder_target_tokens": greedy[0]})
    return greedy, samples, rescored

  (greedy, greedy_aux), (samples, aux), rescored = predict(params)
  np.testing.assert_array_equal(greedy, TGT)
  # Cached decoding scores what uncached teacher forcing scores.
  np.testing.assert_allclose(greedy_aux["scores"], rescored, rtol=1e-4, atol=1e-5)
  assert samples.shape == (B, 2, T) and aux["scores"].shape == (B, 2)
  assert np.all(np.diff(np.asarray(aux["scores"]), axis=1) <= 0), "best first"
  with pytest.raises(ValueError, match="beam_width"):
    model.predict_batch_with_aux(params, batch, decoder_params={"beam_width": 3})


def test_ar_score_batch_prefers_the_gold_target(trained_ar):
  model, params, _, _ = trained_ar
  wrong = np.where(TGT > EOS_ID, (TGT - 4 + 1) % (ST.num_pieces - 4) + 4, TGT)
  scores = jax.jit(model.score_batch)(params, {
      "encoder_input_tokens": np.concatenate([SRC, SRC]),
      "decoder_target_tokens": np.concatenate([TGT, wrong])})
  assert scores.shape == (2 * B,)
  assert np.all(np.asarray(scores[:B]) > np.asarray(scores[B:]))
  assert np.all(np.asarray(scores[:B]) > -1.0)


# ------------------------------------------------------------------------------------------------
# PaDIR: overfitting, predict, score.


@pytest.fixture(scope="module")
def trained_padir():
  # [MASK_i] inputs: T5 has no absolute positions, so identical [MASK]s would leave positions
  # indistinguishable but for their distance to EOS.
  model = _padir(decoder_input_scheme="mask_range")
  # Fully masked inputs (the scheme's initial tokens) and gold inputs (what a second iteration
  # sees), loss on every position.
  masked, gold = _padir_batch("mask_range", noise=1.0), _padir_batch("mask_range", noise=0.0)
  batch = {name: np.concatenate([masked[name], gold[name]]) for name in
           ("encoder_input_tokens", "decoder_target_tokens", "decoder_input_tokens")}
  params, first, last = _fit(model, batch, steps=40)
  return model, params, first, last


def test_padir_overfits_a_few_examples(trained_padir):
  _, _, first, last = trained_padir
  assert first > 4.0 and last < 0.05, (first, last)


def test_padir_predict_returns_the_memorised_targets(trained_padir):
  model, params, _, _ = trained_padir
  tokens, aux = jax.jit(lambda p: model.predict_batch_with_aux(
      p, {"encoder_input_tokens": SRC, "decoder_input_tokens": TGT},
      decoder_params=decoding.PadirDecodeConfig(num_decode_iterations=2)))(params)
  assert tokens.shape == (B, T)
  for name in ("scores", "lengths", "iterations"):
    assert aux[name].shape == (B,), name
  np.testing.assert_array_equal(aux["lengths"], (TGT != PAD_ID).sum(-1))
  np.testing.assert_array_equal(tokens, TGT)
  assert np.all((np.asarray(aux["iterations"]) >= 1) & (np.asarray(aux["iterations"]) <= 2))


def test_padir_masked_only_projection_decodes_as_the_full_one(trained_padir):
  """Mask-predict through the network: projecting only the masked positions (and EOS) to the
  vocabulary gives the tokens and scores of projecting every position."""
  model, params, _, _ = trained_padir
  batch = {"encoder_input_tokens": SRC, "decoder_input_tokens": TGT}
  mask_predict = {"rejecter": "linear", "remasking_scheme": "initial", "keep_visible": True,
                  "num_decode_iterations": 4, "early_exit": False, "top_k_lengths": 2}
  outputs = [jax.jit(lambda p, masked=masked: model.predict_batch_with_aux(
      p, batch, decoder_params={**mask_predict, "masked_logits_only": masked}))(params)
             for masked in (False, True)]
  (full, full_aux), (masked, masked_aux) = outputs
  np.testing.assert_array_equal(masked, full)
  # Matmuls of other shapes round differently: equal to float32 accuracy.
  np.testing.assert_allclose(masked_aux["candidate_scores"], full_aux["candidate_scores"],
                             rtol=1e-4, atol=1e-6)


def test_padir_pruned_candidates_are_refined_on_their_own_encoder_rows(trained_padir):
  """Three length candidates per example, the best after the first pass refined alone: the
  network gets the kept candidates' encoder rows (`rows`), so the kept candidate comes out as
  when every candidate is refined."""
  model, params, _, _ = trained_padir
  batch = {"encoder_input_tokens": SRC, "decoder_input_tokens": TGT}
  options = {"top_k_lengths": 3, "num_decode_iterations": 3, "early_exit": False,
             "return_all_candidates": True}
  (full, full_aux), (pruned, pruned_aux) = [jax.jit(lambda p, keep=keep: (
      model.predict_batch_with_aux(p, batch, decoder_params={
          **options, "keep_candidates_after_first_pass": keep})))(params) for keep in (None, 1)]
  kept = np.asarray(pruned_aux["candidate_kept"])
  assert kept.shape == (B, 3) and np.all(kept.sum(-1) == 1)
  np.testing.assert_array_equal(np.asarray(pruned_aux["candidates"])[kept],
                                np.asarray(full_aux["candidates"])[kept])
  np.testing.assert_array_equal(pruned, TGT)


def test_padir_rescoring_with_the_ar_teacher(trained_padir, trained_ar):
  """Three length candidates per example; the AR teacher (which memorised the same targets)
  ranks them and gets the raw source (no [LENGTH]) of each candidate's example."""
  model, params, _, _ = trained_padir
  teacher, teacher_params, _, _ = trained_ar
  sources = []

  def rescore_fn(encoder_input_tokens, tokens):
    sources.append(encoder_input_tokens)
    return teacher.make_rescore_fn(teacher_params)(encoder_input_tokens, tokens)

  tokens, aux = jax.jit(lambda p: model.predict_batch_with_aux(
      p, {"encoder_input_tokens": SRC, "decoder_input_tokens": TGT},
      decoder_params={"top_k_lengths": 3}, rescore_fn=rescore_fn))(params)
  assert sources[0].shape == (B * 3, S)
  assert aux["candidate_scores"].shape == aux["model_scores"].shape == (B, 3)
  np.testing.assert_array_equal(tokens, TGT)


def test_padir_score_batch_prefers_the_gold_target(trained_padir):
  model, params, _, _ = trained_padir
  wrong = np.where(TGT > EOS_ID, (TGT - 4 + 1) % (ST.num_pieces - 4) + 4, TGT)
  scores = jax.jit(model.score_batch)(params, {
      "encoder_input_tokens": np.concatenate([SRC, SRC]),
      "decoder_target_tokens": np.concatenate([TGT, wrong])})
  assert scores.shape == (2 * B,)
  assert np.all(np.asarray(scores[:B]) > np.asarray(scores[B:]))
  assert np.all(np.isfinite(np.asarray(scores)))


def test_classifier_prepends_the_length_token_and_the_network_follows_the_model():
  model = models.PadirModel(_network(), special_tokens=ST)
  tokens = model._encoder_inputs(SRC)  # pylint: disable=protected-access
  assert tokens.shape == (B, S + 1)
  assert np.all(np.asarray(tokens[:, 0]) == ST.length_id)
  config = model.module.config
  assert (config.decoder_causal, config.length_head, config.rejecter_head) == (
      False, "classifier", False)
  assert (config.vocab_size, config.max_target_length) == (ST.vocab_size, ST.max_target_length)
  ar = models.ARModel(_network(), special_tokens=ST)
  assert ar.module.config.decoder_causal and ar.module.config.length_head is None
  assert np.array_equal(ar._encoder_inputs(SRC), SRC)  # pylint: disable=protected-access


def test_bad_options_are_named():
  with pytest.raises(ValueError, match="length_predictor"):
    models.PadirModel(_network(), special_tokens=ST, length_predictor="psychic")
  with pytest.raises(ValueError, match="rejecter"):
    _padir(rejecter="bouncer")
  with pytest.raises(ValueError, match="loss_normalizing_factor"):
    models.ARModel(_network(), special_tokens=ST, loss_normalizing_factor="per_parsec")
  with pytest.raises(ValueError, match="special_tokens"):
    models.ARModel(_network())


# ------------------------------------------------------------------------------------------------
# PaDIR: every option through a jitted train step.

# Between them: every length predictor, rejecter, decoder input scheme and remasking scheme.
SCHEME_CASES = [
    (length.Affine(), dict(rejecter="stutter", decoder_input_scheme="mask",
                           remasking_scheme="initial")),
    (length.Fertility(), dict(rejecter="linear", decoder_input_scheme="mask_range",
                              remasking_scheme="logits_sum")),
    (length.Oracle(), dict(rejecter="constant_k", rejecter_k=2, decoder_input_scheme="random",
                           remasking_scheme="previous", stutter_remasking=True)),
    (length.Classifier(), dict(rejecter="constant_fraction", rejecter_fraction=0.5,
                               decoder_input_scheme="mask", remasking_scheme="previous")),
]


@pytest.mark.slow
@pytest.mark.parametrize("predictor, scheme", SCHEME_CASES, ids=[
    "-".join([p.name, *map(str, s.values())]) for p, s in SCHEME_CASES])
def test_every_option_runs_through_a_jitted_train_step(predictor, scheme):
  model = _padir(num_train_stages=2, length_predictor=predictor, **scheme)
  params = _init(model)
  batch = _padir_batch(scheme["decoder_input_scheme"])
  # Sources without EOS: one token shorter than their targets, so that the affine and fertility
  # predictors (which start at "target length = source length") have something to learn.
  batch["encoder_input_tokens"] = np.where(SRC == EOS_ID, PAD_ID, SRC)
  (loss, metrics), grads = jax.jit(jax.value_and_grad(model.loss_fn, has_aux=True))(
      params, batch, jax.random.PRNGKey(3))
  assert np.isfinite(float(loss))
  assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))
  assert {"stage_1/loss", "stage_2/loss", "stage_1/accuracy", "stage_2/accuracy"} <= set(metrics)
  if predictor.name == "oracle":
    assert "length_loss" not in metrics
  else:
    assert 0.0 <= float(metrics["length_accuracy"]) <= 1.0 and "length_loss" in metrics
  if predictor.name in ("affine", "fertility"):  # Their heads get gradients.
    head = grads["length_head"]
    assert any(np.any(np.asarray(g) != 0) for g in jax.tree_util.tree_leaves(head))


MULTI_STAGE = dict(num_train_stages=3, rejecter="learned", decoder_input_scheme="random",
                   remasking_scheme="logits_sum")


def test_three_stages_with_the_learned_rejecter_report_per_stage_metrics():
  model = _padir(dropout_rate=0.1, **MULTI_STAGE)
  params = _init(model)
  (loss, metrics), grads = jax.jit(jax.value_and_grad(model.loss_fn, has_aux=True))(
      params, _padir_batch("random"), jax.random.PRNGKey(3))
  expected = {f"stage_{i}/{m}" for i in (1, 2, 3) for m in ("loss", "accuracy")} | {
      "loss", "cross_ent_loss", "z_loss", "accuracy", "length_loss", "length_accuracy",
      "rejecter_loss", "rejecter_accuracy"}
  assert expected <= set(metrics)
  assert all(np.isfinite(float(v)) for v in metrics.values())
  stage_sum = sum(float(metrics[f"stage_{i}/loss"]) for i in (1, 2, 3))
  assert float(metrics["cross_ent_loss"]) == pytest.approx(stage_sum, rel=1e-5)
  assert float(loss) == pytest.approx(
      stage_sum + float(metrics["length_loss"]) + float(metrics["rejecter_loss"]), rel=1e-5)
  assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))
  # The rejecter head is trained (on stop-gradient states).
  assert np.any(np.asarray(grads["rejecter_head"]["kernel"]) != 0)


# ------------------------------------------------------------------------------------------------
# The reference's training mistakes 1-3 (DESIGN.md).


@pytest.mark.slow
@pytest.mark.parametrize("remasking_scheme", ["previous", "initial"])
def test_stage_two_input_is_what_inference_would_have(remasking_scheme):
  """Mistakes 1 and 2: PAD at padding; a rejected stage-1 prediction is replaced by the
  scheme's initial token ([MASK]), never by a gold token of the partially gold input."""
  model = _padir(num_train_stages=2, decoder_input_scheme="mask", rejecter="constant_fraction",
                 rejecter_fraction=0.6, remasking_scheme=remasking_scheme)
  batch = _padir_batch("mask", noise=0.3)
  _, stages = jax.jit(model.unrolled_stages)(_init(model), batch, None)
  first, second = stages
  inputs1, inputs2 = np.asarray(first.decoder_input_tokens), np.asarray(second.decoder_input_tokens)
  predictions, rejected = np.asarray(first.predictions), np.asarray(first.rejected)
  np.testing.assert_array_equal(inputs1, batch["decoder_input_tokens"])
  # Mistake 1: padding stays padding; EOS stays where the gold length puts it.
  np.testing.assert_array_equal(inputs2 == PAD_ID, TGT == PAD_ID)
  np.testing.assert_array_equal(inputs2 == EOS_ID, TGT == EOS_ID)
  # Mistake 2: rejected positions hold [MASK]; the others hold stage 1's predictions.
  wrong_and_rejected = rejected & (predictions != TGT)
  gold_in_input = inputs1 == TGT
  assert np.any(wrong_and_rejected & gold_in_input), "the case the reference gets wrong"
  np.testing.assert_array_equal(inputs2[rejected], ST.mask_id)
  np.testing.assert_array_equal(inputs2[~rejected], predictions[~rejected])
  assert not np.any((inputs2 == TGT) & wrong_and_rejected)
  assert not np.any(np.asarray(stages[1].rejected)), "the last stage rejects nothing"


def test_encoder_runs_once_per_step_and_every_stage_has_its_own_dropout_key():
  """Mistake 3, black box: count the network's method calls while tracing a 3-stage step;
  white box: the dropout keys the model hands the encoder and each stage are distinct."""
  model = _padir(dropout_rate=0.1, **MULTI_STAGE)
  params = _init(model)
  batch = _padir_batch("random")
  calls = []

  def count(next_fun, args, kwargs, context):
    if isinstance(context.module, network.Transformer):
      calls.append(context.method_name)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(count):
    jax.eval_shape(jax.value_and_grad(model.loss_fn, has_aux=True), params, batch,
                   jax.random.PRNGKey(0))
  assert calls.count("encode") == 1
  assert calls.count("decode") == 3

  keys = {}
  original = model._apply  # pylint: disable=protected-access

  def spy(params, method, *args, dropout_rng=None, **kwargs):
    if dropout_rng is not None:
      keys.setdefault(method.__name__, []).append(dropout_rng)
    return original(params, method, *args, dropout_rng=dropout_rng, **kwargs)

  model._apply = spy  # pylint: disable=protected-access

  def used_keys(params, batch, rng):
    keys.clear()
    model.loss_fn(params, batch, rng)
    return [jax.random.key_data(k) if jnp.issubdtype(k.dtype, jax.dtypes.prng_key) else k
            for k in keys["encode"] + keys["decode"]]

  used = [tuple(np.asarray(k).ravel()) for k in
          jax.jit(used_keys)(params, batch, jax.random.PRNGKey(0))]
  assert len(used) == 4 and len(set(used)) == 4


# ------------------------------------------------------------------------------------------------
# Gin model files.


def _stub_vocabulary():
  return type("StubVocabulary", (), {"special_tokens": ST})()


def _model(model=gin.REQUIRED):
  return model


gin.external_configurable(_stub_vocabulary, name="test_models_stub_vocabulary")
_built = gin.external_configurable(_model, name="test_models_built")


@pytest.mark.parametrize("name", ["ar_tiny", "ar_small", "ar_base", "padir_tiny", "padir_small",
                                  "padir_base", "ctc_tiny"])
def test_gin_model_files_build_their_model(name):
  gin.clear_config()
  try:
    # The size files `include` the shared ones, found on the gin/ search path.
    gin.add_config_file_search_path(str(GIN_MODELS.parent))
    gin.parse_config_files_and_bindings(
        [str(GIN_MODELS / f"{name}.gin")],
        ["VOCABULARY = @test_models_stub_vocabulary()", "test_models_built.model = %MODEL"])
    model = _built()  # pylint: disable=no-value-for-parameter
  finally:
    gin.clear_config()
  kind, size = name.split("_")
  assert isinstance(model, models.ARModel if kind == "ar" else models.PadirModel)
  expected = dataclasses.replace(network.get_config(size), vocab_size=ST.vocab_size,
                                 max_target_length=ST.max_target_length)
  got = model.module.config
  assert (got.emb_dim, got.num_encoder_layers, got.vocab_size, got.dropout_rate) == (
      expected.emb_dim, expected.num_encoder_layers, ST.vocab_size, 0.1)
  assert got.decoder_causal == (kind == "ar")
  assert callable(model.optimizer_def.update)
  if kind == "padir":
    assert model.scheme.decoder_input_scheme == "random"
    assert model.scheme.remasking_scheme == "previous"
    assert model.training == models.TrainingRecipe()
    assert isinstance(model.length_predictor, length.Classifier)


# ------------------------------------------------------------------------------------------------
# T5 vocabulary layout: decoder start 0 (attended), [MASK_i] = sentinels.


def test_t5_layout_ar_and_padir_learn_and_decode():
  st = SpecialTokens.t5(num_pieces=ST.num_pieces, max_target_length=T, extra_ids=10)
  assert st.bos_id == PAD_ID and st.vocab_size == 128
  ar = models.ARModel(_network(), special_tokens=st)
  ar_batch = {"encoder_input_tokens": SRC, "decoder_target_tokens": TGT,
              "decoder_input_tokens": np.asarray(models.shift_right(TGT, st.bos_id))}
  assert np.all(ar_batch["decoder_input_tokens"][:, 0] == 0)
  params, _, last = _fit(ar, ar_batch, steps=60)
  assert last < 0.05, last
  tokens, _ = jax.jit(lambda p: ar.predict_batch_with_aux(
      p, ar_batch, decoder_params={"decode_method": "greedy"}))(params)
  np.testing.assert_array_equal(tokens, TGT)

  padir = _padir(special_tokens=st, decoder_input_scheme="mask_range")
  initial = np.asarray(decoding.initial_decoder_inputs(
      jnp.asarray((TGT != PAD_ID).sum(-1)), T, "mask_range", st))
  assert initial[0, 0] == st.num_pieces + st.extra_ids - 1  # <extra_id_0>
  gold = np.where(TGT > EOS_ID, TGT, initial)
  batch = {"encoder_input_tokens": np.concatenate([SRC, SRC]),
           "decoder_target_tokens": np.concatenate([TGT, TGT]),
           "decoder_input_tokens": np.concatenate([initial, gold]).astype(np.int32)}
  params, _, last = _fit(padir, batch, steps=40)
  assert last < 0.05, last
  tokens, _ = jax.jit(padir.predict_batch_with_aux)(params, {"encoder_input_tokens": SRC,
                                                             "decoder_input_tokens": TGT})
  np.testing.assert_array_equal(tokens, TGT)


# ------------------------------------------------------------------------------------------------
# Decoding methods: one function with the decode_fn contract, bound in gin.


def _argmax_then_eos(prompt, cache, tokens_to_logits, *, num_decodes, max_decode_len, rng,
                     eos_id, bos_id, pad_id):
  """A toy AR method (the AR decode_fn contract): one cached step, its argmax, then EOS."""
  del rng
  rows = prompt.shape[0] * num_decodes  # num_decodes = 1 here: the cache is not repeated.
  logits, _ = tokens_to_logits(jnp.full((rows, 1), bos_id, jnp.int32), cache)
  first = jnp.argmax(logits, axis=-1).astype(jnp.int32)
  tokens = jnp.full((rows, max_decode_len), pad_id, jnp.int32)
  tokens = tokens.at[:, 0].set(first).at[:, 1].set(eos_id)
  scores = jnp.take_along_axis(jax.nn.log_softmax(logits), first[:, None], axis=-1)
  return tokens.reshape(prompt.shape[0], num_decodes, -1), scores.reshape(-1, num_decodes)


def _one_pass(logits_fn, length_predictions, rng, config, special_tokens, max_decode_len,
              rescore_fn=None):
  """A toy PaDIR method (`padir_decode`'s contract): one pass at the most likely length."""
  del rng, rescore_fn
  lengths, _ = decoding.length_candidates(length_predictions, config, max_decode_len)
  initial = decoding.initial_decoder_inputs(lengths[:, 0], max_decode_len,
                                            config.scheme.decoder_input_scheme, special_tokens)
  logits, _ = logits_fn(initial)
  tokens, _ = decoding.choose_tokens(logits, None, config, special_tokens, initial)
  return tokens, {"lengths": lengths[:, 0]}


gin.external_configurable(_argmax_then_eos, name="test_models_argmax_then_eos")
gin.external_configurable(_one_pass, name="test_models_one_pass")


def _built_with(bindings, make):
  gin.clear_config()
  try:
    gin.parse_config(bindings)
    return make()
  finally:
    gin.clear_config()


def test_a_decoding_method_bound_in_gin_is_what_predict_runs(trained_ar, trained_padir):
  batch = {"encoder_input_tokens": SRC, "decoder_input_tokens": TGT}
  _, ar_params, _, _ = trained_ar
  ar = _built_with(["ARModel.decode_fn = @test_models_argmax_then_eos"],
                   lambda: models.ARModel(_network(), special_tokens=ST))
  tokens, aux = jax.jit(ar.predict_batch_with_aux)(ar_params, batch)
  np.testing.assert_array_equal(tokens[:, 0], TGT[:, 0])  # The memorised first pieces.
  assert np.all(np.asarray(tokens[:, 1]) == EOS_ID) and np.all(np.asarray(tokens[:, 2:]) == 0)
  assert aux["scores"].shape == (B,)
  with pytest.raises(ValueError, match="bogus"):  # Not an option of the bound method.
    ar.check_decoder_params({"bogus": 1})

  padir_model, padir_params, _, _ = trained_padir
  padir = _built_with(["PadirModel.decode_fn = @test_models_one_pass"],
                      lambda: _padir(decoder_input_scheme="mask_range"))
  tokens, aux = jax.jit(padir.predict_batch_with_aux)(padir_params, batch)
  reference, _ = jax.jit(lambda p: padir_model.predict_batch_with_aux(
      p, batch, decoder_params={"num_decode_iterations": 1}))(padir_params)
  assert set(aux) == {"lengths"}
  np.testing.assert_array_equal(tokens, reference)


# ------------------------------------------------------------------------------------------------
# One refinement step (`decoding.refinement_step`) in training and in decoding.


@pytest.mark.parametrize("options", [
    dict(rejecter="constant_fraction", rejecter_fraction=0.5, remasking_scheme="initial",
         keep_visible=True),
    dict(rejecter="linear", remasking_scheme="previous", stutter_remasking=True),
    dict(rejecter="constant_k", rejecter_k=2, remasking_scheme="logits_sum"),
], ids=["constant_fraction", "linear", "constant_k"])
def test_a_training_stage_and_a_decoding_iteration_choose_the_same_tokens(options):
  """The unrolled training stages and `refine` run the same step: from the same initial canvas
  (the gold lengths, [MASK]) they predict the same tokens at every stage / iteration."""
  scheme = decoding.RefinementScheme(decoder_input_scheme="mask", **options)
  model = models.PadirModel(_network(), special_tokens=ST, scheme=scheme,
                            training=models.TrainingRecipe(num_train_stages=3))
  params = _init(model)
  initial = decoding.initial_decoder_inputs(jnp.asarray((TGT != PAD_ID).sum(-1)), T, "mask", ST)
  batch = {"encoder_input_tokens": SRC, "decoder_target_tokens": TGT,
           "decoder_input_tokens": np.asarray(initial)}
  _, stages = jax.jit(model.unrolled_stages)(params, batch, None)

  def decode(params):
    encoder_tokens = model._encoder_inputs(SRC)  # pylint: disable=protected-access
    encoded = model._encode(params, encoder_tokens)  # pylint: disable=protected-access
    cross_kv = model._cross_kv(params, encoded)  # pylint: disable=protected-access

    def logits_fn(tokens, positions=None):
      return model._decode_pass(  # pylint: disable=protected-access
          params, encoder_tokens, cross_kv, tokens, positions=positions)

    config = decoding.RefinementConfig(scheme, num_decode_iterations=3, early_exit=False,
                                       return_history=True)
    return decoding.refine(logits_fn, initial, jax.random.PRNGKey(0), config, ST)[2]["history"]

  history = np.asarray(jax.jit(decode)(params))
  for i, stage in enumerate(stages):
    np.testing.assert_array_equal(stage.predictions, history[i], err_msg=f"stage {i + 1}")
