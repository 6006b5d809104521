"""`padir train`: sharded training of a T5X-interface model with optax, orbax and gin.

What the trainer asks of a model (T5X's `BaseModel` interface):
  - `model.get_initial_variables(rng, input_shapes, input_types) -> {"params": ...}`, params
    possibly boxed by `nn.with_logical_partitioning` (the logical axis names shard them);
  - `model.loss_fn(params, batch, dropout_rng) -> (loss [], metrics {name: []})`, with
    `dropout_rng=None` meaning "no dropout" (validation);
  - `model.optimizer_def`: a `padir.optimizers.Optimizer` (any optax-like object with `init`
    and `update`; a `learning_rate_fn` attribute, when present, is logged).

What it asks of a dataset function (`train_dataset_fn`, `eval_dataset_fn`):
  `dataset_fn(batch_size=GLOBAL_BATCH, shard_id=i, num_shards=n, skip_batches=k)` returns an
  iterable of this process's share of each global batch, from batch `k` on: dicts of numpy
  arrays `[GLOBAL_BATCH // n, L]` (`encoder_input_tokens`, `decoder_target_tokens`,
  `decoder_input_tokens`, `decoder_loss_weights`). It must be deterministic (the same batches
  in the same order on every call): a run resumed at step N asks for `skip_batches=N`. The
  training one must not run out before `num_train_steps`; the validation one must end.
  `seqio_dataset_fn` is the SeqIO one (`padir.data.get_dataset`).

One step of training (microbatches, non-finite updates dropped, dropout keys): `padir.train_step`.
"""
import itertools
import logging
import os
import signal
import threading
import time
from typing import Any, Callable, Dict, Iterable, Iterator, Mapping, Optional, Sequence, Tuple

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from padir import checkpoints
from padir import files
from padir import metrics as metrics_lib
from padir import partitioning
from padir import t5_import
from padir import train_step as train_step_lib
from padir.train_step import Batch, TrainConfigError, TrainState

logger = logging.getLogger(__name__)
TRAIN_TIME_FILE = "train_time.json"  # TrainClock: seconds trained at each saved step

DatasetFn = Callable[..., Iterable[Batch]]
ValidationFn = Callable[..., Mapping[str, float]]


class Preempted(Exception):
  """Training stopped on SIGTERM/SIGINT after saving a checkpoint at `step`."""

  def __init__(self, signum: int, step: int):
    super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}; "
                     f"a checkpoint was saved, run the same command to resume")
    self.signum = signum
    self.step = step


# --------------------------------------------------------------------------- state


def _strip_boxes(tree):
  """Removes the logical-partitioning boxes outside `jit` (where `nn.meta.unbox` would try to
  apply their sharding constraints to abstract values)."""
  return nn.meta.map_axis_meta(lambda box: box.value, tree)


def abstract_train_state(model, input_shapes: Mapping[str, Sequence[int]],
                         input_types: Optional[Mapping[str, Any]] = None) -> TrainState:
  """The TrainState's shapes and dtypes, params still boxed with their logical axis names."""

  def init(rng):
    params = model.get_initial_variables(rng, input_shapes, input_types)["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=model.optimizer_def.init(nn.meta.unbox(params)),
                      skipped_steps=jnp.zeros((), jnp.int32))

  return jax.eval_shape(init, jax.random.PRNGKey(0))


def _opt_state_shardings(mesh: Mesh, opt_state, params, param_shardings):
  """Optimizer-state leaves shaped as the parameter they belong to (their key path ends with
  the parameter's) share its sharding; the rest (counts, factored moments) are replicated."""
  by_path = {}
  for (path, leaf), sharding in zip(jax.tree_util.tree_flatten_with_path(params)[0],
                                    jax.tree_util.tree_leaves(param_shardings)):
    by_path[tuple(path)] = (leaf.shape, sharding)
  replicated = partitioning.replicated(mesh)

  def pick(path, leaf):
    for start in range(len(path)):
      hit = by_path.get(tuple(path[start:]))
      if hit is not None:
        return hit[1] if hit[0] == leaf.shape else replicated
    return replicated

  return jax.tree_util.tree_map_with_path(pick, opt_state)


