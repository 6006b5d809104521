"""Trainer tests on a toy model that follows the T5X model interface.

The toy model (embedding + MLP, logically partitioned parameters, dropout) learns
`target = (3 * decoder_input + 1) mod V`. Multi-device and signal tests run in subprocesses
(`--xla_force_host_platform_device_count=8` must be set before JAX starts).
"""
import glob
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from padir import checkpoints
from padir import metrics as metrics_lib
from padir import optimizers
from padir import trainer

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS_DIR)
VOCAB, LENGTH = 32, 8


class ToyNet(nn.Module):
  vocab_size: int = VOCAB
  dim: int = 16
  hidden: int = 32
  dropout_rate: float = 0.1

  @nn.compact
  def __call__(self, encoder_tokens, decoder_tokens, enable_dropout: bool):
    """[B, S], [B, T] int32 -> logits [B, T, V] float32."""
    embedding = self.param(
        "embedding", nn.with_logical_partitioning(nn.initializers.normal(1.0), ("vocab", "embed")),
        (self.vocab_size, self.dim))
    x = embedding[decoder_tokens] + embedding[encoder_tokens].mean(axis=1, keepdims=True)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    h = nn.Dense(self.hidden, name="mlp_in", kernel_init=nn.with_logical_partitioning(
        nn.initializers.lecun_normal(), ("embed", "mlp")))(x)
    h = nn.Dropout(self.dropout_rate)(nn.relu(h), deterministic=not enable_dropout)
    x = x + nn.Dense(self.dim, name="mlp_out", kernel_init=nn.with_logical_partitioning(
        nn.initializers.lecun_normal(), ("mlp", "embed")))(h)
    return nn.Dense(self.vocab_size, name="logits", kernel_init=nn.with_logical_partitioning(
        nn.initializers.lecun_normal(), ("embed", "vocab")))(x)


@gin.configurable
class ToyModel:
  """T5X-interface toy: per-token cross-entropy, `accuracy` metric."""

  def __init__(self, dim: int = 16, dropout_rate: float = 0.1, learning_rate: float = 3e-2,
               optimizer_def=None):
    self.module = ToyNet(dim=dim, dropout_rate=dropout_rate)
    self.optimizer_def = optimizer_def or optimizers.adamw(learning_rate=learning_rate)

  def get_initial_variables(self, rng, input_shapes, input_types=None):
    del input_types
    return self.module.init(
        {"params": rng}, jnp.ones(input_shapes["encoder_input_tokens"], jnp.int32),
        jnp.ones(input_shapes["decoder_input_tokens"], jnp.int32), enable_dropout=False)

  def loss_fn(self, params, batch, dropout_rng):
    logits = self.module.apply(
        {"params": params}, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
        enable_dropout=dropout_rng is not None,
        rngs=None if dropout_rng is None else {"dropout": dropout_rng})
    targets, weights = batch["decoder_target_tokens"], batch["decoder_loss_weights"]
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    denominator = jnp.maximum(weights.sum(), 1.0)
    accuracy = ((logits.argmax(-1) == targets) * weights).sum() / denominator
    return (loss * weights).sum() / denominator, {"accuracy": accuracy}


@gin.configurable
def toy_dataset_fn(*, batch_size, shard_id, num_shards, skip_batches=0, seed=0, nan_at=None,
                   sigterm_at=None):
  """Deterministic infinite batches from batch `skip_batches` on; this shard's rows. `nan_at`:
  batch index whose loss weights are NaN; `sigterm_at`: SIGTERM this process when making that
  batch."""
  rows = batch_size // num_shards
  index = skip_batches
  while True:
    if index == sigterm_at:
      os.kill(os.getpid(), signal.SIGTERM)
    rng = np.random.default_rng([seed, index])
    inputs = rng.integers(4, VOCAB, (batch_size, LENGTH), dtype=np.int32)
    weights = np.ones((batch_size, LENGTH), np.float32) * (np.nan if index == nan_at else 1.0)
    batch = {"encoder_input_tokens": inputs[:, ::-1].copy(), "decoder_input_tokens": inputs,
             "decoder_target_tokens": ((3 * inputs + 1) % VOCAB).astype(np.int32),
             "decoder_loss_weights": weights}
    yield {k: v[shard_id * rows:(shard_id + 1) * rows] for k, v in batch.items()}
    index += 1


