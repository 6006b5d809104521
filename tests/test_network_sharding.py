"""The network's parameters and activations follow the logical-axis rules on a (4, 2) CPU mesh.

The 8 host devices need `XLA_FLAGS` before jax initialises, so the checks run in a child
process: this file run as a script is the child.
"""
import os
import pathlib
import subprocess
import sys

import jax
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_params_and_activations_follow_the_logical_axis_rules():
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=8",
             PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
  if jax.config.jax_compilation_cache_dir:  # Share the tests' persistent compilation cache.
    env.update(JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir,
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=str(
                   jax.config.jax_persistent_cache_min_compile_time_secs))
  result = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
  assert result.returncode == 0, result.stdout + result.stderr
  assert "sharding checks passed" in result.stdout


def _child():
  """Init on a ('data', 'model') = (4, 2) mesh and check where everything landed."""
  # pylint: disable=g-import-not-at-top
  import flax
  import flax.linen as nn
  import jax
  import numpy as np
  from jax.sharding import PartitionSpec as P
  from padir import network
  from padir import partitioning

  assert jax.device_count() == 8, jax.devices()
  cfg = network.get_config("test", num_encoder_layers=1, num_decoder_layers=1,
                            length_head="classifier", rejecter_head=True)
  model = network.Transformer(cfg)
  mesh = partitioning.make_mesh((4, 2))
  enc = np.array([[7, 8, 9, 0], [10, 11, 0, 0], [12, 13, 14, 15], [16, 0, 0, 0]], np.int32)
  dec = np.array([[3, 20, 21, 0], [3, 22, 0, 0], [3, 23, 24, 25], [3, 26, 27, 0]], np.int32)
  rng = jax.random.key(0)

  abstract = jax.eval_shape(model.init, rng, enc, dec)
  shardings = partitioning.tree_shardings(mesh, abstract)
  params = nn.unbox(jax.jit(model.init, out_shardings=shardings)(rng, enc, dec)["params"])

  boxed = flax.traverse_util.flatten_dict(abstract["params"], sep="/")
  placed = flax.traverse_util.flatten_dict(params, sep="/")
  assert set(boxed) == set(placed)
  for path, box in boxed.items():
    expected = nn.logical_to_mesh_axes(box.names, partitioning.LOGICAL_AXIS_RULES)
    actual = placed[path].sharding
    assert actual.mesh.shape == {"data": 4, "model": 2}, path
    assert tuple(actual.spec) + (None,) * (len(box.names) - len(actual.spec)) == tuple(
        expected), (path, box.names, actual.spec, expected)

  def spec(path):
    s = tuple(placed[path].sharding.spec)
    return P(*(s + (None,) * (placed[path].ndim - len(s))))

  # Megatron-style: vocab, mlp, heads and joined kv split over `model`; embed replicated.
  assert spec("token_embedder/embedding") == P("model", None)
  assert spec("decoder/logits_dense/kernel") == P(None, "model")
  assert spec("encoder/layers_0/mlp/wi_0/kernel") == P(None, "model")
  assert spec("decoder/layers_0/mlp/wo/kernel") == P("model", None)
  assert spec("encoder/layers_0/attention/query/kernel") == P(None, "model")
  assert spec("decoder/layers_0/encoder_decoder_attention/out/kernel") == P("model", None)
  assert spec("decoder/relpos_bias/rel_embedding") == P("model", None)
  assert spec("encoder/encoder_norm/scale") == P(None)
  wi_0 = placed["encoder/layers_0/mlp/wi_0/kernel"]
  assert {s.data.shape for s in wi_0.addressable_shards} == {(cfg.emb_dim, cfg.mlp_dim // 2)}

  # Activation constraints under the mesh and rules: logits [batch, length, vocab].
  batch = partitioning.batch_sharding(mesh)
  with jax.set_mesh(mesh), nn.logical_axis_rules(partitioning.LOGICAL_AXIS_RULES):
    logits = jax.jit(model.apply)({"params": params}, jax.device_put(enc, batch),
                                  jax.device_put(dec, batch))
  assert tuple(logits.sharding.spec) == ("data", None, "model"), logits.sharding
  host_params = jax.tree_util.tree_map(np.asarray, params)
  reference = jax.jit(model.apply)({"params": host_params}, enc, dec)
  np.testing.assert_allclose(np.asarray(logits), np.asarray(reference), atol=1e-5)
  print("sharding checks passed")


if __name__ == "__main__":
  _child()
