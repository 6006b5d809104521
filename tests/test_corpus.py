"""The built-in corpus: deterministic per seed, structured, multi-modal as claimed (measured)."""
import filecmp
import os
import random

import numpy as np
import pytest
import seqio

from padir import corpus
from padir import data
from tasks import builtin


def test_deterministic_per_seed_and_disjoint_splits():
  first = corpus.generate_corpus(seed=1, num_train=300, num_validation=50, num_test=50)
  assert first == corpus.generate_corpus(seed=1, num_train=300, num_validation=50, num_test=50)
  assert first != corpus.generate_corpus(seed=2, num_train=300, num_validation=50, num_test=50)
  sources = {split: {s for s, _ in pairs} for split, pairs in first.items()}
  assert not sources["train"] & sources["validation"]
  assert not (sources["train"] | sources["validation"]) & sources["test"]
  lengths = [len(s.split()) for pairs in first.values() for s, _ in pairs]
  assert min(lengths) >= corpus.MIN_WORDS and max(lengths) <= corpus.MAX_WORDS
  # Levels share their sources and differ only in targets.
  deterministic = corpus.generate_pairs(1, "train", 300, multimodality=0)
  assert [s for s, _ in deterministic] == [s for s, _ in first["train"]]

  short = corpus.generate_corpus(seed=1, num_train=300, num_validation=50, num_test=50,
                                 max_words=8)
  assert max(len(s.split()) for pairs in short.values() for s, _ in pairs) == 8
  with pytest.raises(ValueError, match="max_words=4"):
    corpus.generate_pairs(1, "train", 1, multimodality=0, max_words=4)


def test_structure_word_order_agreement_morphology():
  rng = random.Random(0)
  np_ = corpus.NounPhrase(noun=0, plural=True, determiner="the", adjectives=(0, 4))  # big red dogs
  clause = corpus.Clause(np_, verb=0, tense="past", obj=corpus.NounPhrase(1, False, "a", ()),
                         preposition=None, adverb=None)
  assert corpus.realize_source((clause,)) == "the big red dogs saw a cat"
  target = corpus.realize_target((clause,), rng, multimodality=0).split()
  dog, gender = corpus.LEXICON.nouns[0][0]
  plural = {"m": "en", "f": "ir"}[gender]
  agreement = {"m": "oj", "f": "aj"}[gender]
  red, big = corpus.LEXICON.adjectives[0][4], corpus.LEXICON.adjectives[0][0]
  assert target[:4] == [{"m": "uli", "f": "eli"}[gender], dog + plural, red + agreement,
                        big + agreement]  # Noun first, adjectives mirrored and agreeing.
  assert target[-1] == corpus.LEXICON.verbs[0][0] + "iti"  # Verb last: past, plural.


def _registers(target):
  """Registers whose content stems can spell every content word of `target`."""
  words = target.split()
  found = []
  for register in range(3):
    stems = ({s for s, _ in corpus.LEXICON.nouns[register]} | set(corpus.LEXICON.verbs[register])
             | set(corpus.LEXICON.adjectives[register]) | set(corpus.LEXICON.adverbs[register]))
    content = [w for w in words if len(w) > 4]
    if all(any(w.startswith(s) for s in stems) for w in content):
      found.append(register)
  return found


def test_multimodality_is_measured_and_correlated():
  measured = [corpus.measure_multimodality(seed=0, multimodality=level, num_sources=60,
                                           num_samples=12) for level in corpus.MULTIMODALITY_LEVELS]
  assert measured[0] == 1.0  # Deterministic translation.
  assert measured[1] == pytest.approx(2.0, abs=0.05)  # Two registers.
  assert measured[2] > 3.0 and measured[3] > measured[2]  # + free order; + a third register.
  pairs = corpus.generate_pairs(0, "train", 200, multimodality=3)
  chosen = [_registers(t) for _, t in pairs]
  assert all(chosen)  # Every sentence uses a single register throughout...
  assert {r for c in chosen if len(c) == 1 for r in c} == {0, 1, 2}  # ...and all are used.