def _eval_dataset_fn(**kwargs):
  """Two fixed validation batches."""
  return itertools.islice(toy_dataset_fn(seed=1, **kwargs), 2)


def _train(model_dir, steps, **kwargs):
  args = dict(model=ToyModel(), model_dir=str(model_dir), train_dataset_fn=toy_dataset_fn,
              num_train_steps=steps, batch_size=8, log_every=5, save_checkpoint_every=5,
              eval_every=None, progress_bar=False, seed=3)
  args.update(kwargs)
  return trainer.train(**args)


def _read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def test_training_reduces_loss_and_writes_metrics(tmp_path):
  state = _train(tmp_path, 30, keep_checkpoints=2, eval_dataset_fn=_eval_dataset_fn,
                 eval_every=15)
  assert int(state.step) == 30 and int(state.skipped_steps) == 0
  records = _read_jsonl(tmp_path / "metrics.jsonl")
  train_records = [r for r in records if r["split"] == "train"]
  assert [r["step"] for r in train_records] == [5, 10, 15, 20, 25, 30]
  assert train_records[-1]["loss"] < 0.5 * train_records[0]["loss"]
  for name in ("accuracy", "learning_rate", "grad_norm", "tokens_per_second", "skipped_steps"):
    assert name in train_records[0], name
  validation = [r for r in records if r["split"] == "validation"]
  assert [r["step"] for r in validation] == [15, 30]
  assert validation[1]["loss"] < validation[0]["loss"]
  assert glob.glob(str(tmp_path / "train" / "events.out.tfevents.*"))
  assert glob.glob(str(tmp_path / "validation" / "events.out.tfevents.*"))
  # keep_checkpoints=2: only the newest two of 5, 10, ..., 30 remain.
  assert sorted(os.listdir(checkpoints.checkpoint_dir(str(tmp_path)))) == ["25", "30"]
  info = json.loads((tmp_path / "run_info.json").read_text())
  assert info["seed"] == 3 and info["packages"]["jax"] == jax.__version__
  assert (tmp_path / "config.gin").exists()
  params, step = checkpoints.load_params(str(tmp_path))
  assert step == 30
  np.testing.assert_array_equal(params["embedding"], np.asarray(state.params["embedding"]))


def test_resume_equals_uninterrupted_run(tmp_path):
  straight = _train(tmp_path / "straight", 10)
  _train(tmp_path / "resumed", 5)
  resumed = _train(tmp_path / "resumed", 10)
  assert int(resumed.step) == int(straight.step) == 10
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               jax.device_get(resumed.params), jax.device_get(straight.params))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               jax.device_get(resumed.opt_state), jax.device_get(straight.opt_state))
  steps = [r["step"] for r in _read_jsonl(tmp_path / "resumed" / "metrics.jsonl")]
  assert steps == [5, 10]


def test_checkpoint_from_another_config_names_the_parameters(tmp_path):
  _train(tmp_path, 5)
  with pytest.raises(checkpoints.CheckpointMismatchError) as error:
    _train(tmp_path, 10, model=ToyModel(dim=24))
  message = str(error.value)
  assert "params/embedding: checkpoint (32, 16) vs model (32, 24)" in message
  assert "params/mlp_in/kernel" in message