def train_state_shardings(mesh: Mesh, boxed: TrainState,
                          rules=partitioning.LOGICAL_AXIS_RULES) -> TrainState:
  """NamedShardings of a TrainState from `abstract_train_state`, by the logical-axis rules."""
  param_shardings = partitioning.tree_shardings(mesh, boxed.params, rules)
  replicated = partitioning.replicated(mesh)
  return TrainState(
      step=replicated, skipped_steps=replicated, params=param_shardings,
      opt_state=_opt_state_shardings(mesh, boxed.opt_state, _strip_boxes(boxed.params),
                                     param_shardings))


def init_train_state(model, rng: jax.Array, input_shapes, input_types,
                     shardings: TrainState) -> TrainState:
  """Initialises parameters and optimizer state directly into their shardings."""

  def init(rng):
    params = nn.meta.unbox(model.get_initial_variables(rng, input_shapes, input_types)["params"])
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=model.optimizer_def.init(params),
                      skipped_steps=jnp.zeros((), jnp.int32))

  return jax.jit(init, out_shardings=shardings)(rng)


@gin.configurable
def warm_start(model, state: TrainState, init_checkpoint: str, shardings: TrainState, *,
               map_causal_relpos: Optional[bool] = None,
               init_special_embeddings: Optional[bool] = None) -> TrainState:
  """`state` with the parameters of `init_checkpoint` (a model_dir, a `padir convert` output, or
  a T5X / Hugging Face T5 checkpoint) wherever a name matches (fresh optimizer state), fitted to a PaDIR student by `padir.student_init.adapt_to_student`:
  `map_causal_relpos` / `init_special_embeddings` force its two changes on or off (None: made
  when the source is an AR run). Raises TrainConfigError on a matching name of another shape,
  or a forced change that cannot apply."""
  from padir import student_init  # pylint: disable=g-import-not-at-top
  if t5_import.detect_format(init_checkpoint):  # a T5X or Hugging Face T5, read as it is
    imported = t5_import.read(init_checkpoint)
    source, source_step = imported.nested_params(), imported.step
  else:
    source, source_step = checkpoints.load_params(init_checkpoint)
  source = {checkpoints.path_name(p): v
            for p, v in jax.tree_util.tree_flatten_with_path(source)[0]}
  leaves, treedef = jax.tree_util.tree_flatten_with_path(state.params)
  merged, kept = {}, []
  for path, value in leaves:
    name = checkpoints.path_name(path)
    if name not in source:
      merged[name] = value
      kept.append(name)
      continue
    if source[name].shape != value.shape:
      raise TrainConfigError(
          f"trainer.train.init_checkpoint={init_checkpoint!r}: parameter {name} is "
          f"{source[name].shape} there but {value.shape} in this model")
    merged[name] = source.pop(name)
  logger.info("warm start from %s (step %d): %d parameter arrays copied; initialised here: %s; "
              "not used: %s", init_checkpoint, source_step, len(leaves) - len(kept),
              ", ".join(kept) or "none", ", ".join(sorted(source)) or "none")
  try:
    merged.update(student_init.adapt_to_student(
        {name: value for name, value in merged.items() if name not in kept}, model,
        init_checkpoint, map_causal_relpos=map_causal_relpos,
        init_special_embeddings=init_special_embeddings))
  except ValueError as e:
    raise TrainConfigError(f"trainer.warm_start: {e}") from None
  params = jax.tree_util.tree_unflatten(treedef, list(merged.values()))

  def reinit(params):
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=model.optimizer_def.init(params),
                      skipped_steps=jnp.zeros((), jnp.int32))

  return jax.jit(reinit, out_shardings=shardings)(
      jax.device_put(params, shardings.params))


DATA_INIT_BATCHES = 16  # Training batches a model's data-dependent initialisation reads.


def _first_batches(dataset: Callable[[int], Iterable[Batch]]) -> Iterable[Batch]:
  """The first DATA_INIT_BATCHES training batches, read only if iterated."""
  yield from itertools.islice(dataset(0), DATA_INIT_BATCHES)


