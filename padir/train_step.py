"""One training step over one mesh: the train state, the global batch's layout over the
`data` axis, and the jitted train and eval steps (`padir.trainer` runs them in its loop).

One step of training: the global batch (built with `jax.make_array_from_process_local_data`,
sharded over `data`) is split into `num_microbatches` whose gradients are averaged, then one
optimizer update is applied — unless the loss or the gradient norm is not finite, in which case
the update is dropped and `skipped_steps` counts it. Dropout uses
`fold_in(dropout_key(seed), step)` (and the microbatch index), so a resumed run draws the same
masks as an uninterrupted one.
"""
from typing import Any, Mapping, Optional, Sequence, Tuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from padir import errors
from padir import partitioning

Batch = Mapping[str, np.ndarray]


class TrainConfigError(errors.UsageError):
  """A training setting that cannot work (batch size, mesh, dataset shapes); the message says
  which setting and what to do."""



@flax.struct.dataclass
class TrainState:
  """Everything a step changes.

  Attributes:
    step: [] int32, batches consumed so far (the data position).
    params: the model parameters (unboxed).
    opt_state: the optimizer state.
    skipped_steps: [] int32, steps whose update was dropped (non-finite loss or gradients).
  """
  step: jax.Array
  params: Any
  opt_state: Any
  skipped_steps: jax.Array

  def checkpoint_items(self) -> Tuple[Any, Mapping[str, Any]]:
    """(params, train_state) as `padir.checkpoints` stores them."""
    return self.params, {"opt_state": self.opt_state, "step": self.step,
                         "skipped_steps": self.skipped_steps}

  @classmethod
  def from_checkpoint_items(cls, params, train_state) -> "TrainState":
    return cls(params=params, **train_state)


# --------------------------------------------------------------------------- mesh and data


def make_train_mesh(mesh_shape: Optional[Sequence[int]]) -> Mesh:
  """The ('data', 'model') mesh, with an error naming the gin setting."""
  try:
    return partitioning.make_mesh(mesh_shape)
  except ValueError as e:
    raise TrainConfigError(
        f"train.mesh_shape={tuple(mesh_shape)}: data * model must equal the "
        f"{jax.device_count()} devices (-1 in one slot takes the rest), e.g. "
        f"--gin.train.mesh_shape='(-1, 1)'") from e


def check_batch_size(batch_size: int, mesh: Mesh, num_microbatches: int = 1) -> None:
  data = mesh.shape["data"]
  if batch_size < 1 or num_microbatches < 1:
    raise TrainConfigError(f"batch_size={batch_size} and num_microbatches={num_microbatches} "
                           "must be positive")
  if batch_size % (data * num_microbatches):
    need = "the mesh's data axis" + (" times num_microbatches" if num_microbatches > 1 else "")
    raise TrainConfigError(
        f"batch_size={batch_size} is not divisible by {need} ({data} x {num_microbatches} = "
        f"{data * num_microbatches}); set BATCH_SIZE to a multiple of {data * num_microbatches}, "
        f"or change train.mesh_shape / train.num_microbatches")


def data_layout(mesh: Mesh, batch_size: int) -> Tuple[int, int]:
  """(shard_id, num_shards) of this process's rows of a `[batch_size, ...]` batch sharded over
  `data`: processes holding the same rows (model axis across hosts) get the same shard."""
  indices = partitioning.batch_sharding(mesh).addressable_devices_indices_map((batch_size,))
  rows = set()
  for index in indices.values():
    rows.update(range(*index[0].indices(batch_size)))
  local = len(rows)
  first = min(rows)
  if rows != set(range(first, first + local)) or batch_size % local or first % local:
    raise TrainConfigError(
        f"this process's devices hold rows {sorted(rows)[:8]}... of the batch, not one "
        f"contiguous block; build the mesh with each process's devices adjacent on 'data'")
  return first // local, batch_size // local


def shard_batch(batch: Batch, mesh: Mesh, batch_size: int) -> Mapping[str, jax.Array]:
  """Global `[batch_size, ...]` arrays sharded over `data`, from this process's rows."""
  sharding = partitioning.batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(
      sharding, np.asarray(v), (batch_size,) + np.shape(v)[1:]) for k, v in batch.items()}


