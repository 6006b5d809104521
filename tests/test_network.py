"""Tests of the T5.1.1 network (padir/layers.py, padir/network.py) on the tiny `test` preset."""
import functools

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from padir import layers
from padir import network
from padir.network import Transformer

AR = network.get_config("test")
PADIR = network.get_config("test", decoder_causal=False)
# One initialisation, with every head, serves every config of the same dimensions: `apply`
# ignores parameters a config does not use.
ALL_HEADS = network.get_config("test", length_head="classifier", rejecter_head=True)

ENC = np.array([[7, 8, 9, 10, 11, 0], [12, 13, 14, 0, 0, 0]], np.int32)
DEC = np.array([[3, 20, 21, 22, 23, 0], [3, 24, 25, 0, 0, 0]], np.int32)


def _abstract_params(cfg):
  return jax.eval_shape(Transformer(cfg).init, jax.random.key(0), ENC, DEC)["params"]


@pytest.fixture(scope="module")
def params():
  """Random parameters of the shapes `init` makes, drawn with numpy at T5X-like scales.

  Compiling the initialisers costs ~10 s of CPU at this size; the real `init` runs in
  test_network_sharding.py.
  """
  rng = np.random.default_rng(0)

  def draw(x):
    if x.ndim == 1:  # Norm scales and head biases.
      return (1.0 + 0.1 * rng.standard_normal(x.shape)).astype(np.float32)
    fan_in = 1 if x.shape[0] == ALL_HEADS.vocab_size else x.shape[0]
    return (rng.standard_normal(x.shape) / np.sqrt(fan_in)).astype(np.float32)

  return jax.tree_util.tree_map(draw, nn.unbox(_abstract_params(ALL_HEADS)))


@functools.partial(jax.jit, static_argnames=("cfg",))
def _logits(params, cfg, enc, dec):
  return Transformer(cfg).apply({"params": params}, enc, dec)


@functools.partial(jax.jit, static_argnames=("cfg",))
def _encode(params, cfg, enc):
  return Transformer(cfg).apply({"params": params}, enc, method=Transformer.encode)


@functools.partial(jax.jit, static_argnames=("cfg",))
def _cross_kv(params, cfg, encoded):
  return Transformer(cfg).apply({"params": params}, encoded,
                                method=Transformer.precompute_cross_kv)


@functools.partial(jax.jit, static_argnames=("cfg",))
def _decode(params, cfg, encoded, enc, dec, cross_kv):
  """(logits, hidden); recomputes the cross keys/values when `cross_kv` is None."""
  return Transformer(cfg).apply({"params": params}, encoded, enc, dec, cross_kv=cross_kv,
                                return_hidden=True, method=Transformer.decode)


_bucket = jax.jit(layers.relative_position_bucket, static_argnums=(1, 2, 3))


def _paths(tree):
  return set(flax.traverse_util.flatten_dict(flax.core.unfreeze(tree), sep="/"))


# ------------------------------------------------------------------------------------------------
# Relative position buckets.


def test_relative_position_buckets_bidirectional():
  # 32 buckets, 16 per direction, 8 exact, log-spaced up to 128; keys after the query: +16.
  offsets = [0, -1, -3, -7, -8, -10, -12, -20, -50, -100, -127, -1000, 1, 3, 8, 20, 200]
  expected = [0, 1, 3, 7, 8, 8, 9, 10, 13, 15, 15, 15, 17, 19, 24, 26, 31]
  got = _bucket(np.array(offsets), True, 32, 128)
  np.testing.assert_array_equal(got, expected)


def test_relative_position_buckets_causal():
  # 32 buckets for the past, 16 exact, log-spaced up to 128; every future key is bucket 0.
  offsets = [0, -1, -5, -15, -16, -20, -40, -100, -127, -500, 1, 7, 300]
  expected = [0, 1, 5, 15, 16, 17, 23, 30, 31, 31, 0, 0, 0]
  got = _bucket(np.array(offsets), False, 32, 128)
  np.testing.assert_array_equal(got, expected)


