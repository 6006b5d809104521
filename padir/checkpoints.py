"""Checkpoints (orbax) and the record of a run (its gin config, seed, package versions).

Layout in `model_dir`:
  checkpoints/<step>/params/        the parameters (T5X names: encoder/layers_0/...)
  checkpoints/<step>/train_state/   optimizer state and step counters
  config.gin                        the run's operative gin config
  run_info.json                     seed, package versions, devices, command line, vocabulary

Each step directory is written to a temporary name and renamed when complete (orbax's atomic
commit), so a killed save never looks like a checkpoint. A checkpoint that is complete but
unreadable (a truncated file, a lost disk block) is skipped with a warning and the previous one
is used; a resuming trainer deletes it, so that the step is saved again. A checkpoint whose
parameter tree does not match the model raises `CheckpointMismatchError` naming every differing
path and shape: that is a config error, never silently "fixed" by starting over.

The data position is the step: datasets are deterministic and the trainer skips `step` batches
on resume.
"""
import dataclasses
import hashlib
import json
import logging
import os
import platform
import sys
import time
from importlib import metadata as importlib_metadata
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from padir import errors

logger = logging.getLogger(__name__)

CHECKPOINTS_SUBDIR = "checkpoints"
CONFIG_FILE = "config.gin"
RUN_INFO_FILE = "run_info.json"
ITEMS = ("params", "train_state")
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "gin-config", "numpy",
            "seqio", "tensorflow", "sentencepiece", "padir")


class CheckpointMismatchError(ValueError):
  """A checkpoint whose tree differs from the model's (another model config)."""


class VocabularyMismatchError(ValueError):
  """A run loaded with another vocabulary than it was trained with."""


class NoUsableCheckpointError(errors.UserError, RuntimeError):
  """Checkpoints exist but none of them can be read."""


def checkpoint_dir(model_dir: str) -> str:
  return os.path.join(model_dir, CHECKPOINTS_SUBDIR)


def _handler_registry() -> ocp.handlers.DefaultCheckpointHandlerRegistry:
  registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
  for item in ITEMS:
    handler = ocp.handlers.PyTreeCheckpointHandler()
    registry.add(item, ocp.args.PyTreeSave, handler)
    registry.add(item, ocp.args.PyTreeRestore, handler)
  return registry


def make_manager(directory: str, *, keep: Optional[int] = None,
                 read_only: bool = False) -> ocp.CheckpointManager:
  """An orbax manager for `directory` (`model_dir/checkpoints`).

  Args:
    directory: where step directories live.
    keep: how many of the newest checkpoints to keep (None: all).
    read_only: for evaluation / inference jobs, which must never write.
  """
  if keep is not None and keep < 1:
    raise ValueError(f"keep_checkpoints={keep}: must be >= 1 (or None to keep all)")
  options = ocp.CheckpointManagerOptions(
      max_to_keep=None if read_only else keep, read_only=read_only, create=not read_only,
      cleanup_tmp_directories=not read_only, enable_async_checkpointing=not read_only)
  # Orbax's storage layer accepts absolute paths only (a relative one fails at the first save).
  return ocp.CheckpointManager(os.path.abspath(directory), options=options,
                               handler_registry=_handler_registry())


def save(manager: ocp.CheckpointManager, step: int, params: Any, train_state: Any) -> bool:
  """Starts saving `params` and `train_state` (pytrees of global jax arrays) as `step`.

  The save is asynchronous after the device-to-host copy, so the arrays may be donated right
  after; call `manager.wait_until_finished()` before exiting. Returns False (and writes
  nothing) if `step` is already saved.
  """
  if step in manager.all_steps():
    return False
  return manager.save(step, force=True, args=ocp.args.Composite(
      params=ocp.args.PyTreeSave(params), train_state=ocp.args.PyTreeSave(train_state)))


def save_params(directory: str, step: int, params: Any) -> None:
  """Writes `params` alone as `step` in `directory` (an imported checkpoint: `load_params` and
  warm starts read it; it has no optimizer state to resume from)."""
  manager = make_manager(directory, keep=None)
  manager.save(step, force=True, args=ocp.args.Composite(params=ocp.args.PyTreeSave(params)))
  manager.wait_until_finished()
  manager.close()


