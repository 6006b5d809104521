"""benchmarks/train_speed.py at a toy size, and the step levers it measures (the ReLU MLP, the
RngBitGenerator dropout bits, length-bucketed AR batches)."""
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from benchmarks import train_speed
from padir import layers
from padir import network


@pytest.fixture(autouse=True)
def _clear_gin():
  """The benchmark and `padir train` leave their gin config parsed; later tests call the same
  gin-configurable functions (e.g. the schedules) and must not see its bindings."""
  yield
  import gin  # pylint: disable=g-import-not-at-top
  gin.clear_config()


def _experiment(tmp_path, corpus, kind: str) -> str:
  path = tmp_path / f"{kind}.gin"
  path.write_text("\n".join([
      "from __gin__ import dynamic_registration",
      "from padir import data",
      "from padir import network",
      "from padir import preprocessors",
      "from padir import trainer",
      f"MIXTURE_OR_TASK_NAME = '{corpus[kind + '_task']}'",
      "TASK_FEATURE_LENGTHS = {'inputs': 32, 'targets': 32}",
      "BATCH_SIZE = 8",
      "network.get_config.name = 'test'",
      "train/data.get_dataset.length_buckets = (16, 32)",
      "trainer.train.eval_dataset_fn = None",
  ]) + "\n")
  return str(path)


@pytest.mark.slow
def test_train_speed_measures_every_setup(tmp_path, tiny_corpus):
  ar, padir = _experiment(tmp_path, tiny_corpus, "ar"), _experiment(tmp_path, tiny_corpus, "padir")
  rbg = "trainer.train.dropout_rng_impl = 'rbg'"
  setups = [
      train_speed.Setup("gated", "gated GELU", ("models/ar_tiny.gin", ar)),
      train_speed.Setup("relu", "ReLU MLP, rbg dropout", ("models/ar_tiny.gin", ar),
                        ("network.get_config.mlp_activations = ('relu',)", rbg)),
      train_speed.Setup("padir", "student", ("models/padir_tiny.gin", padir), (rbg,)),
  ]
  results = train_speed.run(setups, steps=4, command="test")
  rows = {r["name"]: r for r in results["setups"]}
  assert list(rows) == ["gated", "relu", "padir"]
  assert results["matmul_flop_s"] > 1e8
  for row in rows.values():
    assert row["s_per_step"] > 0 and row["tokens_per_s"] > 0 and row["data_s_per_batch"] >= 0
    assert row["flop_per_step"] > 0 and 0 < row["share_of_matmul_rate"]
    assert row["target_tokens_per_step"] <= 8 * 32
  # One matrix fewer in every MLP: fewer FLOPs per target token than the gated GELU.
  per_token = {n: r["flop_per_step"] / r["target_tokens_per_step"] for n, r in rows.items()}
  assert per_token["relu"] < per_token["gated"]
  markdown = train_speed.train_speed_markdown(results)
  for name in rows:
    assert f"| {name} |" in markdown
  json.dumps(results)  # results.json must be writable as is.


def test_mlp_activations_name_their_matrices_as_t5x():
  x = jnp.ones((2, 3, 8))
  for activations, names in [(("gelu", "linear"), {"wi_0", "wi_1", "wo"}),
                             (("relu",), {"wi", "wo"})]:
    params = layers.MlpBlock(16, activations=activations).init(jax.random.PRNGKey(0), x)
    assert set(params["params"]) == names
  relu = layers.MlpBlock(16, activations=("relu",))
  params = nn.unbox(relu.init(jax.random.PRNGKey(0), x))
  expected = jnp.maximum(x @ params["params"]["wi"]["kernel"], 0) @ params["params"]["wo"]["kernel"]
  assert jnp.allclose(relu.apply(params, x), expected, atol=1e-5)
  with pytest.raises(ValueError, match="mlp_activations"):
    network.get_config("test", mlp_activations=("swish",))


@pytest.mark.slow
def test_rbg_dropout_key_trains(tmp_path, tiny_corpus):
  """A run with RngBitGenerator dropout bits trains and is reproducible."""
  from padir.commands import train as train_command  # pylint: disable=g-import-not-at-top
  import gin  # pylint: disable=g-import-not-at-top
  ar = _experiment(tmp_path, tiny_corpus, "ar")
  losses = []
  for run in ("a", "b"):
    gin.clear_config()
    model_dir = str(tmp_path / run)
    assert train_command.main([
        "--gin_file=models/ar_tiny.gin", "--gin_file=runs/train.gin", f"--gin_file={ar}",
        "--gin.TRAIN_STEPS=4", "--gin.trainer.train.log_every=4", "--gin.DROPOUT_RATE=0.3",
        "--gin.trainer.train.dropout_rng_impl='rbg'", f"--model_dir={model_dir}"]) == 0
    with open(os.path.join(model_dir, "metrics.jsonl")) as f:
      losses.append([json.loads(line)["loss"] for line in f if '"train"' in line])
  assert losses[0] == losses[1] and len(losses[0]) == 1
