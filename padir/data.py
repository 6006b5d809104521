"""Data I/O: checked text-file reading, seqio tasks -> numpy batches, ordered eval examples.

- `iter_text_lines(path)`: lines of a plain or gzip UTF-8 file; bad bytes name file and line.
- `get_dataset(...)`: batches of numpy arrays (int32 tokens, float32 loss weights) for training,
  deterministic given `seed`, sharded per host, resumable by skipping the first N batches.
  `@gin.configurable`, so runs bind it at the edge (`get_dataset.mixture_or_task_name =
  %MIXTURE_OR_TASK_NAME`, scoped `train/...`, `validation/...` as in T5X). With
  `length_buckets` (unpacked examples, e.g. PaDIR's), each batch holds examples of one length
  bucket, trimmed to that bucket's static lengths (`bucket_by_length`).
- `iterate_examples(...)`: one dict per example of a task split, in order, with texts and ids,
  without training noise: the source of evaluation and distillation.
"""
import difflib
import gzip
import importlib
from typing import Dict, Iterator, Mapping, Optional, Sequence, Tuple, Union

import gin
import numpy as np
import seqio
import tensorflow as tf

from padir import features as features_lib
from padir import preprocessors


class TextFileError(ValueError):
  """A problem in a text file, with the file (and line) named in the message."""


def iter_text_lines(path: str) -> Iterator[str]:
  """Yields the lines of a UTF-8 text file (gzip if the name ends in `.gz`), without newline.

  Lines are split on "\\n" only (like `tf.data.TextLineDataset`), so line numbers agree with
  TensorFlow's reading of the same file.

  Raises:
    TextFileError: invalid UTF-8 ("FILE:LINE: ...") or an unreadable gzip stream.
  """
  opener = gzip.open if path.endswith(".gz") else open
  line_number = 0
  try:
    with opener(path, "rb") as f:
      for line_number, raw in enumerate(f, start=1):
        try:
          text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
          raise TextFileError(f"{path}:{line_number}: invalid UTF-8 ({e.reason} at byte "
                              f"{e.start} of the line)") from None
        yield text.rstrip("\n").rstrip("\r")
  except (gzip.BadGzipFile, EOFError, OSError) as e:
    if isinstance(e, FileNotFoundError):
      raise
    raise TextFileError(f"{path}: unreadable after line {line_number}: {e}") from e


def _import_modules(module: Union[None, str, Sequence[str]]) -> None:
  """Imports task-registering modules (T5X's `DatasetConfig.module`)."""
  for name in [module] if isinstance(module, str) else (module or ()):
    importlib.import_module(name)


def get_mixture_or_task(name: str, module: Union[None, str, Sequence[str]] = None):
  """The registered seqio Task or Mixture `name`; an unknown name lists close matches."""
  _import_modules(module)
  known = list(seqio.MixtureRegistry.names()) + list(seqio.TaskRegistry.names())
  if name not in known:
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    raise ValueError(f"no seqio task or mixture named {name!r}"
                     + (f"; did you mean {close}?" if close else "")
                     + " (import the module that registers it, e.g. `import tasks.builtin`)")
  return seqio.get_mixture_or_task(name)


@gin.configurable
def task_vocabulary(mixture_or_task_name: str, module: Union[None, str, Sequence[str]] = None):
  """The targets vocabulary of a task: gin's `VOCABULARY = @data.task_vocabulary()`, so the
  model's special ids always come from the vocabulary its data was tokenized with."""
  return get_mixture_or_task(mixture_or_task_name, module).output_features["targets"].vocabulary


def default_feature_converter(mixture_or_task, pack: bool = False) -> seqio.FeatureConverter:
  """PadirFeatureConverter for PaDIR tasks (they have noised targets), else ARFeatureConverter."""
  if preprocessors.NOISED_FEATURE in mixture_or_task.output_features:
    return features_lib.PadirFeatureConverter(pack=pack)
  # The decoder's start token: PaDIR's BOS, or T5's 0 with a T5-layout vocabulary.
  special_tokens = getattr(mixture_or_task.output_features["targets"].vocabulary,
                           "special_tokens", None)
  if special_tokens is None:
    return features_lib.ARFeatureConverter(pack=pack)
  return features_lib.ARFeatureConverter(pack=pack, bos_id=special_tokens.bos_id)