def _key_name(key) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def path_name(path: Sequence[Any]) -> str:
  """'encoder/layers_0/attention/query/kernel' from a jax key path."""
  return "/".join(_key_name(k) for k in path)


def _shapes(tree) -> Dict[str, Tuple[int, ...]]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {path_name(p): tuple(leaf.shape) for p, leaf in leaves}


def _describe_mismatch(item: str, stored: Mapping[str, Tuple[int, ...]],
                       expected: Mapping[str, Tuple[int, ...]], limit: int = 20) -> list:
  lines = []
  for name in sorted(set(stored) | set(expected)):
    if name not in expected:
      lines.append(f"  {item}/{name}: in the checkpoint {stored[name]}, not in the model")
    elif name not in stored:
      lines.append(f"  {item}/{name}: in the model {expected[name]}, not in the checkpoint")
    elif stored[name] != expected[name]:
      lines.append(f"  {item}/{name}: checkpoint {stored[name]} vs model {expected[name]}")
  if len(lines) > limit:
    lines = lines[:limit] + [f"  ... and {len(lines) - limit} more"]
  return lines


def _check_matches(manager: ocp.CheckpointManager, step: int,
                   abstract: Mapping[str, Any]) -> None:
  """Raises CheckpointMismatchError if the stored trees differ from `abstract`'s; any other
  exception means the checkpoint's metadata is unreadable."""
  stored = manager.item_metadata(step)
  lines = []
  for item, tree in abstract.items():
    if stored[item] is None:
      raise FileNotFoundError(f"item {item!r} missing from step {step}")
    lines += _describe_mismatch(item, _shapes(stored[item].tree), _shapes(tree))
  if lines:
    hint = ("" if any(line.startswith("  params/") for line in lines) else
            "\n(The parameters match: did the optimizer change? Start a new model_dir, or load "
            "the parameters only with padir.checkpoints.load_params.)")
    raise CheckpointMismatchError(
        f"checkpoint {manager.directory}/{step} was written by a different model config; "
        f"differences (path: shapes):\n" + "\n".join(lines) + hint)


def _restore_args(abstract: Mapping[str, Any]) -> ocp.args.Composite:
  return ocp.args.Composite(**{
      item: ocp.args.PyTreeRestore(
          tree, restore_args=ocp.checkpoint_utils.construct_restore_args(tree))
      for item, tree in abstract.items()})


def _restore_newest_readable(manager: ocp.CheckpointManager, steps: Sequence[int],
                             abstract_fn: Callable[[int], Mapping[str, Any]]
                             ) -> Tuple[Dict[str, Any], int]:
  """Restores the newest of `steps` that reads; warns about each one skipped.

  `abstract_fn(step)` gives the items to restore, as trees of `jax.ShapeDtypeStruct`: leaves
  with a sharding come back as global jax arrays, leaves without one as host numpy arrays.
  """
  failures = []
  for step in sorted(steps, reverse=True):
    try:
      abstract = abstract_fn(step)
      _check_matches(manager, step, abstract)
      restored = manager.restore(step, args=_restore_args(abstract))
    except CheckpointMismatchError:
      raise
    except Exception as e:  # pylint: disable=broad-except  (any read failure = corrupted)
      logger.warning("checkpoint %s/%d is unreadable (%s: %s); falling back to the previous "
                      "one", manager.directory, step, type(e).__name__, str(e)[:300])
      failures.append(f"{step}: {type(e).__name__}: {str(e)[:200]}")
      continue
    return {item: restored[item] for item in abstract}, step
  raise NoUsableCheckpointError(
      f"no readable checkpoint in {manager.directory}; tried steps:\n  " + "\n  ".join(failures)
      + "\nMove the directory away (or pick another model_dir) to start from scratch.")


