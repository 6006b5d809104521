"""Local parallel text as seqio tasks: a folder of aligned files, or a `source<TAB>target` TSV.

Folder layout (as ../shared/data/multi30k): `{split}.{src}[.gz]` and `{split}.{tgt}[.gz]`, one
sentence a line, UTF-8, aligned line by line. A TSV has one `source<TAB>target` pair a line
(the format `padir distill` writes).

  register_parallel_text("multi30k_en_de", vocabulary="spm.model",
                         folder="../shared/data/multi30k", src="en", tgt="de")
  register_parallel_text("builtin_distilled", vocabulary="spm.model",
                         folder=corpus_dir, src="src", tgt="tgt", tsv="distilled.tsv")

Files are checked once, on first read: files of different lengths name both files and both
counts; invalid UTF-8 and TSV lines without exactly one tab name the file and line. Pairs with an
empty side are dropped from training splits (the count is logged) and kept in the others, so
outputs stay aligned with the files.

`register_builtin(...)` registers the built-in generated corpus (`padir.corpus`) this way. The
gin-facing names (`tasks.local.parallel_text_task`, `tasks.builtin`) live in the `tasks/`
package, which imports this module (padir never imports `tasks`).
"""
import dataclasses
import logging
import os
import re
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import seqio
import tensorflow as tf

from padir import corpus
from padir import data
from padir import registration
from padir import vocab as vocab_lib

DEFAULT_SHUFFLE_BUFFER_SIZE = 10_000
_VALIDATION_ALIASES = ("val", "valid", "dev")


@dataclasses.dataclass(frozen=True)
class ParallelFiles:
  """One split: aligned `source` / `target` files, or a TSV in `source` (`target` None).

  A path may omit `.gz`: `resolve()` picks PATH, else PATH.gz, when the files are read.
  """
  source: str
  target: Optional[str] = None

  @property
  def is_tsv(self) -> bool:
    return self.target is None

  def resolve(self) -> "ParallelFiles":
    """The same files with existing paths (adding `.gz` where only that exists)."""
    return ParallelFiles(*(_existing(p) for p in (self.source, self.target) if p is not None))


def _existing(path: str) -> str:
  for candidate in (path, path + ".gz"):
    if os.path.isfile(candidate):
      return candidate
  raise FileNotFoundError(f"parallel text file {path} (or {path}.gz) does not exist")


@dataclasses.dataclass(frozen=True)
class FileCheck:
  """What the check of one split's files found."""
  num_lines: int
  num_empty: int


def check_parallel_files(files: ParallelFiles) -> FileCheck:
  """Reads a split's files through, checking them (see the module docstring).

  Raises:
    FileNotFoundError: a missing file.
    data.TextFileError: misaligned files, invalid UTF-8, a TSV line without exactly one tab.
  """
  files = files.resolve()
  num_lines = num_empty = 0
  if files.is_tsv:
    for num_lines, line in enumerate(data.iter_text_lines(files.source), start=1):
      tabs = line.count("\t")
      if tabs != 1:
        raise data.TextFileError(f"{files.source}:{num_lines}: expected 'source<TAB>target', "
                                 f"found {tabs} tabs")
      source, target = line.split("\t")
      num_empty += not (_strip(source) and _strip(target))
    return FileCheck(num_lines, num_empty)
  sources = data.iter_text_lines(files.source)
  targets = data.iter_text_lines(files.target)
  num_targets = 0
  for source in sources:
    num_lines += 1
    target = next(targets, None)
    if target is None:
      num_lines += sum(1 for _ in sources)
      break
    num_targets += 1
    num_empty += not (_strip(source) and _strip(target))
  num_targets += sum(1 for _ in targets)
  if num_lines != num_targets:
    raise data.TextFileError(f"misaligned parallel files: {files.source} has {num_lines} lines "
                             f"but {files.target} has {num_targets}")
  return FileCheck(num_lines, num_empty)


def _strip(text: str) -> str:
  return text.strip(" \t\n\r\f\v")  # ASCII whitespace, as tf.strings.strip.


def _file_name(folder: str, prefix: str, lang: str) -> Optional[str]:
  try:
    return _existing(os.path.join(folder, f"{prefix}.{lang}"))
  except FileNotFoundError:
    return None


