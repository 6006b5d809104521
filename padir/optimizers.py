"""Optimizers and learning-rate schedules, gin-configurable at the edges (T5X's habits).

A model receives its optimizer as a constructor argument (`optimizer_def`), built here:

  ARModel.optimizer_def = @optimizers.adafactor()
  optimizers.adafactor.learning_rate = @optimizers.rsqrt_schedule()
  optimizers.rsqrt_schedule.warmup_steps = 10000

Every builder returns an `Optimizer`: optax's `init` / `update` plus the schedule it follows
(`learning_rate_fn`), so the trainer can log the learning rate of each update.

Gradient accumulation is not an optimizer wrapper here: the trainer splits each batch into
`num_microbatches` inside its jitted step and averages their gradients before one update, so a
checkpoint never holds a half-accumulated gradient and resuming is exact (see
`padir.train_step.make_train_step`).
"""
import re
from typing import Any, Callable, Mapping, NamedTuple, Optional, Union

import gin
import jax
import jax.numpy as jnp
import optax

from padir import checkpoints

Schedule = Callable[[Any], Any]  # update count (int32 []) -> learning rate (float32 [])


class Optimizer(NamedTuple):
  """An optax gradient transformation and its learning-rate schedule.

  Attributes:
    init: `init(params) -> opt_state`.
    update: `update(grads, opt_state, params) -> (updates, opt_state)`.
    learning_rate_fn: `learning_rate_fn(count) -> lr`, `count` the number of updates applied
      before this one (optax's own count).
  """
  init: Callable[..., Any]
  update: Callable[..., Any]
  learning_rate_fn: Schedule


def _as_schedule(learning_rate: Union[float, Schedule]) -> Schedule:
  if callable(learning_rate):
    return learning_rate
  return optax.constant_schedule(float(learning_rate))


def _with_clipping(tx: optax.GradientTransformation,
                   clip_gradient_norm: Optional[float]) -> optax.GradientTransformation:
  if clip_gradient_norm is None:
    return tx
  if clip_gradient_norm <= 0:
    raise ValueError(f"clip_gradient_norm={clip_gradient_norm}: must be positive or None")
  return optax.chain(optax.clip_by_global_norm(clip_gradient_norm), tx)


@gin.configurable
def rsqrt_schedule(scale: float = 1.0, warmup_steps: int = 10_000,
                   linear_warmup: bool = False) -> Schedule:
  """T5's inverse-square-root schedule: `scale / sqrt(max(count, warmup_steps))`.

  With the T5 defaults (scale 1, 10k warmup steps) the rate is constant 0.01 for 10k steps,
  then decays as 1/sqrt(count). `linear_warmup=True` also ramps it linearly from 0 to that
  plateau over the warmup (`(count + 1) / warmup_steps`), as most NMT recipes do.
  """
  if warmup_steps < 1:
    raise ValueError(f"rsqrt_schedule.warmup_steps={warmup_steps}: must be >= 1")

  def schedule(count):
    count = jnp.asarray(count, jnp.float32)
    lr = scale * jnp.reciprocal(jnp.sqrt(jnp.maximum(count, warmup_steps)))
    if linear_warmup:
      lr = lr * jnp.minimum(1.0, (count + 1.0) / warmup_steps)
    return lr

  return schedule


@gin.configurable
def cosine_schedule(peak_learning_rate: float = 1e-3, warmup_steps: int = 1_000,
                    decay_steps: int = 100_000, end_learning_rate: float = 0.0) -> Schedule:
  """Linear warmup from 0 to `peak_learning_rate` over `warmup_steps`, then cosine decay to
  `end_learning_rate` at `decay_steps` (counted from 0, warmup included), constant after."""
  if decay_steps <= warmup_steps:
    raise ValueError(f"cosine_schedule: decay_steps={decay_steps} must exceed "
                     f"warmup_steps={warmup_steps}")
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak_learning_rate, warmup_steps=warmup_steps,
      decay_steps=decay_steps, end_value=end_learning_rate)


