"""WMT through TFDS: wmt14_{en_de,de_en}_{ar,padir} and wmt16_{en_ro,ro_en}_{ar,padir}.

Splits: train, validation (newstest2013 / newsdev2016) and test (newstest2014 / newstest2016,
the reported sets), read by the real TFDS builders (`wmt14_translate/de-en`,
`wmt16_translate/ro-en`); sacreBLEU is the metric. Each language pair has one joint
SentencePiece model for both directions, by default `$PADIR_DATA_DIR/vocab/wmt14_en_de.model`
and `.../wmt16_en_ro.model`: make it with `padir vocab` from the training text, or register
with your own `vocab_path`. Nothing is read at import.
"""
import functools
import os
from typing import Mapping, Optional, Tuple

import seqio

from padir import vocab as vocab_lib
import tasks
from tasks import registration

DEFAULT_MAX_TARGET_LENGTH = 256
# corpus name -> (TFDS name, source language, target language, vocabulary name)
WMT_TASKS = {
    "wmt14_en_de": ("wmt14_translate/de-en:1.0.0", "en", "de", "wmt14_en_de"),
    "wmt14_de_en": ("wmt14_translate/de-en:1.0.0", "de", "en", "wmt14_en_de"),
    "wmt16_en_ro": ("wmt16_translate/ro-en:1.0.0", "en", "ro", "wmt16_en_ro"),
    "wmt16_ro_en": ("wmt16_translate/ro-en:1.0.0", "ro", "en", "wmt16_en_ro"),
}
SPLITS = ("train", "validation", "test")


def default_vocab_path(vocab_name: str) -> str:
  return os.path.join(tasks.default_data_dir(), "vocab", vocab_name + ".model")


def register_tfds_translation(name: str,
                              tfds_name: str,
                              src: str,
                              tgt: str,
                              *,
                              vocab_path: str,
                              max_target_length: int = DEFAULT_MAX_TARGET_LENGTH,
                              noise: Optional[Mapping[str, object]] = None,
                              overwrite: bool = False) -> Tuple[str, str]:
  """Registers `{name}_ar` / `{name}_padir` over a TFDS translation dataset (`src` -> `tgt`)."""
  source = seqio.TfdsDataSource(tfds_name=tfds_name, splits=SPLITS)
  vocabulary = vocab_lib.PadirVocabulary(vocab_path, max_target_length)
  rekey = functools.partial(seqio.preprocessors.rekey, key_map={"inputs": src, "targets": tgt})
  return registration.register_task_pair(name, source, vocabulary, preprocessors=[rekey],
                                         noise=noise, overwrite=overwrite)


def register_wmt(vocab_paths: Optional[Mapping[str, str]] = None,
                 *,
                 max_target_length: int = DEFAULT_MAX_TARGET_LENGTH,
                 noise: Optional[Mapping[str, object]] = None,
                 overwrite: bool = False):
  """Registers the WMT tasks of `WMT_TASKS`; `vocab_paths` maps a vocabulary name
  ("wmt14_en_de", "wmt16_en_ro") to a SentencePiece model (default `default_vocab_path`)."""
  names = []
  for name, (tfds_name, src, tgt, vocab_name) in WMT_TASKS.items():
    vocab_path = (vocab_paths or {}).get(vocab_name) or default_vocab_path(vocab_name)
    names += register_tfds_translation(name, tfds_name, src, tgt, vocab_path=vocab_path,
                                       max_target_length=max_target_length, noise=noise,
                                       overwrite=overwrite)
  return names


register_wmt()