def test_relative_position_bias_reads_rel_embedding_by_bucket():
  module = layers.RelativePositionBiases(num_buckets=8, max_distance=16, num_heads=2)
  table = np.arange(16, dtype=np.float32).reshape(2, 8)
  bias = jax.jit(lambda t: module.apply({"params": {"rel_embedding": t}}, 5, 7, False))(table)
  assert bias.shape == (1, 2, 5, 7) and bias.dtype == jnp.float32
  # Causal, 8 buckets with 4 exact: offsets 0 (and the future), -1, -3, -4 -> 0, 1, 3, 4.
  for q, k, bucket in [(0, 0, 0), (1, 6, 0), (4, 3, 1), (3, 0, 3), (4, 0, 4)]:
    np.testing.assert_array_equal(bias[0, :, q, k], table[:, bucket])


# ------------------------------------------------------------------------------------------------
# Parameter tree.


T5X_NAMES = [
    "token_embedder/embedding",
    "encoder/relpos_bias/rel_embedding",
    "encoder/encoder_norm/scale",
    "decoder/relpos_bias/rel_embedding",
    "decoder/decoder_norm/scale",
    "decoder/logits_dense/kernel",
] + [f"encoder/layers_{i}/{name}" for i in range(2) for name in [
    "attention/query/kernel", "attention/key/kernel", "attention/value/kernel",
    "attention/out/kernel", "pre_attention_layer_norm/scale", "mlp/wi_0/kernel",
    "mlp/wi_1/kernel", "mlp/wo/kernel", "pre_mlp_layer_norm/scale"]
] + [f"decoder/layers_{i}/{attn}/{proj}/kernel" for i in range(2)
     for attn in ["self_attention", "encoder_decoder_attention"]
     for proj in ["query", "key", "value", "out"]
] + [f"decoder/layers_{i}/{name}" for i in range(2) for name in [
    "pre_self_attention_layer_norm/scale", "pre_cross_attention_layer_norm/scale",
    "pre_mlp_layer_norm/scale", "mlp/wi_0/kernel", "mlp/wi_1/kernel", "mlp/wo/kernel"]]


def test_param_tree_has_t5x_names_shapes_and_logical_axes():
  boxed = _abstract_params(AR)
  assert _paths(boxed) == set(T5X_NAMES)
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(boxed), sep="/")
  allowed = {"embed", "mlp", "heads", "kv", "joined_kv", "vocab", "relpos_buckets"}
  for path, leaf in flat.items():
    assert isinstance(leaf, nn.LogicallyPartitioned), path
    assert len(leaf.names) == leaf.value.ndim and set(leaf.names) <= allowed, (path, leaf.names)
    assert leaf.value.dtype == jnp.float32, path
  shapes = {path: leaf.value.shape for path, leaf in flat.items()}
  assert shapes["token_embedder/embedding"] == (256, 32)
  assert shapes["encoder/layers_0/attention/query/kernel"] == (32, 2 * 16)
  assert shapes["decoder/layers_1/self_attention/out/kernel"] == (2 * 16, 32)
  assert shapes["decoder/layers_0/mlp/wi_0/kernel"] == (32, 64)
  assert shapes["decoder/relpos_bias/rel_embedding"] == (2, 32)
  assert shapes["decoder/logits_dense/kernel"] == (32, 256)
  assert flat["decoder/layers_0/mlp/wo/kernel"].names == ("mlp", "embed")
  assert flat["token_embedder/embedding"].names == ("vocab", "embed")
  assert flat["encoder/relpos_bias/rel_embedding"].names == ("heads", "relpos_buckets")


@pytest.mark.parametrize("overrides, added, removed", [
    (dict(length_head="classifier"), {"length_head/kernel", "length_head/bias"}, set()),
    (dict(length_head="affine"), {"length_head/scale", "length_head/bias"}, set()),
    (dict(length_head="fertility"), {"length_head/kernel", "length_head/bias"}, set()),
    (dict(rejecter_head=True), {"rejecter_head/kernel", "rejecter_head/bias"}, set()),
    (dict(logits_via_embedding=True), set(), {"decoder/logits_dense/kernel"}),
])
def test_param_tree_heads_and_tied_logits(overrides, added, removed):
  paths = _paths(_abstract_params(network.get_config("test", **overrides)))
  assert paths == (set(T5X_NAMES) | added) - removed