def initialize_from_data(model, state: TrainState, batches: Iterable[Batch],
                         shardings: TrainState) -> TrainState:
  """`state` with `model.initialize_from_data`'s parameters (e.g. a length head's prior fitted
  to the training data), computed by process 0 and broadcast, so every process agrees."""
  if not hasattr(model, "initialize_from_data"):
    return state
  host_params = jax.device_get(state.params)
  params = model.initialize_from_data(host_params, batches)
  if params is host_params:
    return state
  if jax.process_count() > 1:
    params = multihost_utils.broadcast_one_to_all(params)
  return state.replace(params=jax.device_put(params, shardings.params))


class TrainClock:
  """Wall seconds a run has trained, summed over resumes: `model_dir/train_time.json` maps
  each saved step to the run's seconds at that step (written by process 0)."""

  def __init__(self, model_dir: str, start_step: int, started: float):
    self._path = os.path.join(model_dir, TRAIN_TIME_FILE)
    self._saved = files.read_json(self._path, {})
    self._before = float(self._saved.get(str(start_step), 0.0))
    self._started = started

  def seconds(self) -> float:
    return self._before + time.time() - self._started

  def record(self, step: int) -> None:
    if jax.process_index() != 0:
      return
    self._saved = {k: v for k, v in self._saved.items() if int(k) < step}
    self._saved[str(step)] = round(self.seconds(), 1)
    files.write_json(self._path, self._saved)


# --------------------------------------------------------------------------- the loop


class _StopSignals:
  """Turns the first SIGTERM/SIGINT into a request to save and stop (single process; a second
  SIGINT interrupts at once). With several processes JAX's preemption service decides instead,
  so that all of them stop at the same step."""

  def __init__(self):
    self.signum = None
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.signum is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.signum = signum
    logger.warning("received %s: saving a checkpoint after this step, then stopping",
                    signal.Signals(signum).name)

  def __enter__(self):
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      for signum in (signal.SIGTERM, signal.SIGINT):
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    return False

  def should_stop(self, manager, step: int) -> bool:
    if jax.process_count() > 1:
      if manager.reached_preemption(step):
        self.signum = signal.SIGTERM
    return self.signum is not None


def _mean_over_steps(history: Sequence[Mapping[str, np.ndarray]]) -> dict:
  """Means of each metric over the steps whose update was applied (non-finite steps excluded;
  `target_tokens` is summed)."""
  applied = np.array([m["nonfinite"] == 0 for m in history])
  out = {}
  for name in history[0]:
    values = np.array([m[name] for m in history], np.float64)
    if name == "target_tokens":
      out[name] = values.sum()
    elif name != "nonfinite":
      out[name] = values[applied].mean() if applied.any() else float("nan")
  return out


def _load_eval_batches(eval_dataset_fn: DatasetFn, *, batch_size: int, shard_id: int,
                       num_shards: int, eval_steps: Optional[int]) -> list:
  """This process's validation batches, read once and kept: full batches only (a final smaller
  one is left out), as many on every process (each step of evaluation is collective)."""
  rows = batch_size // num_shards
  batches = eval_dataset_fn(batch_size=batch_size, shard_id=shard_id, num_shards=num_shards,
                            skip_batches=0)
  kept = [b for b in itertools.islice(batches, eval_steps)
          if all(np.shape(v)[0] == rows for v in b.values())]
  count = int(multihost_utils.process_allgather(np.int32(len(kept))).min())
  if not count:
    raise TrainConfigError("the validation dataset gave no full batch; lower train.batch_size "
                           "or set train.eval_dataset_fn = None")
  return kept[:count]


def _evaluate(eval_step, params, eval_batches: Sequence[Batch], *, mesh: Mesh,
              batch_size: int) -> dict:
  """Mean of each metric over the validation batches."""
  totals = None
  for batch in eval_batches:
    metrics = eval_step(params, train_step_lib.shard_batch(batch, mesh, batch_size))
    totals = metrics if totals is None else jax.tree.map(jnp.add, totals, metrics)
  return {k: float(v) / len(eval_batches) for k, v in jax.device_get(totals).items()}


