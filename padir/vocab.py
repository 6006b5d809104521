"""The PaDIR vocabulary: SentencePiece training (`padir vocab`) and `PadirVocabulary`.

A PaDIR SentencePiece model is trained with PAD=0, EOS=1, UNK=2, BOS=3 (the ids of
`padir.special_tokens`). `PadirVocabulary` is a `seqio.SentencePieceVocabulary` that also knows the
model's maximum target length, and so the PaDIR special ids (`[MASK]`, `[LENGTH]`, `[MASK_1..N]`)
and the model vocabulary size, through `.special_tokens` (the one source of truth for those ids).

  padir vocab --input train.en.gz train.de.gz --vocab_size 8000 --output vocab/ende
"""
import dataclasses
import logging
import os
import tempfile
from typing import Callable, Iterator, Optional, Sequence, Tuple

import seqio
import sentencepiece as spm

from padir import data
from padir import special_tokens as special_tokens_lib

DEFAULT_MAX_TARGET_LENGTH = 128
_SPECIAL_IDS = {
    "pad_id": special_tokens_lib.PAD_ID,
    "eos_id": special_tokens_lib.EOS_ID,
    "unk_id": special_tokens_lib.UNK_ID,
    "bos_id": special_tokens_lib.BOS_ID,
}


def _training_sentences(input_files: Sequence[str]) -> Iterator[str]:
  """Non-empty lines of every input file, in order (UTF-8 errors name file and line)."""
  for path in input_files:
    for line in data.iter_text_lines(path):
      if line.strip():
        yield line


def train_sentencepiece(input_files: Sequence[str],
                        vocab_size: int,
                        output_prefix: str,
                        *,
                        model_type: str = "unigram",
                        character_coverage: float = 1.0,
                        input_sentence_size: int = 2_000_000,
                        seed: int = 0,
                        verbose: bool = False) -> str:
  """Trains a joint SentencePiece model with PAD=0, EOS=1, UNK=2, BOS=3.

  Args:
    input_files: plain or gzip (`.gz`) UTF-8 text files, one sentence a line (for a joint
      vocabulary, give both languages' files). Empty lines are skipped.
    vocab_size: requested number of pieces; a small corpus may give fewer (the limit is soft).
    output_prefix: writes `output_prefix.model` and `output_prefix.vocab`.
    model_type: "unigram" (T5's choice) or "bpe".
    character_coverage: share of characters covered by the model (1.0 for small alphabets).
    input_sentence_size: at most this many sentences are sampled for training.
    seed: seed of SentencePiece's sampling, for a reproducible model.
    verbose: print SentencePiece's training log.

  Returns:
    The path of the written `.model` file.
  """
  if not input_files:
    raise ValueError("train_sentencepiece: no input files")
  for path in input_files:
    if not os.path.isfile(path):
      raise FileNotFoundError(f"train_sentencepiece: input file {path} does not exist")
  if vocab_size <= len(_SPECIAL_IDS):
    raise ValueError(f"vocab_size={vocab_size} must exceed the {len(_SPECIAL_IDS)} special ids")
  directory = os.path.dirname(os.path.abspath(output_prefix))
  os.makedirs(directory, exist_ok=True)
  reading_errors = []

  def sentences():
    try:
      yield from _training_sentences(input_files)
    except Exception as e:  # Kept: SentencePiece replaces it with an unhelpful SystemError.
      reading_errors.append(e)
      raise

  spm.set_random_generator_seed(seed)
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=sentences(),
        model_prefix=output_prefix,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        input_sentence_size=input_sentence_size,
        shuffle_input_sentence=True,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=0 if verbose else 2,
        **_SPECIAL_IDS)
  except Exception:
    if reading_errors:
      raise reading_errors[0] from None
    raise
  return output_prefix + ".model"


def ensure_sentencepiece(input_files: Sequence[str], vocab_size: int, output_prefix: str,
                         **kwargs) -> str:
  """`train_sentencepiece` unless `output_prefix.model` exists; safe for concurrent callers.

  The model is trained in a temporary folder beside the output and moved into place, so a
  reader never sees a half-written model.
  """
  model_path = output_prefix + ".model"
  if os.path.isfile(model_path):
    return model_path
  directory = os.path.dirname(os.path.abspath(output_prefix))
  os.makedirs(directory, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=directory) as tmp:
    tmp_prefix = os.path.join(tmp, os.path.basename(output_prefix))
    train_sentencepiece(input_files, vocab_size, tmp_prefix, **kwargs)
    os.replace(tmp_prefix + ".vocab", output_prefix + ".vocab")
    os.replace(tmp_prefix + ".model", model_path)
  logging.info("trained SentencePiece model %s", model_path)
  return model_path