ENCODER_PREFIX = "encoder_"  # Model features trimmed to a bucket's input length.
DECODER_PREFIX = "decoder_"  # Model features trimmed to a bucket's target length.


def bucket_lengths(length_buckets: Sequence[int],
                   input_length_buckets: Optional[Sequence[int]],
                   task_feature_lengths: Mapping[str, int]) -> Tuple[Tuple[int, int], ...]:
  """The (inputs, targets) lengths of each bucket, checked, closed by the task's feature lengths
  so that every example fits some bucket (none is cut or dropped).

  Args:
    length_buckets: target lengths (pieces + EOS), strictly increasing.
    input_length_buckets: the encoder-input length of each of those buckets, non-decreasing;
      None: the same numbers (capped at the input feature length).
    task_feature_lengths: {"inputs": I, "targets": T}.

  Returns:
    ((I_1, T_1), ..., (I, T)): `length_buckets` paired with their input lengths, then the
    task's feature lengths (unless they are the last pair already).
  """
  max_inputs, max_targets = task_feature_lengths["inputs"], task_feature_lengths["targets"]
  targets = tuple(length_buckets)
  if (not targets or targets[0] < 1 or targets[-1] > max_targets
      or any(a >= b for a, b in zip(targets, targets[1:]))):
    raise ValueError(f"get_dataset.length_buckets={targets}: expected strictly increasing target "
                     f"lengths in [1, {max_targets}] (task_feature_lengths['targets'])")
  inputs = (tuple(min(b, max_inputs) for b in targets) if input_length_buckets is None
            else tuple(input_length_buckets))
  if (len(inputs) != len(targets) or inputs[0] < 1 or inputs[-1] > max_inputs
      or any(a > b for a, b in zip(inputs, inputs[1:]))):
    raise ValueError(f"get_dataset.input_length_buckets={inputs}: expected one input length per "
                     f"entry of length_buckets ({len(targets)}), non-decreasing, in "
                     f"[1, {max_inputs}] (task_feature_lengths['inputs'])")
  buckets = tuple(zip(inputs, targets))
  full = (max_inputs, max_targets)
  return buckets if buckets[-1] == full else buckets + (full,)


def _real_length(features: Mapping[str, tf.Tensor], prefix: str) -> tf.Tensor:
  """One past the last non-zero position of the `[L]` features named `prefix*`: [] int32."""
  ends = []
  for name, value in features.items():
    if name.startswith(prefix):
      positions = tf.range(1, tf.shape(value)[0] + 1)
      ends.append(tf.reduce_max(tf.where(tf.not_equal(value, 0), positions, 0)))
  return tf.reduce_max(tf.stack(ends))


def bucket_by_length(ds: tf.data.Dataset, buckets: Sequence[Tuple[int, int]], batch_size: int,
                     drop_remainder: bool = True) -> tf.data.Dataset:
  """Batches of examples of one length bucket each, trimmed to that bucket's lengths.

  An example goes to the first bucket (I_k, T_k) that holds the real (non-zero) extent of its
  `encoder_*` features within I_k and of its `decoder_*` features within T_k; one that fits no
  bucket is an error, never cut. A batch is emitted when its bucket has `batch_size` examples,
  so the order is deterministic given the order of `ds`.

  Args:
    ds: unpacked examples of model features `[L]`, each named `encoder_*` or `decoder_*`.
    buckets: (I_k, T_k) of each bucket, e.g. from `bucket_lengths`.
    batch_size: rows per batch.
    drop_remainder: drop each bucket's last incomplete batch when `ds` ends.

  Returns:
    Batches of `[batch_size, I_k]` `encoder_*` and `[batch_size, T_k]` `decoder_*` features.
  """
  sides = {name: next((p for p in (ENCODER_PREFIX, DECODER_PREFIX) if name.startswith(p)), None)
           for name in ds.element_spec}
  unnamed = sorted(name for name, side in sides.items() if side is None)
  if unnamed:
    raise ValueError(f"get_dataset.length_buckets: features {unnamed} are neither "
                     f"{ENCODER_PREFIX}* nor {DECODER_PREFIX}*, so they have no bucket length")
  limits = {side: tf.constant([bucket[i] for bucket in buckets], tf.int32)
            for i, side in enumerate((ENCODER_PREFIX, DECODER_PREFIX))
            if side in sides.values()}

  def bucket_of(features):
    lengths = {side: _real_length(features, side) for side in limits}
    fits = tf.reduce_all(tf.stack([lengths[side] <= limits[side] for side in limits]), axis=0)
    check = tf.debugging.Assert(tf.reduce_any(fits), [
        "length_buckets: an example fits no bucket; real lengths (encoder, decoder):",
        *lengths.values()])
    with tf.control_dependencies([check]):
      return tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int64)

  def batch_bucket(key, window):
    lengths = {side: limit[key] for side, limit in limits.items()}
    return window.batch(batch_size, drop_remainder=drop_remainder).map(
        lambda batch: {name: value[:, :lengths[sides[name]]] for name, value in batch.items()})

  return ds.group_by_window(bucket_of, batch_bucket, window_size=batch_size)