def find_parallel_files(folder: str, src: str, tgt: str) -> Dict[str, ParallelFiles]:
  """Splits of a folder with `{split}.{src}[.gz]` / `{split}.{tgt}[.gz]` files.

  Also names the usual aliases when unambiguous: "validation" for a single val/valid/dev
  split, "test" for a single test* split (Multi30k: test_2016_flickr).
  """
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"parallel text folder {folder} does not exist")
  pattern = re.compile(rf"^(?P<split>.+)\.{re.escape(src)}(\.gz)?$")
  splits = {}
  for name in sorted(os.listdir(folder)):
    match = pattern.match(name)
    if not match:
      continue
    prefix = match.group("split")
    target = _file_name(folder, prefix, tgt)
    if target is None:
      logging.warning("%s: %s has no %s.%s[.gz] beside it; split %r skipped", folder, name,
                      prefix, tgt, prefix)
      continue
    splits[prefix] = ParallelFiles(os.path.join(folder, name), target)
  if not splits:
    raise FileNotFoundError(f"no {{split}}.{src}[.gz] / {{split}}.{tgt}[.gz] file pairs in "
                            f"{folder} (it has {sorted(os.listdir(folder))})")
  aliases = {"validation": [s for s in splits if s in _VALIDATION_ALIASES],
             "test": [s for s in splits if s.startswith("test") and s != "test"]}
  for alias, candidates in aliases.items():
    if alias not in splits and len(candidates) == 1:
      splits[alias] = splits[candidates[0]]
  return splits


class ParallelTextSource(seqio.DataSource):
  """A seqio DataSource of parallel text; examples are {"inputs": str, "targets": str}."""

  def __init__(self,
               files: Mapping[str, ParallelFiles],
               drop_empty_splits: Sequence[str] = ("train",),
               prepare_fn: Optional[Callable[[], object]] = None):
    """Makes a source; files are checked on first read, not here.

    Args:
      files: split name -> its files.
      drop_empty_splits: splits whose pairs with an empty side are dropped (training).
      prepare_fn: optional callable run before reading, that creates missing files (used by
        generated corpora).
    """
    self._files = dict(files)
    self._drop_empty_splits = tuple(drop_empty_splits)
    self._prepare_fn = prepare_fn
    self._checks: Dict[str, FileCheck] = {}
    super().__init__(splits=tuple(self._files), caching_permitted=True)

  def __repr__(self) -> str:
    return (f"ParallelTextSource(files={self._files!r}, "
            f"drop_empty_splits={self._drop_empty_splits!r}, prepare_fn={self._prepare_fn!r})")

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return True

  def list_shards(self, split: str) -> Sequence[str]:
    return [split]

  def _check(self, split: str) -> FileCheck:
    if split not in self._files:
      raise ValueError(f"no split {split!r}; this source has {list(self._files)}")
    if split not in self._checks:
      if self._prepare_fn is not None:
        self._prepare_fn()
      check = check_parallel_files(self._files[split])
      if check.num_empty and split in self._drop_empty_splits:
        logging.warning("%s split %r: dropping %d of %d pairs with an empty side",
                        self._files[split].source, split, check.num_empty, check.num_lines)
      self._checks[split] = check
    return self._checks[split]

  def num_input_examples(self, split: str) -> int:
    check = self._check(split)
    if split in self._drop_empty_splits:
      return check.num_lines - check.num_empty
    return check.num_lines

  def get_dataset(self, split: str = "train", shuffle: bool = True, seed: Optional[int] = None,
                  shard_info: Optional[seqio.ShardInfo] = None, *, sequence_length=None,
                  use_cached: bool = False, num_epochs: Optional[int] = 1) -> tf.data.Dataset:
    """The split's pairs in file order (the Task shuffles); `shard_info` takes every n-th."""
    del shuffle, seed, sequence_length, use_cached, num_epochs  # Order is the files'.
    self._check(split)
    files = self._files[split].resolve()
    if files.is_tsv:
      ds = _lines(files.source).map(_split_tsv_line, num_parallel_calls=tf.data.AUTOTUNE)
    else:
      ds = tf.data.Dataset.zip((_lines(files.source), _lines(files.target))).map(
          lambda s, t: {"inputs": tf.strings.strip(s), "targets": tf.strings.strip(t)},
          num_parallel_calls=tf.data.AUTOTUNE)
    if shard_info is not None:
      ds = ds.shard(shard_info.num_shards, shard_info.index)
    if split in self._drop_empty_splits:
      ds = ds.filter(lambda ex: (tf.strings.length(ex["inputs"]) > 0) &
                     (tf.strings.length(ex["targets"]) > 0))
    return ds