@gin.configurable
def seqio_dataset_fn(*, batch_size: int, shard_id: int, num_shards: int,
                     skip_batches: int) -> Iterable[Batch]:
  """This process's share of the batches of `padir.data.get_dataset`, whose other arguments
  (task, feature lengths, split, shuffle, seed, epochs) gin binds per split with scopes, as
  T5X does: `train.train_dataset_fn = @train/seqio_dataset_fn` with
  `train/get_dataset.split = 'train'`, and `validation/...` likewise (see gin/runs/train.gin).
  With `train/data.get_dataset.length_buckets` the batches' lengths vary by bucket (the train
  step compiles once per bucket); their rows stay `batch_size // num_shards`.
  """
  from padir import data  # pylint: disable=g-import-not-at-top  (seqio/TF only when used)
  return data.get_dataset(batch_size=batch_size // num_shards, shard_id=shard_id,
                          num_shards=num_shards, skip_batches=skip_batches)


def input_specs(batch: Batch, batch_size: int) -> Tuple[Dict[str, Tuple[int, ...]],
                                                        Dict[str, Any]]:
  """(shapes, dtypes) of the global batch, from one per-process batch `{name: [rows, ...]}`."""
  shapes = {k: (batch_size,) + np.shape(v)[1:] for k, v in batch.items()}
  return shapes, {k: np.asarray(v).dtype for k, v in batch.items()}


def run_keys(seed: int, dropout_rng_impl: Optional[str] = None) -> Tuple[jax.Array, jax.Array]:
  """(parameter init key, base dropout key) of a run (see `train`'s `dropout_rng_impl`)."""
  init_key, dropout_key = jax.random.split(jax.random.PRNGKey(seed))
  if dropout_rng_impl is not None:
    dropout_key = jax.random.fold_in(jax.random.key(seed, impl=dropout_rng_impl), 1)
  return init_key, dropout_key