def restore_latest(manager: ocp.CheckpointManager, abstract_params: Any,
                   abstract_train_state: Any) -> Optional[Tuple[Any, Any, int]]:
  """Restores the newest readable checkpoint as `(params, train_state, step)`, or None if
  there is none. The abstract trees (`jax.ShapeDtypeStruct`s with shardings) give structure,
  dtypes and the shardings to restore into. Unreadable newer checkpoints are deleted (with a
  warning), so that training writes those steps again.

  Raises:
    CheckpointMismatchError: the checkpoint's trees differ from the abstract ones.
    NoUsableCheckpointError: checkpoints exist but none can be read.
  """
  manager.reload()
  steps = manager.all_steps()
  if not steps:
    return None
  abstract = {"params": abstract_params, "train_state": abstract_train_state}
  restored, step = _restore_newest_readable(manager, steps, lambda _: abstract)
  for unreadable in [s for s in steps if s > step]:
    logger.warning("deleting the unreadable checkpoint %s/%d: training goes on from step %d and "
                    "saves that step again", manager.directory, unreadable, step)
    manager.delete(unreadable)
  return restored["params"], restored["train_state"], step


@dataclasses.dataclass(frozen=True)
class CheckpointPath:
  """Where a model_dir, its checkpoints/ dir or one step dir (checkpoints/<step>) points.

  Attributes:
    directory: the checkpoints directory (the path itself when it is none of the three).
    step: the step asked for, or the step of a step dir; None: the newest.
  """
  directory: str
  step: Optional[int]

  @property
  def model_dir(self) -> Optional[str]:
    """The `padir train` model_dir holding `directory` as its checkpoints/, else None."""
    if os.path.basename(self.directory) != CHECKPOINTS_SUBDIR:
      return None
    return os.path.dirname(self.directory)


def resolve(path: str, step: Optional[int] = None) -> CheckpointPath:
  """Accepts a model_dir, its checkpoints/ dir, or one step dir (checkpoints/<step>).

  Raises:
    ValueError: a step dir and a different `step`.
  """
  path = os.path.abspath(path)
  if os.path.isdir(os.path.join(path, CHECKPOINTS_SUBDIR)):
    return CheckpointPath(os.path.join(path, CHECKPOINTS_SUBDIR), step)
  base = os.path.basename(path)
  if base.isdigit() and os.path.isdir(os.path.join(path, "params")):
    if step is not None and step != int(base):
      raise ValueError(f"checkpoint dir {path} is step {base}, not {step}")
    return CheckpointPath(os.path.dirname(path), int(base))
  return CheckpointPath(path, step)


def _open_read_only(path: str, step: Optional[int] = None
                    ) -> Tuple[ocp.CheckpointManager, Optional[int]]:
  """A read-only manager of the checkpoints `path` points to (see `resolve`), and the step."""
  location = resolve(path, step)
  if not os.path.isdir(location.directory):
    raise FileNotFoundError(f"no checkpoint directory at {location.directory}")
  return make_manager(location.directory, read_only=True), location.step


def load_params(path: str, step: Optional[int] = None,
                abstract_params: Any = None) -> Tuple[Any, int]:
  """Loads parameters only (no optimizer state), for evaluation and inference.

  Args:
    path: a model_dir, its `checkpoints/` directory, or one step directory.
    step: the step to load (None: the newest readable one, falling back past corrupted ones).
    abstract_params: optional tree of `jax.ShapeDtypeStruct` with shardings (e.g. from
      `padir.trainer.abstract_train_state`): the params are checked against it and restored
      sharded; without it they come back as host numpy arrays.

  Returns:
    (params, step).
  """
  manager, step = _open_read_only(path, step)
  directory, steps = str(manager.directory), manager.all_steps()
  if not steps:
    raise FileNotFoundError(f"no complete checkpoint in {directory}")
  if step is not None and step not in steps:
    raise FileNotFoundError(f"no checkpoint for step {step} in {directory}; it has {steps}")
  if abstract_params is None:  # Host numpy arrays shaped as stored.
    abstract_fn = lambda s: {"params": jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype),
        manager.item_metadata(s)["params"].tree)}
  else:
    abstract_fn = lambda _: {"params": abstract_params}
  restored, step = _restore_newest_readable(
      manager, [step] if step is not None else steps, abstract_fn)
  return restored["params"], step


