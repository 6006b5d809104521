"""The fused attention path (`T5Config.attention='xla'`: one `jax.nn.dot_product_attention`
call with T5's bias and mask, which XLA or cuDNN can fuse) against the attention written out
(`'einsum'`, the default), float32 on the CPU: the same logits and the same greedy tokens through
the KV cache; dropout keeps the written-out path."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import decode_speed
from padir import layers
from padir import models
from padir import network
from padir.special_tokens import SpecialTokens

SPECIAL = SpecialTokens.create(100, 64)
BATCH = decode_speed.make_batch([(12, 10), (7, 13), (15, 6)], SPECIAL.num_pieces, seed=0)


def _model(kind: str, attention: str, dtype: str = "float32", dropout_rate: float = 0.0):
  config = network.get_config("test", attention=attention, dtype=dtype,
                              dropout_rate=dropout_rate)
  model_class = models.ARModel if kind == "ar" else models.PadirModel
  return model_class(network.Transformer(config), special_tokens=SPECIAL)


@pytest.fixture(scope="module")
def params():
  """decode_speed's numpy-seeded T5-scaled random weights, one set per model kind (the
  attention implementation does not change the parameter tree)."""
  return {kind: decode_speed.random_params(_model(kind, "einsum"), BATCH, seed=0)
          for kind in ("ar", "padir")}


def _forward(model, params, dropout_rng=None):
  """Teacher-forced logits of the batch (AR: shifted targets; PaDIR: the targets as input)."""
  tokens = BATCH["decoder_target_tokens"]
  inputs = (models.shift_right(tokens, SPECIAL.bos_id) if isinstance(model, models.ARModel)
            else tokens)
  # pylint: disable-next=protected-access
  encoder_tokens = model._encoder_inputs(BATCH["encoder_input_tokens"])
  return model.module.apply({"params": params}, encoder_tokens, inputs,
                            enable_dropout=dropout_rng is not None,
                            rngs=None if dropout_rng is None else {"dropout": dropout_rng})


def test_fused_attention_matches_the_written_out_one_in_float32(params):
  for kind in ("ar", "padir"):  # Causal and padding-only self-attention, cross-attention.
    einsum = jax.jit(lambda p, k=kind: _forward(_model(k, "einsum"), p))(params[kind])
    fused = jax.jit(lambda p, k=kind: _forward(_model(k, "xla"), p))(params[kind])
    einsum, fused = np.asarray(einsum), np.asarray(fused)
    assert np.abs(einsum).max() > 1.0  # Logits of a real size, not all zeros.
    np.testing.assert_allclose(fused, einsum, rtol=1e-5, atol=1e-5, err_msg=kind)
    assert np.array_equal(fused.argmax(-1), einsum.argmax(-1)), kind


def test_fused_attention_gives_the_same_greedy_tokens_through_the_kv_cache(params):
  def greedy(attention):
    model = _model("ar", attention)
    fn = jax.jit(lambda p, b: model.predict_batch_with_aux(
        p, b, decoder_params={"decode_method": "greedy"})[0])
    return np.asarray(fn(params["ar"], BATCH))

  einsum, fused = greedy("einsum"), greedy("xla")
  assert einsum.shape == BATCH["decoder_target_tokens"].shape
  assert np.array_equal(fused, einsum)


@pytest.mark.slow
def test_attention_dropout_keeps_the_written_out_path_and_the_option_is_checked(params):
  rng = jax.random.PRNGKey(3)
  einsum = _forward(_model("padir", "einsum", dropout_rate=0.3), params["padir"], rng)
  fused = _forward(_model("padir", "xla", dropout_rate=0.3), params["padir"], rng)
  assert np.array_equal(np.asarray(fused), np.asarray(einsum))  # Bit for bit: the same path.
  with pytest.raises(ValueError, match="attention="):
    network.get_config("test", attention="flash")
  with pytest.raises(ValueError, match="'xla' or 'cudnn'"):
    layers.fused_attention(jnp.ones((1, 2, 2, 4)), jnp.ones((1, 2, 2, 4)),
                           jnp.ones((1, 2, 2, 4)), None, None, "einsum")
  assert dataclasses.replace(network.get_config("test"), attention="cudnn").attention == "cudnn"