@gin.configurable
def train(*, model=gin.REQUIRED, model_dir: str = gin.REQUIRED,
          train_dataset_fn: DatasetFn = gin.REQUIRED,
          num_train_steps: int = gin.REQUIRED,
          batch_size: int = gin.REQUIRED,
          eval_dataset_fn: Optional[DatasetFn] = None,
          eval_every: Optional[int] = 1000,
          eval_steps: Optional[int] = None,
          validation_fn: Optional[ValidationFn] = None,
          mesh_shape: Optional[Sequence[int]] = None,
          num_microbatches: int = 1,
          save_checkpoint_every: int = 1000,
          keep_checkpoints: Optional[int] = None,
          log_every: int = 100,
          seed: int = 0,
          skip_nonfinite_steps: bool = True,
          init_checkpoint: Optional[str] = None,
          max_train_seconds: Optional[float] = None,
          progress_bar: Optional[bool] = None,
          dropout_rng_impl: Optional[str] = None,
          decode_config: Optional[Callable[[], Any]] = None) -> TrainState:
  """Trains `model` to `num_train_steps`, resuming from `model_dir` if it holds checkpoints.

  Args:
    model: a T5X-interface model (see the module docstring).
    model_dir: run directory: checkpoints/, train/ and validation/ event files,
      metrics.jsonl, config.gin, run_info.json.
    train_dataset_fn: `(batch_size=, shard_id=, num_shards=, skip_batches=) -> iterable of
      per-process numpy batches`, deterministic, long enough for `num_train_steps`.
    num_train_steps: total steps (a resumed run continues to the same total).
    batch_size: global batch size (sequences per step over all processes).
    eval_dataset_fn: validation batches (same contract, finite); None: no validation loss.
    eval_every: validate every this many steps and at the end (None: only at the end).
    eval_steps: validate on the first this many batches (None: all); they are read once and
      kept in host memory.
    validation_fn: optional `validation_fn(model=, params=, step=) -> {name: value}` (e.g.
      BLEU of a small decoded subset), called with each validation; written to validation/.
    mesh_shape: (data, model) device mesh; None: every device on `data`.
    num_microbatches: gradient accumulation: each batch is split into this many microbatches
      whose gradients (and metrics) are averaged before one update; the same update as the
      whole batch when the loss is a mean over equally weighted microbatches.
    save_checkpoint_every: save every this many steps, and at the end.
    keep_checkpoints: keep only the newest this many checkpoints (None: all).
    log_every: write averaged train metrics every this many steps.
    seed: parameter init and dropout seed.
    skip_nonfinite_steps: drop an update with a non-finite loss or gradient and count it in
      `skipped_steps` (True), or stop with an error naming the step, keeping the last
      checkpoint (False).
    init_checkpoint: warm start: a model_dir (or checkpoint dir) whose newest parameters replace
      the freshly initialised ones of the same name (e.g. a PaDIR student from its AR teacher);
      parameters it lacks keep their initialisation. Used only when `model_dir` has no
      checkpoint yet (a resumed run continues from its own).
    max_train_seconds: a wall-time budget: stop with a checkpoint once the run has trained this
      long, summed over resumes (`model_dir/train_time.json` holds the seconds at each saved
      step; time since the last save before an interruption is not counted). None: no budget.
    progress_bar: tqdm bar (True), log lines (False), or a bar only on a terminal (None).
    dropout_rng_impl: the PRNG of the dropout masks (and other training noise drawn from the
      step's key): None, jax's default (threefry, the same bits on any mesh); 'rbg' or
      'unsafe_rbg', XLA's RngBitGenerator (T5X's `use_hardware_rng`: cheaper bits on
      accelerators; the bits may depend on the mesh; on 2 CPU cores the step measured no
      faster). Parameter init keeps the default.
    decode_config: the run's decode-time defaults: the model's decode config class (gin:
      `%DECODE_CONFIG` of gin/models/*.gin, with the experiment's bindings), built and logged
      once here so that config.gin records them for `padir infer` / `eval` (which build it
      again with their own bindings on top).

  Returns:
    The final TrainState.

  Raises:
    Preempted: after SIGTERM/SIGINT, once a checkpoint of the current step is saved.
    TrainConfigError: settings that cannot work, named in the message.
  """
  if num_train_steps < 0 or log_every < 1 or save_checkpoint_every < 1:
    raise TrainConfigError(f"num_train_steps={num_train_steps}, log_every={log_every} and "
                           f"save_checkpoint_every={save_checkpoint_every} must be positive")
  started = time.time()
  mesh = train_step_lib.make_train_mesh(mesh_shape)
  train_step_lib.check_batch_size(batch_size, mesh, num_microbatches)
  shard_id, num_shards = train_step_lib.data_layout(mesh, batch_size)
  local_rows = batch_size // num_shards

  dataset = lambda skip: iter(train_dataset_fn(
      batch_size=batch_size, shard_id=shard_id, num_shards=num_shards, skip_batches=skip))
  batches = dataset(0)
  first = _checked_first_batch(batches, local_rows)
  input_shapes, input_types = input_specs(first, batch_size)
  init_key, dropout_key = run_keys(seed, dropout_rng_impl)

  with jax.set_mesh(mesh), nn.logical_axis_rules(partitioning.LOGICAL_AXIS_RULES):
    state, shardings, manager = _restore_or_initialize(
        model, model_dir, mesh, input_shapes, input_types, init_key=init_key,
        init_checkpoint=init_checkpoint, keep_checkpoints=keep_checkpoints, dataset=dataset)
    start_step = int(state.step)
    eval_batches = (_load_eval_batches(eval_dataset_fn, batch_size=batch_size,
                                       shard_id=shard_id, num_shards=num_shards,
                                       eval_steps=eval_steps)
                    if eval_dataset_fn is not None else None)
    if decode_config is not None:
      logger.info("decoding defaults of this run (config.gin): %s", decode_config())
    checkpoints.write_run_record(
        model_dir, gin_config=gin.operative_config_str(), seed=seed,
        extra={"mesh_shape": dict(mesh.shape), "batch_size": batch_size,
               "num_microbatches": num_microbatches, "start_step": start_step,
               "num_train_steps": num_train_steps,
               "vocabulary": checkpoints.vocabulary_record(
                   getattr(model, "output_vocabulary", None))})
    # The data position is the step: batch `start_step` comes next.
    batches = itertools.chain([first], batches) if start_step == 0 else dataset(start_step)
    clock = TrainClock(model_dir, start_step, started)
    loop = _TrainLoop(
        model=model, state=state, mesh=mesh, batch_size=batch_size, manager=manager,
        train_step=train_step_lib.make_train_step(model, mesh, shardings, num_microbatches),
        eval_step=(train_step_lib.make_eval_step(model, mesh, shardings.params)
                   if eval_batches is not None else None),
        eval_batches=eval_batches, validation_fn=validation_fn,
        writer=metrics_lib.MetricsWriter(model_dir, start_step), clock=clock,
        progress=metrics_lib.Progress(
            start_step, num_train_steps, bar=progress_bar,
            seconds_left=(None if max_train_seconds is None
                          else lambda: max_train_seconds - clock.seconds())),
        log_every=log_every, max_train_seconds=max_train_seconds)
    return loop.run(batches, dropout_key, num_train_steps=num_train_steps,
                    local_rows=local_rows, save_every=save_checkpoint_every,
                    eval_every=eval_every, skip_nonfinite_steps=skip_nonfinite_steps)


