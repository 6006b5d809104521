"""The built-in offline corpus (`padir.corpus`) as tasks: the project's default data.

  builtin_ar / builtin_padir             default multi-modality (level 2), seed 0, 50k/1k/1k
  builtin_mm{0,1,2,3}_ar / _padir        each multi-modality level (0 = deterministic)
  builtin_demo_ar / _padir               `padir demo`'s: sentences of <= 10 words, 10k/512/512

Nothing is read or written at import: the corpus and its SentencePiece model are generated
into `$PADIR_DATA_DIR/builtin/...` the first time a dataset or the vocabulary is used (seconds),
then reused. `register_builtin(...)` registers other variants (seed, sizes, level, lengths).
"""
import os
from typing import Mapping, Optional, Tuple

from padir import corpus
from padir import vocab as vocab_lib
import tasks
from tasks import local

DEFAULT_MAX_TARGET_LENGTH = 64


def register_builtin(name: str = "builtin",
                     *,
                     seed: int = 0,
                     multimodality: int = corpus.DEFAULT_MULTIMODALITY,
                     num_train: int = 50_000,
                     num_validation: int = 1_000,
                     num_test: int = 1_000,
                     vocab_size: int = 1_000,
                     max_words: int = corpus.MAX_WORDS,
                     max_target_length: int = DEFAULT_MAX_TARGET_LENGTH,
                     data_dir: Optional[str] = None,
                     noise: Optional[Mapping[str, object]] = None,
                     overwrite: bool = False) -> Tuple[str, str]:
  """Registers `{name}_ar` / `{name}_padir` over a generated corpus (see `padir.corpus`).

  Args:
    name: corpus name.
    seed: generation seed.
    multimodality: level in `padir.corpus.MULTIMODALITY_LEVELS`.
    num_train: training pairs.
    num_validation: validation pairs.
    num_test: test pairs.
    vocab_size: SentencePiece pieces requested.
    max_words: longest source sentence in words (`padir.corpus.MIN_WORDS`..`MAX_WORDS`).
    max_target_length: sizes the vocabulary's PaDIR ids (targets up to this many pieces).
    data_dir: where to generate; default `$PADIR_DATA_DIR/builtin/<parameters>`.
    noise: `padir_noise` arguments fixed for the PaDIR task.
    overwrite: replace tasks already registered under these names with other parameters.

  Returns:
    (AR task name, PaDIR task name).
  """
  if data_dir is None:
    data_dir = os.path.join(
        tasks.default_data_dir(), "builtin",
        f"v{corpus.GENERATOR_VERSION}_seed{seed}_mm{multimodality}_"
        f"{num_train}_{num_validation}_{num_test}_spm{vocab_size}"
        + (f"_w{max_words}" if max_words != corpus.MAX_WORDS else ""))
  spec = corpus.CorpusSpec(data_dir, seed=seed, multimodality=multimodality,
                           num_train=num_train, num_validation=num_validation,
                           num_test=num_test, vocab_size=vocab_size, max_words=max_words)
  vocabulary = vocab_lib.PadirVocabulary(spec.vocab_path, max_target_length, prepare_fn=spec)
  return local.register_parallel_text(
      name, vocabulary=vocabulary, folder=data_dir, src=corpus.SOURCE_SUFFIX,
      tgt=corpus.TARGET_SUFFIX, splits={split: split for split in corpus.SPLITS},
      noise=noise, prepare_fn=spec, overwrite=overwrite)


register_builtin()
# `padir demo`'s corpus (padir/demo.py, gin/experiments/builtin_*.gin): sentences of at most 10
# words (26 pieces with EOS), which a small model learns in minutes.
register_builtin("builtin_demo", num_train=10_240, num_validation=512, num_test=512,
                 max_words=10, max_target_length=32)
for _level in corpus.MULTIMODALITY_LEVELS:
  register_builtin(f"builtin_mm{_level}", multimodality=_level)