def check_local_batch(batch: Batch, rows: int, what: str) -> None:
  for name, value in batch.items():
    if np.ndim(value) < 1 or np.shape(value)[0] != rows:
      raise TrainConfigError(
          f"{what} gave {name} of shape {np.shape(value)}; expected {rows} rows (the global "
          f"batch_size divided over the data shards): does the dataset use train.batch_size?")


# --------------------------------------------------------------------------- steps


def _split_microbatches(batch, num_microbatches: int):
  """[B, ...] -> [k, B/k, ...] with microbatch i = rows i, i+k, i+2k, ...: each data shard's
  contiguous rows hold an equal part of every microbatch, so the split moves no data."""
  return jax.tree.map(
      lambda x: x.reshape((x.shape[0] // num_microbatches, num_microbatches) + x.shape[1:])
      .swapaxes(0, 1), batch)


def make_train_step(model, mesh: Mesh, shardings: TrainState, num_microbatches: int = 1):
  """The train step, jitted once with explicit shardings (state donated).

  Returns:
    `step_fn(state, batch, dropout_key) -> (state, metrics)`: `batch` global arrays
    `[B, L]` sharded over `data`; `dropout_key` the run's base key (replicated); `metrics`
    replicated scalars: `loss`, the model's metrics, `grad_norm` (before clipping),
    `learning_rate` (if the optimizer has a schedule), `nonfinite` (1 if the update was
    dropped), `target_tokens` (non-pad target tokens of the global batch).
  """
  optimizer = model.optimizer_def
  learning_rate_fn = getattr(optimizer, "learning_rate_fn", None)
  batch_sharding = partitioning.batch_sharding(mesh)

  def loss_and_grads(params, batch, rng):
    (loss, metrics), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(params, batch, rng)
    metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
    return jnp.asarray(loss, jnp.float32), metrics, grads

  def step_fn(state: TrainState, batch, dropout_key):
    rng = jax.random.fold_in(dropout_key, state.step)
    if num_microbatches == 1:
      loss, metrics, grads = loss_and_grads(state.params, batch, rng)
    else:
      def body(total, xs):
        index, microbatch = xs
        microbatch = jax.lax.with_sharding_constraint(microbatch, batch_sharding)
        out = loss_and_grads(state.params, microbatch, jax.random.fold_in(rng, index))
        return jax.tree.map(jnp.add, total, out), None

      zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(
          loss_and_grads, state.params, jax.tree.map(lambda x: x[::num_microbatches], batch),
          rng))
      total, _ = jax.lax.scan(
          body, zeros, (jnp.arange(num_microbatches),
                        _split_microbatches(batch, num_microbatches)))
      loss, metrics, grads = jax.tree.map(lambda x: x / num_microbatches, total)

    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    keep_if_finite = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = TrainState(
        step=state.step + 1,
        params=keep_if_finite(params, state.params),
        opt_state=keep_if_finite(opt_state, state.opt_state),
        skipped_steps=state.skipped_steps + (~finite).astype(jnp.int32))
    metrics = dict(metrics, loss=loss, grad_norm=grad_norm,
                   nonfinite=(~finite).astype(jnp.float32),
                   target_tokens=jnp.sum(batch["decoder_target_tokens"] > 0).astype(jnp.float32))
    if learning_rate_fn is not None:
      metrics["learning_rate"] = jnp.asarray(
          learning_rate_fn(state.step - state.skipped_steps), jnp.float32)
    return new_state, metrics

  replicated = partitioning.replicated(mesh)
  return jax.jit(step_fn, in_shardings=(shardings, batch_sharding, replicated),
                 out_shardings=(shardings, replicated), donate_argnums=(0,))


def make_eval_step(model, mesh: Mesh, param_shardings):
  """`eval_fn(params, batch) -> metrics` (`loss` and the model's metrics, no dropout)."""

  def eval_fn(params, batch):
    loss, metrics = model.loss_fn(params, batch, None)
    return dict({k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()},
                loss=jnp.asarray(loss, jnp.float32))

  replicated = partitioning.replicated(mesh)
  return jax.jit(eval_fn, in_shardings=(param_shardings, partitioning.batch_sharding(mesh)),
                 out_shardings=replicated)
