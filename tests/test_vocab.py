"""Vocabulary: SentencePiece training with PaDIR's ids, `PadirVocabulary`, `padir vocab`.

`tiny_spm` (a SentencePiece model trained on a few hundred generated sentences) is shared by
the data tests: they import it from here.
"""
import gzip
import os
import types

import numpy as np
import pytest
import sentencepiece as spm

from padir import corpus
from padir import data
from padir import special_tokens as special_tokens_lib
from padir import vocab
from padir.commands import vocab as vocab_command

TINY_VOCAB_SIZE = 200


def _write_training_text(directory):
  pairs = corpus.generate_pairs(seed=0, split="train", num_pairs=300, multimodality=3)
  source, target = os.path.join(directory, "text.src"), os.path.join(directory, "text.tgt.gz")
  with open(source, "w", encoding="utf-8") as f:
    f.write("".join(s + "\n" for s, _ in pairs))
  with gzip.open(target, "wt", encoding="utf-8") as f:
    f.write("".join(t + "\n\n" for _, t in pairs))  # Empty lines are skipped.
  return [source, target]


@pytest.fixture(scope="session")
def tiny_spm(tmp_path_factory):
  """Path of a tiny joint SentencePiece model (plain + gzip input); trained once a session."""
  directory = tmp_path_factory.getbasetemp() / "tiny_spm"
  model = directory / "spm.model"
  if not model.exists():
    directory.mkdir(exist_ok=True)
    vocab.train_sentencepiece(_write_training_text(str(directory)), TINY_VOCAB_SIZE,
                              str(directory / "spm"))
  return str(model)


def test_special_ids_are_fixed_and_disjoint(tiny_spm):
  vocabulary = vocab.PadirVocabulary(tiny_spm, max_target_length=40)
  processor = spm.SentencePieceProcessor(model_file=tiny_spm)
  assert (processor.pad_id(), processor.eos_id(), processor.unk_id(), processor.bos_id()) == (
      0, 1, 2, 3)
  tokens = vocabulary.special_tokens
  assert tokens == special_tokens_lib.SpecialTokens.create(processor.GetPieceSize(), 40)
  assert vocabulary.vocab_size == tokens.num_pieces == processor.GetPieceSize()
  ids = [tokens.mask_id, tokens.length_id, *range(tokens.mask_range_start, tokens.mask_range_end)]
  assert len(set(ids)) == len(ids) == 42
  assert min(ids) == tokens.num_pieces  # Above every real piece.
  assert vocabulary.model_vocab_size % 128 == 0 and vocabulary.model_vocab_size >= max(ids) + 1
  encoded = vocabulary.encode("the big dogs saw a small cat")
  assert encoded and all(3 < i < tokens.num_pieces for i in encoded)
  assert vocabulary.decode(encoded) == "the big dogs saw a small cat"
  assert vocabulary.decode(encoded + [tokens.mask_id]).startswith("the big dogs")


def test_training_is_reproducible(tiny_spm, tmp_path):
  again = vocab.train_sentencepiece(_write_training_text(str(tmp_path)), TINY_VOCAB_SIZE,
                                    str(tmp_path / "again"))
  first = spm.SentencePieceProcessor(model_file=tiny_spm)
  second = spm.SentencePieceProcessor(model_file=again)
  assert ([first.IdToPiece(i) for i in range(first.GetPieceSize())] ==
          [second.IdToPiece(i) for i in range(second.GetPieceSize())])


def test_cli_writes_model_and_prints_path(tmp_path, capsys):
  inputs = _write_training_text(str(tmp_path))
  prefix = str(tmp_path / "out" / "cli")
  assert vocab_command.main(["--input", *inputs, "--vocab_size", "150", "--output", prefix]) == 0
  assert os.path.isfile(prefix + ".model")
  assert f"wrote {prefix}.model" in capsys.readouterr().out


def test_vocabulary_checks_its_model(tiny_spm, tmp_path):
  with pytest.raises(FileNotFoundError, match="padir vocab"):
    _ = vocab.PadirVocabulary(str(tmp_path / "missing.model")).special_tokens
  text = _write_training_text(str(tmp_path))[0]
  spm.SentencePieceTrainer.train(input=text, model_prefix=str(tmp_path / "t5ids"),
                                 vocab_size=100, minloglevel=2)  # unk=0 bos=1 eos=2
  with pytest.raises(ValueError, match="t5ids.model has special ids"):
    _ = vocab.PadirVocabulary(str(tmp_path / "t5ids.model")).special_tokens
  assert vocab.PadirVocabulary(tiny_spm, 64) == vocab.PadirVocabulary(tiny_spm, 64)
  assert vocab.PadirVocabulary(tiny_spm, 64) != vocab.PadirVocabulary(tiny_spm, 65)


