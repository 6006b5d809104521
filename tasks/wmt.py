"""WMT through TFDS: wmt14_{en_de,de_en}_{ar,padir} and wmt16_{en_ro,ro_en}_{ar,padir}.

Splits: train, validation (newstest2013 / newsdev2016) and test (newstest2014 / newstest2016,
the reported sets), read by the real TFDS builders (`wmt14_translate/de-en`,
`wmt16_translate/ro-en`); sacreBLEU is the metric. Each language pair has one joint
SentencePiece model for both directions, by default `$PADIR_DATA_DIR/vocab/wmt14_en_de.model`
and `.../wmt16_en_ro.model`: make it with `padir vocab` from the training text, or register
with your own `vocab_path`.

For fine-tuning pretrained T5 (`padir convert`), the same tasks in T5 vocabulary mode:
`wmt14_en_de_t5_{ar,padir}` ... with T5's SentencePiece model (`cc_all.32000`, at
`$PADIR_DATA_DIR/vocab/t5/sentencepiece.model`) and `..._mt5_...` with mT5's (`mc4.250000.100extra`,
`$PADIR_DATA_DIR/vocab/mt5/sentencepiece.model`), both with seqio's 100 sentinels: the model
vocabulary is the checkpoint's (32128 / 250112) and targets are at most 100 pieces (the
sentinels are the `[MASK_i]`). Nothing is read at import.
"""
import functools
import os
from typing import Mapping, Optional, Tuple

import seqio

from padir import corpus
from padir import vocab as vocab_lib
from padir import registration

DEFAULT_MAX_TARGET_LENGTH = 256
# corpus name -> (TFDS name, source language, target language, vocabulary name)
WMT_TASKS = {
    "wmt14_en_de": ("wmt14_translate/de-en:1.0.0", "en", "de", "wmt14_en_de"),
    "wmt14_de_en": ("wmt14_translate/de-en:1.0.0", "de", "en", "wmt14_en_de"),
    "wmt16_en_ro": ("wmt16_translate/ro-en:1.0.0", "en", "ro", "wmt16_en_ro"),
    "wmt16_ro_en": ("wmt16_translate/ro-en:1.0.0", "ro", "en", "wmt16_en_ro"),
}
SPLITS = ("train", "validation", "test")
# T5 vocabulary mode: name -> SentencePiece model under $PADIR_DATA_DIR/vocab.
T5_VOCABULARIES = {"t5": "t5/sentencepiece.model", "mt5": "mt5/sentencepiece.model"}
T5_EXTRA_IDS = 100  # seqio's sentinels, T5X's default
T5_MAX_TARGET_LENGTH = 100  # one [MASK_i] sentinel per target position


def default_vocab_path(vocab_name: str) -> str:
  return os.path.join(corpus.default_data_dir(), "vocab", vocab_name + ".model")


def register_tfds_translation(name: str,
                              tfds_name: str,
                              src: str,
                              tgt: str,
                              *,
                              vocab_path: str,
                              max_target_length: int = DEFAULT_MAX_TARGET_LENGTH,
                              noise: Optional[Mapping[str, object]] = None,
                              overwrite: bool = False,
                              extra_ids: int = 0) -> Tuple[str, str]:
  """Registers `{name}_ar` / `{name}_padir` over a TFDS translation dataset (`src` -> `tgt`);
  `extra_ids` > 0: T5 vocabulary mode (`padir.vocab.PadirVocabulary`)."""
  source = seqio.TfdsDataSource(tfds_name=tfds_name, splits=SPLITS)
  vocabulary = vocab_lib.PadirVocabulary(vocab_path, max_target_length, extra_ids=extra_ids)
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


def register_wmt_t5(vocab_paths: Optional[Mapping[str, str]] = None,
                    *,
                    noise: Optional[Mapping[str, object]] = None,
                    overwrite: bool = False):
  """Registers `{task}_{t5,mt5}_{ar,padir}` for every WMT task, in T5 vocabulary mode;
  `vocab_paths` maps "t5" / "mt5" to the SentencePiece model (default: T5_VOCABULARIES)."""
  names = []
  for vocab_name, relative in T5_VOCABULARIES.items():
    vocab_path = (vocab_paths or {}).get(vocab_name) or os.path.join(
        corpus.default_data_dir(), "vocab", relative)
    for name, (tfds_name, src, tgt, _) in WMT_TASKS.items():
      names += register_tfds_translation(
          f"{name}_{vocab_name}", tfds_name, src, tgt, vocab_path=vocab_path,
          max_target_length=T5_MAX_TARGET_LENGTH, noise=noise, overwrite=overwrite,
          extra_ids=T5_EXTRA_IDS)
  return names


register_wmt()
register_wmt_t5()