def test_encoder_and_decoder_depths_are_independent():
  paths = _paths(_abstract_params(network.get_config(
      "test", num_encoder_layers=3, num_decoder_layers=1)))
  assert {p.split("/")[1] for p in paths if p.startswith("encoder/layers_")} == {
      "layers_0", "layers_1", "layers_2"}
  assert {p.split("/")[1] for p in paths if p.startswith("decoder/layers_")} == {"layers_0"}


def test_small_preset_has_t5_1_1_small_parameter_count():
  tokens = np.ones((1, 4), np.int32)
  boxed = jax.eval_shape(Transformer(network.get_config("small")).init, jax.random.key(0),
                         tokens, tokens)
  count = sum(x.size for x in jax.tree_util.tree_leaves(nn.unbox(boxed)))
  assert count == 76_961_152  # T5.1.1 small with its untied 32128-piece output layer.


def test_presets_and_validation():
  base = network.get_config("base")
  assert (base.emb_dim, base.num_heads, base.head_dim, base.mlp_dim) == (768, 12, 64, 2048)
  assert (base.num_encoder_layers, base.num_decoder_layers) == (12, 12)
  small = network.get_config("small", num_decoder_layers=2, vocab_size=1024)
  assert (small.emb_dim, small.num_heads, small.num_encoder_layers) == (512, 6, 8)
  assert (small.num_decoder_layers, small.vocab_size) == (2, 1024)
  tiny, large = network.get_config("tiny"), network.get_config("large")
  assert (tiny.emb_dim, tiny.num_heads, tiny.mlp_dim, tiny.num_encoder_layers) == (256, 4, 1024, 3)
  assert (large.emb_dim, large.num_heads, large.mlp_dim, large.num_decoder_layers) == (
      1024, 16, 2816, 24)
  with pytest.raises(ValueError):
    network.get_config("huge")
  with pytest.raises(ValueError):
    network.get_config("test", dtype="float16")
  with pytest.raises(ValueError):
    network.get_config("test", length_head="oracle")


# ------------------------------------------------------------------------------------------------
# Masks: causality and padding.


def test_causal_decoder_ignores_future_tokens(params):
  changed = DEC.copy()
  changed[0, 3] = 50
  before, after = _logits(params, AR, ENC, DEC), _logits(params, AR, ENC, changed)
  np.testing.assert_allclose(after[0, :3], before[0, :3], atol=1e-6)
  assert np.abs(after[0, 3:5] - before[0, 3:5]).max() > 1e-3
  np.testing.assert_allclose(after[1], before[1], atol=1e-6)


def test_non_causal_decoder_sees_future_tokens(params):
  changed = DEC.copy()
  changed[0, 3] = 50
  before, after = _logits(params, PADIR, ENC, DEC), _logits(params, PADIR, ENC, changed)
  assert np.abs(after[0, :3] - before[0, :3]).max() > 1e-3
  np.testing.assert_allclose(after[1], before[1], atol=1e-6)


@pytest.mark.parametrize("cfg", [AR, PADIR], ids=["causal", "non_causal"])
def test_padding_never_influences_real_positions(params, cfg):
  pad = lambda x: np.pad(x, ((0, 0), (0, 3)))  # Same examples, three more padding positions.
  real_dec, real_enc = DEC != 0, ENC != 0
  np.testing.assert_allclose(
      np.asarray(_encode(params, AR, pad(ENC)))[:, :6][real_enc],
      np.asarray(_encode(params, AR, ENC))[real_enc], atol=1e-5)
  np.testing.assert_allclose(
      np.asarray(_logits(params, cfg, pad(ENC), pad(DEC)))[:, :6][real_dec],
      np.asarray(_logits(params, cfg, ENC, DEC))[real_dec], atol=1e-5)