def test_invalid_utf8_names_file_and_line(tmp_path):
  bad = tmp_path / "bad.txt"
  bad.write_bytes(b"fine line\nanother\nbroken \xff byte\n")
  with pytest.raises(data.TextFileError, match=r"bad\.txt:3: invalid UTF-8"):
    list(data.iter_text_lines(str(bad)))
  with pytest.raises(data.TextFileError, match=r"bad\.txt:3: invalid UTF-8"):
    vocab.train_sentencepiece([str(bad)], 50, str(tmp_path / "never"))


# ----------------------------------------------------------------------------------------------
# T5 vocabulary mode: T5's / mT5's SentencePiece model with seqio's sentinels.


def test_t5_layout_is_the_checkpoints():
  """T5 (32000 pieces) and mT5 (250000): the model vocabulary is the checkpoint's, [MASK_i] are
  <extra_id_{i-1}>, [MASK] / [LENGTH] two padding rows, and the decoder starts with PAD."""
  t5 = special_tokens_lib.SpecialTokens.t5(32000, max_target_length=100)
  assert t5.vocab_size == 32128
  assert (t5.pad_id, t5.eos_id, t5.unk_id, t5.bos_id) == (0, 1, 2, 0)
  assert (t5.mask_id, t5.length_id) == (32100, 32101)
  assert t5.mask_range_id(0) == 32099 and t5.mask_range_id(99) == 32000  # <extra_id_0>, _99
  assert (t5.mask_range_start, t5.mask_range_end) == (32000, 32100)
  assert t5.first_real_piece == 3 and not t5.is_real_piece(32000)
  assert special_tokens_lib.SpecialTokens.t5(250000, 64).vocab_size == 250112
  with pytest.raises(ValueError, match="at most 100 long"):
    special_tokens_lib.SpecialTokens.t5(32000, max_target_length=101)
  with pytest.raises(ValueError, match="leave 0 spare rows"):
    special_tokens_lib.SpecialTokens.t5(28, max_target_length=8, extra_ids=100)


@pytest.fixture(scope="module")
def t5_style_spm(tmp_path_factory):
  """A tiny SentencePiece model with T5's ids: PAD=0 EOS=1 UNK=2, no BOS."""
  directory = tmp_path_factory.mktemp("t5_spm")
  words = "the big small dogs saw a cat house tree car blue red".split()
  rng = np.random.default_rng(0)
  sentences = [" ".join(rng.choice(words, 8)) for _ in range(500)]
  spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences),
                                 model_prefix=str(directory / "t5"), vocab_size=40, pad_id=0,
                                 eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False,
                                 minloglevel=2)
  return str(directory / "t5.model")


def test_t5_vocabulary_mode(t5_style_spm):
  vocabulary = vocab.PadirVocabulary(t5_style_spm, max_target_length=8, extra_ids=10)
  pieces = spm.SentencePieceProcessor(model_file=t5_style_spm).GetPieceSize()
  tokens = vocabulary.special_tokens
  assert tokens == special_tokens_lib.SpecialTokens.t5(pieces, 8, extra_ids=10)
  assert vocabulary.model_vocab_size == 128
  assert vocabulary.decode([tokens.mask_range_id(0)]) == "<extra_id_0>"
  assert vocabulary.encode("<extra_id_1>") == [tokens.mask_range_id(1)]
  encoded = vocabulary.encode("the big dogs saw a cat")
  assert all(tokens.is_real_piece(i) for i in encoded)
  assert vocabulary.decode(encoded) == "the big dogs saw a cat"
  # T5's model in this project's layout: refused (it has no BOS=3).
  with pytest.raises(ValueError, match="retrain it with `padir vocab`"):
    _ = vocab.PadirVocabulary(t5_style_spm, max_target_length=8).special_tokens


def test_t5_vocabulary_starts_the_ar_decoder_with_pad(t5_style_spm):
  """The AR data pipeline shifts targets right with the vocabulary's start token (T5: 0)."""
  vocabulary = vocab.PadirVocabulary(t5_style_spm, max_target_length=8, extra_ids=10)
  task = types.SimpleNamespace(output_features={
      "inputs": types.SimpleNamespace(vocabulary=vocabulary),
      "targets": types.SimpleNamespace(vocabulary=vocabulary)})
  assert data.default_feature_converter(task).bos_id == 0