@pytest.mark.slow
def test_warm_start_from_another_run(tmp_path):
  teacher = _train(tmp_path / "teacher", 5)
  # A fresh run starts from the teacher's parameters, with a fresh optimizer state and step.
  student = _train(tmp_path / "student", 0, init_checkpoint=str(tmp_path / "teacher"))
  assert int(student.step) == 0
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(student.params),
               jax.device_get(teacher.params))
  _train(tmp_path / "student", 3, init_checkpoint=str(tmp_path / "teacher"))
  # Resuming continues from the run's own checkpoint: init_checkpoint is not read again.
  resumed = _train(tmp_path / "student", 5, init_checkpoint=str(tmp_path / "missing"))
  assert int(resumed.step) == 5
  with pytest.raises(trainer.TrainConfigError, match=r"embedding is \(32, 16\) there but "
                     r"\(32, 24\) in this model"):
    _train(tmp_path / "wider", 1, model=ToyModel(dim=24),
           init_checkpoint=str(tmp_path / "teacher"))


def test_relative_model_dir_and_time_budget(tmp_path, monkeypatch):
  """A relative --model_dir checkpoints (orbax wants absolute paths); a wall-time budget stops
  training with a checkpoint and counts the seconds of earlier runs on resume."""
  monkeypatch.chdir(tmp_path)
  state = _train("run", 10_000, max_train_seconds=0.0)
  assert int(state.step) == 1  # Out of time after the first step: saved, stopped normally.
  assert checkpoints.load_params("run")[1] == 1
  with open(tmp_path / "run" / trainer.TRAIN_TIME_FILE) as f:
    seconds = json.load(f)["1"]
  assert seconds > 0
  # Resumed with a budget the first run already spent: one more step, then stop again.
  state = _train("run", 10_000, max_train_seconds=seconds)
  assert int(state.step) == 2
  with open(tmp_path / "run" / trainer.TRAIN_TIME_FILE) as f:
    times = json.load(f)
  assert set(times) == {"1", "2"} and times["2"] > times["1"]
  assert int(_train("run", 5, max_train_seconds=None).step) == 5


def test_progress_eta_is_the_sooner_of_steps_and_time_budget(monkeypatch):
  now = [100.0]
  monkeypatch.setattr(metrics_lib.time, "time", lambda: now[0])
  by_steps = metrics_lib.Progress(0, 1000, bar=False)
  budgeted = metrics_lib.Progress(0, 1000, bar=False, seconds_left=lambda: 30.0 - now[0] + 100)
  assert by_steps.eta(0) is None and budgeted.eta(0).total_seconds() == 30
  now[0] = 110.0  # 10 steps in 10 s: 990 steps left at 1 step/s, 20 s left of the budget.
  assert by_steps.eta(10).total_seconds() == 990
  assert budgeted.eta(10).total_seconds() == 20
  now[0] = 200.0  # Past the budget: no negative ETA.
  assert budgeted.eta(11).total_seconds() == 0


def test_log_lines_go_to_the_stderr_of_the_moment(monkeypatch):
  """The commands' handler follows sys.stderr: one swapped out (and closed) by a caller, as
  pytest's capture does, is not written to later."""
  import io  # pylint: disable=g-import-not-at-top
  package_logger = logging.getLogger("padir")
  monkeypatch.setattr(package_logger, "handlers", [])
  monkeypatch.setattr(package_logger, "propagate", package_logger.propagate)
  monkeypatch.setattr(package_logger, "level", package_logger.level)
  first, second = io.StringIO(), io.StringIO()
  monkeypatch.setattr(sys, "stderr", first)
  metrics_lib.log_to_stderr()
  logging.getLogger("padir.test").info("one")
  first.close()
  monkeypatch.setattr(sys, "stderr", second)
  logging.getLogger("padir.test").info("two")
  assert second.getvalue().rstrip().endswith("padir.test] two")