def test_packed_examples_match_separate_examples(params):
  enc = np.array([[7, 8, 9, 12, 13, 0]], np.int32)
  dec = np.array([[3, 20, 21, 3, 24, 0]], np.int32)
  enc_seg = dec_seg = np.array([[1, 1, 1, 2, 2, 0]], np.int32)
  packed = jax.jit(lambda p: Transformer(AR).apply(
      {"params": p}, enc, dec, encoder_segment_ids=enc_seg, decoder_segment_ids=dec_seg))(params)
  separate = _logits(params, AR, np.array([[7, 8, 9, 0, 0, 0], [12, 13, 0, 0, 0, 0]], np.int32),
                     np.array([[3, 20, 21, 0, 0, 0], [3, 24, 0, 0, 0, 0]], np.int32))
  np.testing.assert_allclose(packed[0, :3], separate[0, :3], atol=1e-5)
  np.testing.assert_allclose(packed[0, 3:5], separate[1, :2], atol=1e-5)


# ------------------------------------------------------------------------------------------------
# Reusing work: KV cache and precomputed cross-attention keys/values.


def test_kv_cache_decoding_matches_teacher_forcing(params):
  model = Transformer(AR)
  dec = np.array([[3, 20, 21, 22, 23, 24], [3, 25, 26, 27, 28, 29]], np.int32)
  length = dec.shape[1]
  full = _logits(params, AR, ENC, dec)
  cross_kv = _cross_kv(params, AR, _encode(params, AR, ENC))

  def run(cache, encoded, tokens):
    return model.apply({"params": params, "cache": cache}, encoded, ENC, tokens,
                       cross_kv=cross_kv, decode=True, max_decode_length=length,
                       method=Transformer.decode, mutable=["cache"])

  # The cache-creating call on full-length inputs, traced only for its shapes.
  cache_shapes = jax.eval_shape(run, {}, None, np.zeros_like(dec))[1]["cache"]
  cache = jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), cache_shapes)
  assert cache["decoder"]["layers_0"]["self_attention"]["cached_key"].shape == (
      2, length, AR.num_heads, AR.head_dim)
  step = jax.jit(run)
  for i in range(length):
    logits, variables = step(cache, None, dec[:, i:i + 1])
    cache = variables["cache"]
    assert logits.shape == (2, 1, AR.vocab_size)
    np.testing.assert_allclose(logits[:, 0], full[:, i], atol=1e-5, rtol=1e-5)
  assert int(cache["decoder"]["layers_1"]["self_attention"]["cache_index"]) == length


def test_precomputed_cross_kv_matches_recomputing(params):
  encoded = _encode(params, AR, ENC)
  cross_kv = _cross_kv(params, AR, encoded)
  assert len(cross_kv) == PADIR.num_decoder_layers
  assert cross_kv[0][0].shape == (2, 6, PADIR.num_heads, PADIR.head_dim)
  recomputed, hidden = _decode(params, PADIR, encoded, ENC, DEC, None)
  reused, _ = _decode(params, PADIR, None, ENC, DEC, cross_kv)
  assert hidden.shape == (2, 6, PADIR.emb_dim)
  np.testing.assert_allclose(reused, recomputed, atol=1e-6)
  np.testing.assert_allclose(recomputed, _logits(params, PADIR, ENC, DEC), atol=1e-5)


def test_tied_logits_use_the_embedding(params):
  tied = network.get_config("test", decoder_causal=False, logits_via_embedding=True)
  logits, hidden = _decode(params, tied, _encode(params, AR, ENC), ENC, DEC, None)
  expected = hidden @ params["token_embedder"]["embedding"].T / np.sqrt(tied.emb_dim)
  np.testing.assert_allclose(logits, expected, atol=1e-5)


def test_decode_mode_needs_a_causal_decoder(params):
  with pytest.raises(ValueError, match="causal"):
    jax.eval_shape(functools.partial(
        Transformer(PADIR).apply, decode=True, max_decode_length=6, method=Transformer.decode,
        mutable=["cache"]), {"params": params}, None, ENC, DEC)


# ------------------------------------------------------------------------------------------------
# Heads, dropout, dtypes.


