"""Multi30k (task 1, raw, cased) En<->De as tasks: multi30k_en_de_{ar,padir}, multi30k_de_en_*.

Reads `{split}.{en,de}.gz` from ../shared/data/multi30k (or `$PADIR_MULTI30K_DIR`, or
`register_multi30k(data_dir=...)`). Splits: train, val (= validation), test_2016_flickr (= test,
the split papers report). Both directions share one joint SentencePiece model, trained from the
training files the first time it is needed (cached under `$PADIR_DATA_DIR/multi30k/`) unless a
`vocab_path` is given. Nothing is read at import.
"""
import hashlib
import os
from typing import List, Mapping, Optional

from padir import corpus
from padir import vocab as vocab_lib
from padir import parallel_text

DATA_DIR_ENV = "PADIR_MULTI30K_DIR"
DEFAULT_DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                os.pardir, "shared", "data", "multi30k")
SPLITS = {"train": "train", "val": "val", "validation": "val",
          "test_2016_flickr": "test_2016_flickr", "test": "test_2016_flickr"}
LANGUAGES = ("en", "de")


def register_multi30k(data_dir: Optional[str] = None,
                      *,
                      vocab_path: Optional[str] = None,
                      vocab_size: int = 8_000,
                      max_target_length: int = vocab_lib.DEFAULT_MAX_TARGET_LENGTH,
                      noise: Optional[Mapping[str, object]] = None,
                      overwrite: bool = False) -> List[str]:
  """Registers Multi30k in both directions; returns the four task names.

  Args:
    data_dir: folder with `{split}.{en,de}.gz`.
    vocab_path: a SentencePiece model; default: trained on first use from the training files.
    vocab_size: pieces of the default vocabulary.
    max_target_length: sizes the vocabulary's PaDIR ids.
    noise: `padir_noise` arguments fixed for the PaDIR tasks.
    overwrite: replace tasks already registered under these names with another configuration.
  """
  data_dir = os.path.normpath(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)
  prepare_fn = None
  if vocab_path is None:
    key = hashlib.sha1(os.path.abspath(data_dir).encode()).hexdigest()[:8]
    recipe = vocab_lib.SentencePieceRecipe(
        tuple(os.path.join(data_dir, f"train.{lang}.gz") for lang in LANGUAGES), vocab_size,
        os.path.join(corpus.default_data_dir(), "multi30k", f"spm{vocab_size}_{key}"))
    vocab_path, prepare_fn = recipe.model_path, recipe
  vocabulary = vocab_lib.PadirVocabulary(vocab_path, max_target_length, prepare_fn=prepare_fn)
  names = []
  for src, tgt in (LANGUAGES, LANGUAGES[::-1]):
    names += parallel_text.register_parallel_text(
        f"multi30k_{src}_{tgt}", vocabulary=vocabulary, folder=data_dir, src=src, tgt=tgt,
        splits=SPLITS, noise=noise, overwrite=overwrite)
  return names


register_multi30k()