def _lines(path: str) -> tf.data.Dataset:
  return tf.data.TextLineDataset(path, compression_type="GZIP" if path.endswith(".gz") else "")


def _split_tsv_line(line):
  parts = tf.strings.split(line, "\t", maxsplit=1)
  return {"inputs": tf.strings.strip(parts[0]), "targets": tf.strings.strip(parts[1])}


def register_parallel_text(name: str,
                           *,
                           vocabulary: Union[str, vocab_lib.PadirVocabulary],
                           folder: Optional[str] = None,
                           src: Optional[str] = None,
                           tgt: Optional[str] = None,
                           splits: Optional[Mapping[str, str]] = None,
                           tsv: Union[None, str, Mapping[str, str]] = None,
                           max_target_length: int = vocab_lib.DEFAULT_MAX_TARGET_LENGTH,
                           drop_empty_splits: Sequence[str] = ("train",),
                           noise: Optional[Mapping[str, object]] = None,
                           prepare_fn: Optional[Callable[[], object]] = None,
                           shuffle_buffer_size: int = DEFAULT_SHUFFLE_BUFFER_SIZE,
                           overwrite: bool = False) -> Tuple[str, str]:
  """Registers `{name}_ar` and `{name}_padir` over local parallel text.

  Args:
    name: corpus name, e.g. "multi30k_en_de".
    vocabulary: a PadirVocabulary, or the path of a SentencePiece model (then
      `max_target_length` sizes its PaDIR ids).
    folder: folder of `{split}.{src}[.gz]` / `{split}.{tgt}[.gz]` files.
    src: source language suffix, e.g. "en".
    tgt: target language suffix, e.g. "de".
    splits: task split -> file prefix in `folder` (e.g. {"test": "test_2016_flickr"}); None
      lists the folder now (`find_parallel_files`, with its aliases).
    tsv: a TSV of `source<TAB>target` for the "train" split, or split -> TSV; adds to or
      replaces the folder's splits (distilled training data beside the original eval sets).
    max_target_length: see `vocabulary`.
    drop_empty_splits: splits where pairs with an empty side are dropped.
    noise: `padir_noise` arguments fixed for the PaDIR task (else gin / defaults).
    prepare_fn: run before reading files or the vocabulary (creates them when missing).
    shuffle_buffer_size: example shuffle buffer.
    overwrite: replace tasks already registered under these names with another configuration.

  Returns:
    (AR task name, PaDIR task name).
  """
  files: Dict[str, ParallelFiles] = {}
  if folder is not None:
    if not src or not tgt:
      raise ValueError(f"register_parallel_text({name!r}): a folder needs src and tgt suffixes")
    if splits is None:
      files.update(find_parallel_files(folder, src, tgt))
    else:
      files.update({split: ParallelFiles(os.path.join(folder, f"{prefix}.{src}"),
                                         os.path.join(folder, f"{prefix}.{tgt}"))
                    for split, prefix in splits.items()})
  elif splits is not None:
    raise ValueError(f"register_parallel_text({name!r}): splits needs a folder")
  if tsv is not None:
    for split, path in ({"train": tsv} if isinstance(tsv, str) else dict(tsv)).items():
      files[split] = ParallelFiles(path)
  if not files:
    raise ValueError(f"register_parallel_text({name!r}): give a folder (with src, tgt) or a tsv")
  if isinstance(vocabulary, str):
    vocabulary = vocab_lib.PadirVocabulary(vocabulary, max_target_length, prepare_fn=prepare_fn)
  source = ParallelTextSource(files, drop_empty_splits=drop_empty_splits, prepare_fn=prepare_fn)
  return registration.register_task_pair(name, source, vocabulary, noise=noise,
                                         shuffle_buffer_size=shuffle_buffer_size,
                                         overwrite=overwrite)


