"""Data I/O: checked text-file reading, seqio tasks -> numpy batches, ordered eval examples.

- `iter_text_lines(path)`: lines of a plain or gzip UTF-8 file; bad bytes name file and line.
- `get_dataset(...)`: batches of numpy arrays (int32 tokens, float32 loss weights) for training,
  deterministic given `seed`, sharded per host, resumable by skipping the first N batches.
  `@gin.configurable`, so runs bind it at the edge (`get_dataset.mixture_or_task_name =
  %MIXTURE_OR_TASK_NAME`, scoped `train/...`, `validation/...` as in T5X).
- `iterate_examples(...)`: one dict per example of a task split, in order, with texts and ids,
  without training noise: the source of evaluation and distillation.
"""
import difflib
import gzip
import importlib
from typing import Dict, Iterator, Mapping, Optional, Sequence, Union

import gin
import numpy as np
import seqio

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
  return features_lib.ARFeatureConverter(pack=pack)


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

  Yields:
    dicts of numpy arrays `[batch_size, L]`: int32 tokens, float32 `decoder_loss_weights`.
  """
  if not 0 <= shard_id < num_shards:
    raise ValueError(f"shard_id={shard_id} must be in [0, num_shards={num_shards})")
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size} must be >= 1")
  mixture_or_task = get_mixture_or_task(mixture_or_task_name, module)
  if feature_converter is None:
    feature_converter = default_feature_converter(mixture_or_task, pack=pack)
  shard_info = seqio.ShardInfo(index=shard_id, num_shards=num_shards) if num_shards > 1 else None
  ds = seqio.get_dataset(mixture_or_task, task_feature_lengths, feature_converter,
                         dataset_split=split, shuffle=shuffle, num_epochs=num_epochs,
                         shard_info=shard_info, seed=seed, verbose=False)
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  if skip_batches:
    ds = ds.skip(skip_batches)
  return ds.as_numpy_iterator()


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