@gin.configurable
def adafactor(learning_rate: Union[float, Schedule] = gin.REQUIRED,
              clip_gradient_norm: Optional[float] = None,
              decay_rate: float = 0.8,
              multiply_by_parameter_scale: bool = True,
              clipping_threshold: Optional[float] = 1.0,
              momentum: Optional[float] = None,
              weight_decay_rate: Optional[float] = None,
              min_dim_size_to_factor: int = 128,
              epsilon: float = 1e-30,
              factored: bool = True) -> Optimizer:
  """Adafactor with T5X's defaults (factored second moments, update clipping at 1.0, updates
  scaled by the parameter's RMS, no momentum). `clip_gradient_norm` adds global-norm gradient
  clipping before it (T5 does not clip)."""
  schedule = _as_schedule(learning_rate)
  tx = optax.adafactor(
      learning_rate=schedule, min_dim_size_to_factor=min_dim_size_to_factor,
      decay_rate=decay_rate, multiply_by_parameter_scale=multiply_by_parameter_scale,
      clipping_threshold=clipping_threshold, momentum=momentum,
      weight_decay_rate=weight_decay_rate, eps=epsilon, factored=factored)
  tx = _with_clipping(tx, clip_gradient_norm)
  return Optimizer(tx.init, tx.update, schedule)


@gin.configurable
def adamw(learning_rate: Union[float, Schedule] = gin.REQUIRED,
          clip_gradient_norm: Optional[float] = 1.0,
          b1: float = 0.9,
          b2: float = 0.98,
          epsilon: float = 1e-9,
          weight_decay: float = 0.0,
          learning_rate_multipliers: Optional[Mapping[str, float]] = None) -> Optimizer:
  """AdamW (decoupled weight decay) with global-norm clipping; defaults as the Transformer /
  Mask-Predict NMT recipes (b2 0.98, eps 1e-9, clip 1.0).

  `learning_rate_multipliers`: parameter-name regex (full match on 'token_embedder/embedding'
  style names) -> factor on that parameter's update. Adam's steps have the same size whatever a
  parameter's scale, so T5's embedding (initialised at std 1, Adafactor's
  `multiply_by_parameter_scale` in mind) moves sqrt(d_model) times slower, relative to its
  size, than a Transformer embedding of std 1/sqrt(d_model) scaled up by sqrt(d_model);
  {'token_embedder/embedding': sqrt(d_model)} gives it that relative rate.
  """
  schedule = _as_schedule(learning_rate)
  tx = optax.adamw(learning_rate=schedule, b1=b1, b2=b2, eps=epsilon,
                   weight_decay=weight_decay)
  if learning_rate_multipliers:
    tx = optax.chain(tx, scale_by_name(learning_rate_multipliers))
  tx = _with_clipping(tx, clip_gradient_norm)
  return Optimizer(tx.init, tx.update, schedule)


def scale_by_name(multipliers: Mapping[str, float]) -> optax.GradientTransformation:
  """Multiplies the update of each parameter whose '/'-joined name fully matches a regex of
  `multipliers` by its factor (the first match); other updates pass unchanged."""
  patterns = [(re.compile(pattern), float(factor)) for pattern, factor in multipliers.items()]

  def factor(path) -> float:
    name = checkpoints.path_name(path)
    return next((f for p, f in patterns if p.fullmatch(name)), 1.0)

  def init(params):
    names = [checkpoints.path_name(path) for path, _ in
             jax.tree_util.tree_flatten_with_path(params)[0]]
    for pattern, _ in patterns:
      if not any(pattern.fullmatch(name) for name in names):
        raise ValueError(f"learning_rate_multipliers: {pattern.pattern!r} matches no parameter "
                         f"name (e.g. {', '.join(names[:3])})")
    return optax.EmptyState()

  def update(updates, state, params=None):
    del params
    def scale(path, update):
      f = factor(path)
      return update if f == 1.0 else update * f
    return jax.tree_util.tree_map_with_path(scale, updates), state

  return optax.GradientTransformation(init, update)