def parallel_text_task(name: str,
                       *,
                       flavour: str = "padir",
                       vocabulary: Union[str, vocab_lib.PadirVocabulary],
                       tsv: Union[None, str, Mapping[str, str]] = None,
                       folder: Optional[str] = None,
                       src: Optional[str] = None,
                       tgt: Optional[str] = None,
                       max_target_length: int = vocab_lib.DEFAULT_MAX_TARGET_LENGTH) -> str:
  """Registers local parallel text (see `register_parallel_text`) and returns one task name,
  `{name}_ar` or `{name}_padir`: for gin, `MIXTURE_OR_TASK_NAME = @local.parallel_text_task()`,
  so any process that parses the gin file (train, eval, infer) has the task (gin-configurable
  as `tasks.local.parallel_text_task`)."""
  if flavour not in ("ar", "padir"):
    raise ValueError(f"parallel_text_task(flavour={flavour!r}): expected 'ar' or 'padir'")
  ar_task, padir_task = register_parallel_text(
      name, vocabulary=vocabulary, tsv=tsv, folder=folder, src=src, tgt=tgt,
      max_target_length=max_target_length)
  return padir_task if flavour == "padir" else ar_task


DEFAULT_MAX_TARGET_LENGTH = 64  # The built-in corpus's vocabulary sizes PaDIR ids for this.


def register_builtin(name: str = "builtin",
                     *,
                     seed: int = 0,
                     multimodality: int = corpus.DEFAULT_MULTIMODALITY,
                     num_train: int = 50_000,
                     num_validation: int = 1_000,
                     num_test: int = 1_000,
                     vocab_size: int = 1_000,
                     max_words: int = corpus.MAX_WORDS,
                     dominant_share: Optional[float] = None,
                     max_target_length: int = DEFAULT_MAX_TARGET_LENGTH,
                     data_dir: Optional[str] = None,
                     noise: Optional[Mapping[str, object]] = None,
                     overwrite: bool = False) -> Tuple[str, str]:
  """Registers `{name}_ar` / `{name}_padir` over a generated corpus (see `padir.corpus`).

  Nothing is read or written here: the corpus and its SentencePiece model are generated into
  `data_dir` the first time a dataset or the vocabulary is used (seconds), then reused.

  Args:
    name: corpus name.
    seed: generation seed.
    multimodality: level in `padir.corpus.MULTIMODALITY_LEVELS`.
    num_train: training pairs.
    num_validation: validation pairs.
    num_test: test pairs.
    vocab_size: SentencePiece pieces requested.
    max_words: longest source sentence in words (`padir.corpus.MIN_WORDS`..`MAX_WORDS`).
    dominant_share: each choice's first variant's probability (`padir.corpus.realize_target`);
      None: uniform choices.
    max_target_length: sizes the vocabulary's PaDIR ids (targets up to this many pieces).
    data_dir: where to generate; default `$PADIR_DATA_DIR/builtin/<parameters>`.
    noise: `padir_noise` arguments fixed for the PaDIR task.
    overwrite: replace tasks already registered under these names with other parameters.

  Returns:
    (AR task name, PaDIR task name).
  """
  if data_dir is None:
    data_dir = os.path.join(
        corpus.default_data_dir(), "builtin",
        f"v{corpus.GENERATOR_VERSION}_seed{seed}_mm{multimodality}_"
        f"{num_train}_{num_validation}_{num_test}_spm{vocab_size}"
        + (f"_w{max_words}" if max_words != corpus.MAX_WORDS else "")
        + (f"_dom{dominant_share:g}" if dominant_share is not None else ""))
  spec = corpus.CorpusSpec(data_dir, seed=seed, multimodality=multimodality,
                           num_train=num_train, num_validation=num_validation,
                           num_test=num_test, vocab_size=vocab_size, max_words=max_words,
                           dominant_share=dominant_share)
  vocabulary = vocab_lib.PadirVocabulary(spec.vocab_path, max_target_length, prepare_fn=spec)
  return register_parallel_text(
      name, vocabulary=vocabulary, folder=data_dir, src=corpus.SOURCE_SUFFIX,
      tgt=corpus.TARGET_SUFFIX, splits={split: split for split in corpus.SPLITS},
      noise=noise, prepare_fn=spec, overwrite=overwrite)