@gin.configurable
def get_dataset(mixture_or_task_name: str,
                task_feature_lengths: Mapping[str, int],
                split: str = "train",
                batch_size: int = 32,
                shuffle: bool = True,
                seed: Optional[int] = None,
                *,
                shard_id: int = 0,
                num_shards: int = 1,
                feature_converter: Optional[seqio.FeatureConverter] = None,
                pack: bool = False,
                num_epochs: Optional[int] = None,
                skip_batches: int = 0,
                drop_remainder: bool = True,
                module: Union[None, str, Sequence[str]] = None,
                length_buckets: Optional[Sequence[int]] = None,
                input_length_buckets: Optional[Sequence[int]] = None,
                ) -> Iterator[Dict[str, np.ndarray]]:
  """Batches of model features as numpy arrays, for one host (shard) of the global batch.

  Args:
    mixture_or_task_name: a registered seqio Task or Mixture.
    task_feature_lengths: e.g. {"inputs": 64, "targets": 64}.
    split: the split to read.
    batch_size: examples per batch on this host.
    shuffle: shuffle examples (training).
    seed: makes shuffling and PaDIR noise reproducible; None draws a fresh seed.
    shard_id: this host's shard, in [0, num_shards).
    num_shards: number of hosts reading disjoint shards.
    feature_converter: None picks PadirFeatureConverter for PaDIR tasks, else
      ARFeatureConverter(pack=pack).
    pack: pack AR examples (only with the default converter).
    num_epochs: passes over the data; None repeats forever (training).
    skip_batches: skip this many batches first: given the same seed and arguments, resuming
      at step N with skip_batches=N continues the exact same stream.
    drop_remainder: drop a last incomplete batch (fixed shapes for jit).
    module: modules to import first, that register the task (e.g. "tasks.builtin").
    length_buckets: None: every batch is `[batch_size, L]` at the task's feature lengths.
      Else target lengths (pieces + EOS, increasing, e.g. (10, 13, 16, 19, 22, 26, 30, 36)):
      each batch holds examples of one bucket, trimmed to its lengths (`bucket_by_length`);
      examples longer than the last go to a final bucket of the task's feature lengths, so no
      real token is cut and no example is left out (but for each bucket's last incomplete
      batch when a finite stream ends, with `drop_remainder`). Each bucket is one batch shape
      (one compilation of a jitted step). Needs unpacked examples. With several shards, every
      host reads the whole (seeded) stream, so that all hosts batch the same bucket at each
      step, and keeps its `batch_size` rows of each global batch.
    input_length_buckets: the encoder-input length of each bucket of `length_buckets` (as
      many, non-decreasing): an example goes to the first bucket holding both its input and
      its target. None: the same numbers as `length_buckets` (capped at the input length).

  Yields:
    dicts of numpy arrays `[batch_size, L]`: int32 tokens, float32 `decoder_loss_weights`;
    with `length_buckets`, `encoder_*` `[batch_size, I_k]` and `decoder_*` `[batch_size, T_k]`
    of the batch's bucket k.
  """
  if not 0 <= shard_id < num_shards:
    raise ValueError(f"shard_id={shard_id} must be in [0, num_shards={num_shards})")
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size} must be >= 1")
  mixture_or_task = get_mixture_or_task(mixture_or_task_name, module)
  if feature_converter is None:
    feature_converter = default_feature_converter(mixture_or_task, pack=pack)
  buckets = _checked_buckets(length_buckets, input_length_buckets, task_feature_lengths,
                             feature_converter, seed=seed, num_shards=num_shards)
  # Bucketed hosts read the whole stream (see `length_buckets`); the others read their shard.
  shard_info = (seqio.ShardInfo(index=shard_id, num_shards=num_shards)
                if num_shards > 1 and buckets is None else None)
  ds = seqio.get_dataset(mixture_or_task, task_feature_lengths, feature_converter,
                         dataset_split=split, shuffle=shuffle, num_epochs=num_epochs,
                         shard_info=shard_info, seed=seed, verbose=False)
  if buckets is None:
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  else:
    ds = bucket_by_length(ds, buckets, batch_size * num_shards, drop_remainder)
    if num_shards > 1:
      rows = slice(shard_id * batch_size, (shard_id + 1) * batch_size)
      ds = ds.map(lambda batch: {name: value[rows] for name, value in batch.items()})
  if skip_batches:
    ds = ds.skip(skip_batches)
  return ds.as_numpy_iterator()