def test_nonfinite_step_is_skipped_or_stops(tmp_path):
  state = _train(tmp_path / "skip", 5, train_dataset_fn=lambda **kw: toy_dataset_fn(
      nan_at=2, **kw))
  assert int(state.step) == 5 and int(state.skipped_steps) == 1
  assert np.all(np.isfinite(jax.device_get(state.params["embedding"])))
  record = _read_jsonl(tmp_path / "skip" / "metrics.jsonl")[0]
  assert record["skipped_steps"] == 1 and np.isfinite(record["loss"])
  with pytest.raises(FloatingPointError, match="at step 3"):
    _train(tmp_path / "stop", 5, skip_nonfinite_steps=False,
           train_dataset_fn=lambda **kw: toy_dataset_fn(nan_at=2, **kw))
  assert not os.listdir(checkpoints.checkpoint_dir(str(tmp_path / "stop")))


def test_bad_settings_give_clear_errors(tmp_path):
  with pytest.raises(trainer.TrainConfigError, match=r"mesh_shape=\(2, 1\)"):
    _train(tmp_path, 5, mesh_shape=(2, 1))
  with pytest.raises(trainer.TrainConfigError, match="batch_size=8 is not divisible"):
    _train(tmp_path, 5, num_microbatches=3)
  with pytest.raises(trainer.TrainConfigError, match="expected 8 rows"):
    _train(tmp_path, 5, train_dataset_fn=lambda batch_size, **kw: toy_dataset_fn(
        batch_size=batch_size // 2, **kw))


def python_env(env_extra=None):
  """The environment of a fresh python: this checkout and tests/ importable, on CPU, sharing
  this session's JAX compilation cache."""
  return dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, TESTS_DIR]), JAX_PLATFORMS="cpu",
              JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5", **(env_extra or {}))


def run_python(code, env_extra=None, timeout=240):
  """Runs `code` in a fresh python (`python_env`)."""
  return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=python_env(env_extra),
                        capture_output=True, text=True, timeout=timeout, cwd=REPO)


SHARDED_SCRIPT = """
import jax, numpy as np
from padir import partitioning, train_step, trainer
import test_trainer as t

assert jax.device_count() == 8
def run(mesh, model, num_microbatches=1, steps=3):
  data = t.toy_dataset_fn(batch_size=8, shard_id=0, num_shards=1)
  first = next(data)
  shapes = {k: v.shape for k, v in first.items()}
  types = {k: v.dtype for k, v in first.items()}
  with jax.set_mesh(mesh), t.nn.logical_axis_rules(partitioning.LOGICAL_AXIS_RULES):
    boxed = trainer.abstract_train_state(model, shapes, types)
    shardings = trainer.train_state_shardings(mesh, boxed)
    state = trainer.init_train_state(model, jax.random.PRNGKey(0), shapes, types, shardings)
    step = train_step.make_train_step(model, mesh, shardings, num_microbatches)
    history = []
    for batch in [first] + [next(data) for _ in range(steps - 1)]:
      state, metrics = step(state, train_step.shard_batch(batch, mesh, 8), jax.random.PRNGKey(1))
      history.append(jax.device_get(metrics))
    assert step._cache_size() == 1
  return state, history

single = partitioning.make_mesh((1, 1), devices=jax.devices()[:1])
sharded = partitioning.make_mesh((4, 2))
ref_state, ref_metrics = run(single, t.ToyModel())
state, metrics = run(sharded, t.ToyModel())
P = jax.sharding.PartitionSpec
assert state.params["embedding"].sharding.spec == P("model", None)
assert state.params["mlp_in"]["kernel"].sharding.spec == P(None, "model")
assert state.opt_state[1][0].mu["embedding"].sharding.spec == P("model", None)
close = lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
jax.tree.map(close, jax.device_get(state.params), jax.device_get(ref_state.params))
jax.tree.map(close, jax.device_get(state.opt_state), jax.device_get(ref_state.opt_state))
for m, r in zip(metrics, ref_metrics):
  jax.tree.map(close, m, r)
# Gradient accumulation: 2 microbatches of 4 == one batch of 8 (no dropout, equal weights).
no_dropout = lambda: t.ToyModel(dropout_rate=0.0)
full, _ = run(sharded, no_dropout(), steps=2)
accumulated, _ = run(sharded, no_dropout(), num_microbatches=2, steps=2)
jax.tree.map(close, jax.device_get(accumulated.params), jax.device_get(full.params))
try:
  train_step.check_batch_size(6, sharded)
except trainer.TrainConfigError as e:
  assert "batch_size=6 is not divisible by the mesh's data axis (4" in str(e), e
else:
  raise AssertionError("no error for batch 6 on data axis 4")
assert train_step.data_layout(sharded, 8) == (0, 1)
print("OK")
"""