def test_length_classifier_and_rejecter_heads(params):
  model = Transformer(ALL_HEADS)
  encoded = _encode(params, AR, ENC)

  @jax.jit
  def heads(hidden):
    length_logits = model.apply({"params": params}, encoded, ENC,
                                method=Transformer.predict_length)
    accept_sum = lambda h: model.apply({"params": params}, h,
                                       method=Transformer.accept_logits).sum()
    accept = model.apply({"params": params}, hidden, method=Transformer.accept_logits)
    return length_logits, accept, jax.grad(accept_sum)(hidden)

  length_logits, accept, accept_grad = heads(jnp.ones((2, 6, ALL_HEADS.emb_dim)))
  assert length_logits.shape == (2, ALL_HEADS.max_target_length + 1)
  assert length_logits.dtype == accept.dtype == jnp.float32
  assert accept.shape == (2, 6)
  np.testing.assert_array_equal(accept_grad, 0.0)  # Stop-gradient states.
  with pytest.raises(ValueError, match="length head"):
    jax.eval_shape(functools.partial(Transformer(AR).apply, method=Transformer.predict_length),
                   {"params": params}, encoded, ENC)


@pytest.mark.parametrize("kind", ["affine", "fertility"])
def test_regression_length_heads_start_at_source_length(kind):
  model = Transformer(network.get_config("test", length_head=kind))
  encoded = np.random.default_rng(0).normal(size=(2, 6, 32)).astype(np.float32)

  @jax.jit
  def lengths_and_grad(encoded):
    variables = model.init(jax.random.key(0), encoded, ENC, method=Transformer.predict_length)
    predict = lambda e: model.apply(variables, e, ENC, method=Transformer.predict_length)
    return predict(encoded), jax.grad(lambda e: predict(e).sum())(encoded)

  lengths, grad = lengths_and_grad(encoded)
  np.testing.assert_allclose(lengths, [5.0, 3.0])  # Non-pad source tokens.
  np.testing.assert_array_equal(grad, 0.0)  # Affine ignores states; fertility stops gradients.


def test_dropout_only_when_enabled(params):
  shallow = network.get_config("test", num_encoder_layers=1, num_decoder_layers=1)

  @jax.jit
  def run(rng):
    return Transformer(shallow).apply({"params": params}, ENC, DEC, enable_dropout=True,
                                      rngs={"dropout": rng})

  key = functools.partial(jax.random.key, impl="rbg")  # Compiles faster than threefry on CPU.
  first, again = run(key(3)), run(key(3))
  np.testing.assert_array_equal(first, again)
  assert np.abs(first - _logits(params, shallow, ENC, DEC)).max() > 1e-3
  assert np.abs(first - run(key(4))).max() > 1e-3


def test_bfloat16_activations_stay_close_to_float32(params):
  bf16 = network.get_config("test", dtype="bfloat16", decoder_causal=False)
  assert jax.eval_shape(_encode, params, bf16, ENC).dtype == jnp.bfloat16
  low, high = _logits(params, bf16, ENC, DEC), _logits(params, PADIR, ENC, DEC)
  assert low.dtype == jnp.float32
  real = DEC != 0
  low, high = np.asarray(low)[real], np.asarray(high)[real]
  assert np.isfinite(low).all()
  assert np.abs(low - high).max() < 0.05 * np.abs(high).max()
  assert (low.argmax(-1) == high.argmax(-1)).mean() >= 0.8


def test_decoder_key_mask_attends_to_t5s_start_token():
  """T5 starts the decoder with id 0 (= PAD): the first position of each example is a key, the
  padding after it is not; with a non-zero start token it is the plain padding mask."""
  tokens = jnp.array([[0, 5, 6, 0, 0], [3, 5, 0, 0, 0]])
  np.testing.assert_array_equal(layers.decoder_key_mask(tokens)[:, 0, 0],
                                [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])
  packed = jnp.array([[0, 5, 0, 7, 0]])  # two examples, both starting with id 0, then padding
  segments = jnp.array([[1, 1, 2, 2, 0]])
  np.testing.assert_array_equal(layers.decoder_key_mask(packed, segments)[:, 0, 0],
                                [[1, 1, 1, 1, 0]])