def _checked_buckets(length_buckets: Optional[Sequence[int]],
                     input_length_buckets: Optional[Sequence[int]],
                     task_feature_lengths: Mapping[str, int],
                     feature_converter: seqio.FeatureConverter, *, seed: Optional[int],
                     num_shards: int) -> Optional[Tuple[Tuple[int, int], ...]]:
  """`get_dataset`'s buckets (None: no bucketing), or a ValueError naming the setting."""
  if length_buckets is None:
    if input_length_buckets is not None:
      raise ValueError(f"get_dataset.input_length_buckets={tuple(input_length_buckets)} needs "
                       "get_dataset.length_buckets (the target lengths of the buckets)")
    return None
  if feature_converter.pack:
    raise ValueError("get_dataset.length_buckets needs unpacked examples: unset "
                     "get_dataset.pack (packing already removes the padding), or the buckets")
  if num_shards > 1 and seed is None:
    raise ValueError("get_dataset.length_buckets with several shards needs get_dataset.seed: "
                     "every host must read the same stream to batch the same buckets")
  return bucket_lengths(length_buckets, input_length_buckets, task_feature_lengths)


def iterate_examples(mixture_or_task_name: str,
                     split: str,
                     *,
                     module: Union[None, str, Sequence[str]] = None,
                     max_examples: Optional[int] = None) -> Iterator[Dict[str, object]]:
  """Examples of one task split, in order, untrimmed, without PaDIR noise.

  Local parallel text keeps its empty lines in evaluation splits (they come out as empty
  texts), so outputs stay aligned line by line with the files.

  Yields:
    {"inputs_text": str, "targets_text": str, "inputs": int32 ids + EOS, "targets": ...}.
  """
  task = get_mixture_or_task(mixture_or_task_name, module)
  if not isinstance(task, seqio.Task):
    raise ValueError(f"{mixture_or_task_name!r} is a mixture: iterate the examples of each of "
                     f"its tasks ({[t.name for t in task.tasks]})")
  if split not in task.splits:
    raise ValueError(f"task {task.name!r} has no split {split!r}; it has {list(task.splits)}")
  clean = task.replace(
      preprocessors=[p for p in task.preprocessors
                     if not preprocessors.is_noise_preprocessor(p)],
      output_features={k: v for k, v in task.output_features.items()
                       if k in ("inputs", "targets")})
  ds = clean.get_dataset(sequence_length=None, split=split, shuffle=False, num_epochs=1)
  if max_examples is not None:
    ds = ds.take(max_examples)
  for example in ds.as_numpy_iterator():
    yield {
        "inputs_text": example["inputs_pretokenized"].decode("utf-8"),
        "targets_text": example["targets_pretokenized"].decode("utf-8"),
        "inputs": example["inputs"].astype(np.int32),
        "targets": example["targets"].astype(np.int32),
    }