def average_params(path: str, steps: Sequence[int]) -> Any:
  """The element-wise mean of the parameters of `steps` of one run (fairseq's
  `average_checkpoints.py`): summed in float32, returned in each leaf's stored dtype, as host
  numpy arrays. `path` as `load_params`'s."""
  if not steps:
    raise ValueError("average_params: no steps to average")
  total, dtypes = None, None
  for step in steps:
    params, _ = load_params(path, step)
    if total is None:
      dtypes = jax.tree.map(lambda x: x.dtype, params)
      total = jax.tree.map(lambda x: np.asarray(x, np.float32), params)
    else:
      total = jax.tree.map(lambda t, x: t + np.asarray(x, np.float32), total, params)
  return jax.tree.map(lambda t, dtype: (t / len(steps)).astype(dtype), total, dtypes)


def saved_steps(path: str) -> List[int]:
  """The complete checkpoint steps under a model_dir, its checkpoints/ dir or a step dir."""
  return sorted(_open_read_only(path)[0].all_steps())


def _package_versions() -> Dict[str, Optional[str]]:
  versions = {}
  for name in PACKAGES:
    try:
      versions[name] = importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
      versions[name] = None
  return versions


def read_run_info(model_dir: str) -> Dict[str, Any]:
  """`model_dir`'s run_info.json ({} if it has none)."""
  path = os.path.join(model_dir, RUN_INFO_FILE)
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def vocabulary_record(vocabulary: Any) -> Optional[Dict[str, str]]:
  """{'file', 'md5'} of a SentencePiece vocabulary's model (None for another kind): what
  `check_vocabulary` compares when the run is loaded again."""
  model = getattr(vocabulary, "sp_model", None)
  if not isinstance(model, bytes):
    return None
  return {"file": str(getattr(vocabulary, "sentencepiece_model_file", "")),
          "md5": hashlib.md5(model).hexdigest()}


def check_vocabulary(model_dir: str, vocabulary: Any) -> None:
  """Raises VocabularyMismatchError when `model_dir`'s run_info.json recorded another
  SentencePiece model than `vocabulary`'s (its gin config names a task now registered over
  another corpus, say). Runs without the record (older runs, other vocabularies) pass."""
  recorded = read_run_info(model_dir).get("vocabulary")
  current = vocabulary_record(vocabulary)
  if recorded and current and recorded["md5"] != current["md5"]:
    raise VocabularyMismatchError(
        f"{os.path.join(model_dir, RUN_INFO_FILE)}: the run was trained with the SentencePiece "
        f"model {recorded['file']} (md5 {recorded['md5']}), but its gin config now gives "
        f"{current['file']} (md5 {current['md5']}): the task or vocabulary it names was "
        "registered again over other data; register the run's own corpus under that name, or "
        "bind its vocabulary file")


def write_run_record(model_dir: str, *, gin_config: str, seed: int,
                     extra: Optional[Mapping[str, Any]] = None) -> None:
  """Writes `config.gin` (the operative gin config) and `run_info.json` (seed, package
  versions, python, devices, command line, `extra`) into `model_dir`, process 0 only. Also the
  record of `padir eval` and `padir distill` output dirs.

  A resumed run whose config differs from the saved one gets a warning, and the old file is
  kept as `config.gin.<unix time>` before being replaced.
  """
  if jax.process_index() != 0:
    return
  os.makedirs(model_dir, exist_ok=True)
  config_path = os.path.join(model_dir, CONFIG_FILE)
  if os.path.exists(config_path):
    with open(config_path) as f:
      old = f.read()
    if old != gin_config:
      kept = f"{config_path}.{int(time.time())}"
      os.replace(config_path, kept)
      logger.warning("the gin config differs from the one this model_dir was started with; "
                      "the old one is kept as %s", kept)
  with open(config_path, "w") as f:
    f.write(gin_config)
  info = {
      "seed": seed,
      "packages": _package_versions(),
      "python": platform.python_version(),
      "platform": platform.platform(),
      "devices": [str(d) for d in jax.devices()],
      "process_count": jax.process_count(),
      "argv": sys.argv,
      "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
      **dict(extra or {}),
  }
  with open(os.path.join(model_dir, RUN_INFO_FILE), "w") as f:
    json.dump(info, f, indent=2, default=str)