def _checked_first_batch(batches: Iterator[Batch], local_rows: int) -> Batch:
  """The first training batch, its rows checked."""
  first = next(batches, None)
  if first is None:
    raise TrainConfigError("the training dataset is empty")
  train_step_lib.check_local_batch(first, local_rows, "train_dataset_fn")
  return first


def _restore_or_initialize(model, model_dir: str, mesh: Mesh, input_shapes, input_types, *,
                           init_key: jax.Array, init_checkpoint: Optional[str],
                           keep_checkpoints: Optional[int],
                           dataset: Callable[[int], Iterable[Batch]]):
  """(state, its shardings, the checkpoint manager): the newest checkpoint of `model_dir`, else
  a fresh state (warm-started from `init_checkpoint`, then initialised from the data)."""
  boxed = abstract_train_state(model, input_shapes, input_types)
  shardings = train_state_shardings(mesh, boxed)
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          _strip_boxes(boxed), shardings)
  manager = checkpoints.make_manager(checkpoints.checkpoint_dir(model_dir), keep=keep_checkpoints)
  restored = checkpoints.restore_latest(manager, *abstract.checkpoint_items())
  if restored is None:
    state = init_train_state(model, init_key, input_shapes, input_types, shardings)
    if init_checkpoint:
      state = warm_start(model, state, init_checkpoint, shardings)
    state = initialize_from_data(model, state, _first_batches(dataset), shardings)
  else:
    state = TrainState.from_checkpoint_items(restored[0], restored[1])
    logger.info("resumed from %s at step %d", manager.directory, restored[2])
  return state, shardings, manager