def test_dominant_share_skews_every_choice_and_keeps_the_sources():
  uniform = corpus.generate_pairs(0, "train", 600, multimodality=3)
  skewed = corpus.generate_pairs(0, "train", 600, multimodality=3, dominant_share=0.8)
  assert [s for s, _ in skewed] == [s for s, _ in uniform]
  registers = [_registers(t) for _, t in skewed]
  first_register = np.mean([c == [0] for c in registers if len(c) == 1])
  assert 0.74 < first_register < 0.86  # Register 0 in ~80 %, the other two share the rest.
  assert {r for c in registers if len(c) == 1 for r in c} == {0, 1, 2}
  # A movable phrase: the adverb (last in the source) opens the target in ~20 %.
  adverbs = {stem + "u" for register in corpus.LEXICON.adverbs for stem in register}
  adverb_first = [t.split()[0] in adverbs for s, t in skewed
                  if s.split()[-1] in corpus.ADVERBS and " and " not in s]
  assert 0.12 < np.mean(adverb_first) < 0.28
  assert (corpus.measure_multimodality(multimodality=2, num_sources=60, num_samples=12,
                                       dominant_share=0.8)
          < corpus.measure_multimodality(multimodality=2, num_sources=60, num_samples=12))
  with pytest.raises(ValueError, match="dominant_share=1.5"):
    corpus.generate_pairs(0, "train", 1, multimodality=2, dominant_share=1.5)


def test_corpus_spec_writes_reproducible_files(tmp_path):
  small = dict(seed=3, multimodality=2, num_train=200, num_validation=20, num_test=20,
               vocab_size=300)
  first = corpus.CorpusSpec(str(tmp_path / "a"), **small)
  assert first() == first.data_dir and first() == first.data_dir  # Second call: no-op.
  for split in corpus.SPLITS:
    for suffix in ("src", "tgt"):
      assert os.path.isfile(os.path.join(first.data_dir, f"{split}.{suffix}.gz"))
  assert os.path.isfile(first.vocab_path)
  second = corpus.CorpusSpec(str(tmp_path / "b"), **small)()
  assert filecmp.cmp(os.path.join(first.data_dir, "train.tgt.gz"),
                     os.path.join(second, "train.tgt.gz"), shallow=False)
  with pytest.raises(FileExistsError, match="another corpus"):
    corpus.CorpusSpec(first.data_dir, **{**small, "seed": 4})()


@pytest.mark.slow
def test_builtin_tasks(tmp_path):
  for name in ("builtin", "builtin_mm0", "builtin_mm3"):
    assert {"train", "validation", "test"} == set(seqio.get_mixture_or_task(name + "_ar").splits)
  data_dir = str(tmp_path / "corpus")
  ar, padir = builtin.register_builtin("test_builtin", num_train=100, num_validation=10,
                                       num_test=10, vocab_size=300, data_dir=data_dir)
  assert not os.path.exists(data_dir)  # Generated on first use only.
  vocabulary = seqio.get_mixture_or_task(padir).output_features["targets"].vocabulary
  assert vocabulary.special_tokens.max_target_length == builtin.DEFAULT_MAX_TARGET_LENGTH
  assert os.path.isfile(os.path.join(data_dir, "train.src.gz"))
  batch = next(data.get_dataset(padir, {"inputs": 32, "targets": 32}, "train", batch_size=4,
                                seed=0))
  assert batch["decoder_input_tokens"].shape == (4, 32)
  assert (batch["decoder_input_tokens"] == vocabulary.special_tokens.mask_id).any()
  examples = list(data.iterate_examples(ar, "test"))
  assert len(examples) == 10
  assert [e["inputs_text"] for e in examples] == [
      s for s, _ in corpus.generate_corpus(0, 2, 100, 10, 10)["test"]]
  assert np.all([e["targets"][-1] == 1 for e in examples])