@dataclasses.dataclass(frozen=True)
class SentencePieceRecipe:
  """A SentencePiece model made on first use: calling it runs `ensure_sentencepiece`.

  Give it as a `PadirVocabulary`'s `prepare_fn` for a vocabulary trained from a corpus the
  first time it is needed (comparable and picklable, unlike a closure).
  """
  input_files: Tuple[str, ...]
  vocab_size: int
  output_prefix: str

  @property
  def model_path(self) -> str:
    return self.output_prefix + ".model"

  def __call__(self) -> str:
    return ensure_sentencepiece(self.input_files, self.vocab_size, self.output_prefix)


class PadirVocabulary(seqio.SentencePieceVocabulary):
  """A SentencePiece vocabulary with PaDIR's special ids.

  `vocab_size` keeps seqio's meaning (the pieces, plus `extra_ids`); `model_vocab_size`
  (= `special_tokens.vocab_size`) is the embedding / softmax size.

  With `extra_ids` (T5 vocabulary mode, e.g. T5's or mT5's `sentencepiece.model` with seqio's
  100 sentinels) the ids follow `SpecialTokens.t5`: the model vocabulary is the pretrained
  checkpoint's (32128 for T5), `[MASK_i]` are the sentinels and the decoder starts with id 0.

  Attributes:
    special_tokens: the `padir.special_tokens.SpecialTokens` of this model and max length.
    max_target_length: the longest target; sizes the `[MASK_1..N]` range.
    model_vocab_size: the model's vocabulary size (a multiple of 128).
  """

  def __init__(self,
               sentencepiece_model_file: str,
               max_target_length: int = DEFAULT_MAX_TARGET_LENGTH,
               prepare_fn: Optional[Callable[[], object]] = None,
               extra_ids: int = 0):
    """Makes a vocabulary; the model file is read lazily, on first use.

    Args:
      sentencepiece_model_file: a model trained by `train_sentencepiece` / `padir vocab`.
      max_target_length: maximum target length of the models using this vocabulary.
      prepare_fn: optional callable run before the model is first loaded, that creates the
        model file when missing (used by tasks whose vocabulary is trained on first use).
      extra_ids: 0 for a `padir vocab` model; seqio's sentinel count (100) for T5's layout.
    """
    if max_target_length < 1:
      raise ValueError(f"max_target_length={max_target_length} must be >= 1")
    self._max_target_length = max_target_length
    self._prepare_fn = prepare_fn
    super().__init__(sentencepiece_model_file, extra_ids=extra_ids)

  def _model_context(self):
    """Loads the model on first use (seqio's hook), checking PaDIR's special ids."""
    if self._model:
      return self._model
    path = self.sentencepiece_model_file
    if self._prepare_fn is not None:
      self._prepare_fn()
    if not os.path.exists(path) and "://" not in path:
      raise FileNotFoundError(
          f"SentencePiece model {path} not found: train one with `padir vocab --input FILE ... "
          f"--vocab_size N --output PREFIX` and give its PREFIX.model as the vocabulary path")
    context = super()._model_context()
    tokenizer = context.tokenizer
    actual = {"pad_id": tokenizer.pad_id(), "eos_id": tokenizer.eos_id(),
              "unk_id": tokenizer.unk_id(), "bos_id": tokenizer.bos_id()}
    expected = dict(_SPECIAL_IDS)
    if self.extra_ids:  # T5's models have no BOS (the decoder starts with PAD).
      actual.pop("bos_id")
      expected.pop("bos_id")
    if actual != expected:
      self._model = None
      hint = ("T5's layout (extra_ids > 0) needs T5's PAD=0 EOS=1 UNK=2" if self.extra_ids else
              "retrain it with `padir vocab`")
      raise ValueError(f"SentencePiece model {path} has special ids {actual}; PaDIR needs "
                       f"{expected}: {hint}")
    return context

  @property
  def max_target_length(self) -> int:
    return self._max_target_length

  @property
  def special_tokens(self) -> special_tokens_lib.SpecialTokens:
    pieces = self.tokenizer.GetPieceSize() - self.extra_ids  # seqio appends the sentinels
    if self.extra_ids:
      return special_tokens_lib.SpecialTokens.t5(pieces, self._max_target_length, self.extra_ids)
    return special_tokens_lib.SpecialTokens.create(pieces, self._max_target_length)

  @property
  def model_vocab_size(self) -> int:
    return self.special_tokens.vocab_size

  def __str__(self) -> str:
    return (f"PadirVocabulary(file={self.sentencepiece_model_file}, "
            f"max_target_length={self._max_target_length}, extra_ids={self.extra_ids})")