class _TrainLoop:
  """The steps of one `train` call: train, log, save, validate, stop on a signal or the budget.

  Owns the manager, the metrics writer and the progress display, and closes them when `run`
  ends, however it ends.
  """

  def __init__(self, *, model, state: TrainState, mesh: Mesh, batch_size: int, manager,
               train_step, eval_step, eval_batches, validation_fn, writer, clock: TrainClock,
               progress, log_every: int, max_train_seconds: Optional[float]):
    self.model, self.state, self.mesh, self.batch_size = model, state, mesh, batch_size
    self.manager, self.train_step, self.eval_step = manager, train_step, eval_step
    self.eval_batches, self.validation_fn = eval_batches, validation_fn
    self.writer, self.clock, self.progress = writer, clock, progress
    self.log_every, self.max_train_seconds = log_every, max_train_seconds

  def validate(self, step: int) -> None:
    results = {}
    if self.eval_step is not None:
      results.update(_evaluate(self.eval_step, self.state.params, self.eval_batches,
                               mesh=self.mesh, batch_size=self.batch_size))
    if self.validation_fn is not None:
      results.update(self.validation_fn(model=self.model, params=self.state.params, step=step))
    if results:
      self.writer.write(step, results, "validation")
      logger.info("validation at step %d: %s", step,
                  ", ".join(f"{k} {v:.4g}" for k, v in sorted(results.items())))

  def save(self, step: int) -> None:
    if checkpoints.save(self.manager, step, *self.state.checkpoint_items()):
      logger.info("saving checkpoint %d", step)
      self.clock.record(step)

  def out_of_time(self, step: int) -> bool:
    if self.max_train_seconds is None:
      return False
    # The step's computation has finished (Python dispatches steps ahead of the device).
    jax.block_until_ready(self.state.step)
    if jax.process_count() == 1:
      return self.clock.seconds() >= self.max_train_seconds
    # Every process must stop at the same step: process 0's clock decides, at log steps.
    return step % self.log_every == 0 and bool(multihost_utils.broadcast_one_to_all(
        np.asarray(self.clock.seconds() >= self.max_train_seconds)))

  def log(self, step: int, history: Sequence[Mapping[str, Any]], seconds: float) -> None:
    """Writes the mean train metrics of the steps since the last log, and shows progress."""
    summary = _mean_over_steps(jax.device_get(history))
    summary["tokens_per_second"] = summary.pop("target_tokens") / seconds
    summary["steps_per_second"] = len(history) / seconds
    summary["skipped_steps"] = int(self.state.skipped_steps)
    self.writer.write(step, summary, "train")
    self.progress.update(step, summary["loss"], summary["tokens_per_second"])

  def _nonfinite(self, step: int) -> FloatingPointError:
    last = self.manager.latest_step()
    return FloatingPointError(
        f"non-finite loss or gradients at step {step} (its update was not applied); "
        + ("no checkpoint was saved yet" if last is None else
           f"the last checkpoint is step {last}")
        + ". Set train.skip_nonfinite_steps = True to skip such steps instead.")

  def run(self, batches: Iterable[Batch], dropout_key: jax.Array, *, num_train_steps: int,
          local_rows: int, save_every: int, eval_every: Optional[int],
          skip_nonfinite_steps: bool) -> TrainState:
    step = int(self.state.step)
    history, last_time = [], time.time()
    try:
      with _StopSignals() as signals:
        while step < num_train_steps:
          batch = next(batches, None)
          if batch is None:
            raise TrainConfigError(f"the training dataset ran out at step {step} of "
                                   f"{num_train_steps}; make it repeat")
          train_step_lib.check_local_batch(batch, local_rows, "train_dataset_fn")
          self.state, step_metrics = self.train_step(
              self.state, train_step_lib.shard_batch(batch, self.mesh, self.batch_size),
              dropout_key)
          step += 1
          history.append(step_metrics)
          if not skip_nonfinite_steps and float(step_metrics["nonfinite"]):
            raise self._nonfinite(step)
          if step % self.log_every == 0 or step == num_train_steps:
            now = time.time()
            self.log(step, history, now - last_time)
            history, last_time = [], now
          if step % save_every == 0:
            self.save(step)
          if (eval_every and step % eval_every == 0) or step == num_train_steps:
            self.validate(step)
          if signals.should_stop(self.manager, step) and step < num_train_steps:
            self.save(step)  # Completed by the `finally` below.
            raise Preempted(signals.signum, step)
          if step < num_train_steps and self.out_of_time(step):
            logger.info("time budget of %.0f s reached (trained %.0f s): stopping at step %d",
                        self.max_train_seconds, self.clock.seconds(), step)
            self.validate(step)
            break
        self.save(step)
    finally:
      self.manager.wait_until_finished()
      self.manager.close()
      self.writer.close()
      self.progress.close()
    return self.state


@gin.configurable
def initialize_distributed(enabled: bool = False, coordinator_address: Optional[str] = None,
                           num_processes: Optional[int] = None,
                           process_id: Optional[int] = None) -> None:
  """`jax.distributed.initialize` for multi-process runs (arguments auto-detected on TPU pods,
  SLURM and Open MPI when None)."""
  if enabled:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
