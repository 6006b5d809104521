"""Registers a corpus as its AR / PaDIR task pair (see `tasks/__init__.py` for the naming).

Both tasks read the same source, tokenize with the same `PadirVocabulary`, append EOS after
trimming, and evaluate with sacreBLEU (`bleu_metric`, `chrf_metric`: seqio metric fns, default
sacreBLEU settings, 13a tokenizer, cased, as papers report; the signature is logged); the PaDIR
task then adds `padir_noise`. The machinery of the `tasks/` package, which holds the concrete
corpora (`tasks.builtin`, `tasks.multi30k`, `tasks.wmt`) and imports this, never the reverse.
"""
import functools
import logging
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import sacrebleu
import seqio
import tensorflow as tf

from padir import preprocessors as padir_preprocessors
from padir import vocab as vocab_lib

AR_SUFFIX = "_ar"
PADIR_SUFFIX = "_padir"


def _corpus_score(metric, key: str, targets: Sequence[str],
                  predictions: Sequence[str]) -> Dict[str, float]:
  score = metric.corpus_score(list(predictions), [list(targets)])
  logging.info("sacreBLEU %s: %s", metric.get_signature(), score)
  return {key: score.score}


def bleu_metric(targets: Sequence[str], predictions: Sequence[str]) -> Dict[str, float]:
  """seqio metric fn: corpus BLEU of `predictions` against one reference each."""
  return _corpus_score(sacrebleu.BLEU(), "bleu", targets, predictions)


def chrf_metric(targets: Sequence[str], predictions: Sequence[str]) -> Dict[str, float]:
  """seqio metric fn: corpus chrF of `predictions` against one reference each."""
  return _corpus_score(sacrebleu.CHRF(), "chrf", targets, predictions)


def output_features(vocabulary: vocab_lib.PadirVocabulary, padir: bool):
  """Task output features; PaDIR tasks add the (optional) noise features."""
  features = {
      "inputs": seqio.Feature(vocabulary=vocabulary, add_eos=True),
      "targets": seqio.Feature(vocabulary=vocabulary, add_eos=True),
  }
  if padir:
    features[padir_preprocessors.NOISED_FEATURE] = seqio.Feature(
        vocabulary=vocabulary, add_eos=False, required=False)
    features[padir_preprocessors.LOSS_WEIGHTS_FEATURE] = seqio.ContinuousFeature(
        dtype=tf.float32, rank=1, required=False)
  return features


def noise_preprocessor(noise: Optional[Mapping[str, object]]) -> Callable[..., tf.data.Dataset]:
  """`padir_noise` itself (parameters from gin / defaults), or with per-task `noise` overrides."""
  if not noise:
    return padir_preprocessors.padir_noise
  padir_preprocessors.NoiseConfig(**noise)  # Validates names and values now, not at first use.
  return functools.partial(padir_preprocessors.padir_noise, **noise)


def _signature(task: seqio.Task):
  return (repr(task.source), dict(task.output_features),
          tuple(repr(p) for p in task.preprocessors), task.shuffle_buffer_size,
          tuple(repr(m) for m in task.metric_fns))


def add_task(task: seqio.Task, overwrite: bool = False) -> str:
  """Registers `task`; the same configuration again is a no-op, another one needs `overwrite`."""
  if task.name in seqio.TaskRegistry.names():
    existing = seqio.TaskRegistry.get(task.name)
    if _signature(existing) == _signature(task):
      return task.name
    if not overwrite:
      raise ValueError(f"task {task.name!r} is already registered with another configuration "
                       f"(source {existing.source!r}); pass overwrite=True or choose another name")
    seqio.TaskRegistry.remove(task.name)
  seqio.TaskRegistry.add_provider(task.name, task)
  return task.name


def register_task_pair(name: str,
                       source: seqio.DataSource,
                       vocabulary: vocab_lib.PadirVocabulary,
                       *,
                       preprocessors: Sequence[Callable[..., tf.data.Dataset]] = (),
                       noise: Optional[Mapping[str, object]] = None,
                       shuffle_buffer_size: int = seqio.SHUFFLE_BUFFER_SIZE,
                       overwrite: bool = False) -> Tuple[str, str]:
  """Registers `{name}_ar` and `{name}_padir` over `source`.

  Args:
    name: corpus name (letters, digits, `_`, `.`, `:`).
    source: yields examples with string `inputs` / `targets` after `preprocessors`.
    vocabulary: shared by inputs, targets and both tasks.
    preprocessors: run first (e.g. a rekey), before tokenization.
    noise: `padir_noise` arguments fixed for this PaDIR task; unset ones come from gin or the
      defaults when the dataset is built.
    shuffle_buffer_size: example shuffle buffer of both tasks.
    overwrite: replace tasks registered under these names with another configuration.

  Returns:
    (AR task name, PaDIR task name).
  """
  common = [*preprocessors, seqio.preprocessors.tokenize,
            seqio.preprocessors.append_eos_after_trim]
  names = []
  for suffix, padir in ((AR_SUFFIX, False), (PADIR_SUFFIX, True)):
    task = seqio.Task(
        name + suffix,
        source=source,
        output_features=output_features(vocabulary, padir),
        preprocessors=common + ([noise_preprocessor(noise)] if padir else []),
        metric_fns=[bleu_metric, chrf_metric],
        shuffle_buffer_size=shuffle_buffer_size)
    names.append(add_task(task, overwrite))
  return names[0], names[1]