@pytest.mark.slow
def test_sharded_step_equals_single_device_step():
  result = run_python(SHARDED_SCRIPT,
                       {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-4000:]


RUN_GIN = """
import test_trainer
train.model = @test_trainer.ToyModel()
train.model_dir = %MODEL_DIR
train.train_dataset_fn = @test_trainer.toy_dataset_fn
train.batch_size = 8
train.num_train_steps = 1000
train.save_checkpoint_every = 1000
train.log_every = 2
train.eval_every = None
train.progress_bar = False
"""


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_training_resumes(tmp_path, caplog):
  gin_file = tmp_path / "toy.gin"
  gin_file.write_text(RUN_GIN)
  model_dir = tmp_path / "run"
  result = run_python(f"""
  import sys
  from padir import cli
  sys.exit(cli.main(["train", "--gin_file={gin_file}", "--model_dir={model_dir}",
                     "--gin.toy_dataset_fn.sigterm_at=4"]))
  """)
  assert result.returncode == 128 + signal.SIGTERM, result.stderr[-4000:]
  assert "SIGTERM" in result.stderr and "saving checkpoint" in result.stderr
  saved = [int(s) for s in os.listdir(checkpoints.checkpoint_dir(str(model_dir)))]
  assert len(saved) == 1 and 4 <= saved[0] < 1000, saved
  config = (model_dir / "config.gin").read_text()
  assert f"MODEL_DIR = '{model_dir}'" in config
  assert "train.model = @test_trainer.ToyModel()" in config
  caplog.set_level(logging.INFO, logger="padir")
  state = _train(model_dir, saved[0] + 2, seed=0, log_every=2, save_checkpoint_every=1000)
  assert f"resumed from {checkpoints.checkpoint_dir(str(model_dir))} at step {saved[0]}" in (
      caplog.text)
  assert int(state.step) == saved[0] + 2


def test_optimizers_and_schedules():
  rsqrt = optimizers.rsqrt_schedule(scale=1.0, warmup_steps=100)
  np.testing.assert_allclose([rsqrt(0), rsqrt(100), rsqrt(400)], [0.1, 0.1, 0.05], rtol=1e-6)
  ramp = optimizers.rsqrt_schedule(scale=1.0, warmup_steps=100, linear_warmup=True)
  np.testing.assert_allclose([ramp(49), ramp(99), ramp(400)], [0.05, 0.1, 0.05], rtol=1e-6)
  cosine = optimizers.cosine_schedule(peak_learning_rate=1e-3, warmup_steps=10, decay_steps=110)
  np.testing.assert_allclose([cosine(0), cosine(10), cosine(60), cosine(110)],
                             [0.0, 1e-3, 5e-4, 0.0], atol=1e-9)
  params = {"kernel": jnp.ones((4, 3)), "bias": jnp.zeros((3,))}
  grads = jax.tree.map(lambda x: jnp.full_like(x, 100.0), params)
  for optimizer in (optimizers.adafactor(learning_rate=rsqrt, clip_gradient_norm=1.0),
                    optimizers.adamw(learning_rate=0.1)):
    updates, _ = jax.jit(optimizer.update)(grads, optimizer.init(params), params)
    assert all(np.all(np.isfinite(u)) and np.any(u != 0) for u in jax.tree.leaves(updates))
    assert float(optimizer.learning_rate_fn(0)) > 0
  with pytest.raises(ValueError, match="clip_gradient_norm"):
    optimizers.adamw(learning_rate=0.1, clip_gradient_norm=0.0)
