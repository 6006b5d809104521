"""The built-in offline corpus: English-like sentences -> an invented language, with controlled
multi-modality. Generated from a seed (no download, no data file); learnable by a tiny model.

Source: `DET ADJ* NOUN VERB DET ADJ* NOUN [PREP DET ADJ* NOUN] [ADV]`, optionally two clauses
joined by "and"; 5-20 words; English agreement (a/an, 3rd person -s, irregular plurals and
pasts, "will" future). Target, an invented language:

- word order: verb-final clauses (SOV), adjectives after the noun in mirrored order,
  postpositions (`NP POSTP`), prepositional phrase between subject and object;
- agreement: every noun has a gender; articles and adjectives agree with the noun in gender and
  number, present/future verbs with the subject's number, past verbs with its gender and
  number;
- sub-word morphology: plural, tense and agreement are suffixes on the stems
  (`kal+ir`, `dok+it+a`), so SentencePiece pieces are stems and endings.

Multi-modality (`multimodality` level): each source has several valid translations, chosen at
random per sentence, and the choices are correlated within the sentence:

  0  deterministic: one translation per source
  1  + register: every content word (and its noun's gender) comes from one of 2 registers
     (synonym sets), chosen once per sentence
  2  + free order: the prepositional phrase may open the clause, the adverb may open it
     (default)
  3  3 registers and free order

By default every choice is uniform (the two orders, the registers equally likely). With
`dominant_share` = p each choice takes its first variant (register 0, the default order) with
probability p and the others share the rest, as in natural language, where one variant of a
phrase is usually the common one: an AR teacher trained on such data then settles on the
dominant variants, so its translations (the distilled data) are one-mode. With uniform choices
the teacher's pick is arbitrary for each source, a function of the source no student can learn.

A non-autoregressive model trained on such data mixes registers within a sentence (and repeats
moved phrases); a student trained on one-mode (AR-distilled) data does not. `measure_multimodality`
counts distinct references per source by re-sampling translations of the same source.
`CorpusSpec` writes the corpus in the local parallel-text layout (`{split}.src.gz`,
`{split}.tgt.gz`) with a SentencePiece model (`spm.model`) trained on its training split.
"""
import dataclasses
import gzip
import json
import os
import random
import shutil
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple


GENERATOR_VERSION = 1
MULTIMODALITY_LEVELS = (0, 1, 2, 3)
DEFAULT_MULTIMODALITY = 2
SPLITS = ("train", "validation", "test")
SOURCE_SUFFIX = "src"
TARGET_SUFFIX = "tgt"
DATA_DIR_ENV = "PADIR_DATA_DIR"


def default_data_dir() -> str:
  """Where generated corpora and vocabularies are cached: $PADIR_DATA_DIR or ~/.cache/padir."""
  return os.environ.get(DATA_DIR_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "padir")
MIN_WORDS, MAX_WORDS = 5, 20
_LEXICON_SEED = "padir-corpus-lexicon-v1"
_REGISTERS = {0: 1, 1: 2, 2: 2, 3: 3}
_FREE_ORDER = {0: False, 1: False, 2: True, 3: True}

# --- Source language (English-like) ---------------------------------------------------------

NOUNS = (  # (singular, plural)
    ("dog", "dogs"), ("cat", "cats"), ("bird", "birds"), ("horse", "horses"), ("fish", "fish"),
    ("child", "children"), ("man", "men"), ("woman", "women"), ("teacher", "teachers"),
    ("student", "students"), ("farmer", "farmers"), ("doctor", "doctors"), ("king", "kings"),
    ("queen", "queens"), ("baker", "bakers"), ("singer", "singers"), ("friend", "friends"),
    ("neighbor", "neighbors"), ("girl", "girls"), ("boy", "boys"), ("soldier", "soldiers"),
    ("sailor", "sailors"), ("painter", "painters"), ("writer", "writers"), ("mouse", "mice"),
    ("house", "houses"), ("tree", "trees"), ("river", "rivers"), ("ball", "balls"),
    ("book", "books"), ("letter", "letters"), ("apple", "apples"), ("box", "boxes"),
    ("car", "cars"), ("boat", "boats"), ("city", "cities"), ("garden", "gardens"),
    ("table", "tables"), ("chair", "chairs"), ("window", "windows"), ("door", "doors"),
    ("bridge", "bridges"), ("road", "roads"), ("mountain", "mountains"), ("forest", "forests"),
    ("lamp", "lamps"), ("cup", "cups"), ("bottle", "bottles"), ("flower", "flowers"),
    ("stone", "stones"), ("key", "keys"), ("song", "songs"), ("picture", "pictures"),
    ("bed", "beds"), ("field", "fields"), ("shop", "shops"), ("school", "schools"),
    ("market", "markets"), ("ship", "ships"), ("wall", "walls"), ("clock", "clocks"),
    ("island", "islands"),
)
VERBS = (  # (base, 3rd person singular, past)
    ("see", "sees", "saw"), ("find", "finds", "found"), ("take", "takes", "took"),
    ("like", "likes", "liked"), ("love", "loves", "loved"), ("want", "wants", "wanted"),
    ("carry", "carries", "carried"), ("hold", "holds", "held"), ("build", "builds", "built"),
    ("paint", "paints", "painted"), ("open", "opens", "opened"), ("close", "closes", "closed"),
    ("watch", "watches", "watched"), ("follow", "follows", "followed"),
    ("help", "helps", "helped"), ("call", "calls", "called"), ("meet", "meets", "met"),
    ("visit", "visits", "visited"), ("clean", "cleans", "cleaned"), ("buy", "buys", "bought"),
    ("sell", "sells", "sold"), ("bring", "brings", "brought"), ("push", "pushes", "pushed"),
    ("pull", "pulls", "pulled"), ("draw", "draws", "drew"), ("read", "reads", "read"),
    ("write", "writes", "wrote"), ("hear", "hears", "heard"), ("throw", "throws", "threw"),
    ("catch", "catches", "caught"), ("wash", "washes", "washed"), ("break", "breaks", "broke"),
    ("fix", "fixes", "fixed"), ("keep", "keeps", "kept"), ("move", "moves", "moved"),
    ("know", "knows", "knew"), ("teach", "teaches", "taught"), ("forget", "forgets", "forgot"),
)
ADJECTIVES = (
    "big", "small", "old", "young", "red", "blue", "green", "white", "black", "happy", "sad",
    "tall", "short", "long", "new", "quiet", "loud", "dark", "bright", "warm", "cold", "heavy",
    "light", "strong", "weak", "clean", "dirty", "rich", "poor", "kind", "angry", "brave",
    "clever", "tired", "hungry", "beautiful",
)
ADVERBS = ("today", "yesterday", "often", "again", "quickly", "slowly", "quietly", "always",
           "sometimes", "early", "late", "together")
PREPOSITIONS = ("in", "on", "near", "under", "behind", "with", "without", "beside")
_SINGULAR_DETERMINERS = ("the", "a", "this")
_PLURAL_DETERMINERS = ("the", "some", "these", "two", "three", "many")
_TENSES = ("present", "past", "future")

# --- Target language ------------------------------------------------------------------------

_ARTICLES = {  # (determiner, gender, plural) -> word; numerals are invariant.
    ("the", "m", False): "ul", ("the", "f", False): "ela",
    ("the", "m", True): "uli", ("the", "f", True): "eli",
    ("a", "m", False): "un", ("a", "f", False): "una",
    ("some", "m", True): "kel", ("some", "f", True): "kela",
    ("this", "m", False): "tos", ("this", "f", False): "tas",
    ("these", "m", True): "tosi", ("these", "f", True): "tasi",
}
_NUMERALS = {"two": "du", "three": "tri", "many": "mult"}
_POSTPOSITIONS = dict(zip(PREPOSITIONS, ("ine", "sur", "pres", "sub", "dor", "kun", "sen", "lat")))
_CONJUNCTION = "ka"
_NOUN_PLURAL = {"m": "en", "f": "ir"}
_ADJECTIVE_ENDINGS = {("m", False): "o", ("f", False): "a", ("m", True): "oj", ("f", True): "aj"}
_ADVERB_ENDING = "u"


def _verb_ending(tense: str, gender: str, plural: bool) -> str:
  if tense == "present":
    return "en" if plural else "e"
  if tense == "future":
    return "iron" if plural else "iro"
  return "it" + ("i" if plural else {"m": "o", "f": "a"}[gender])


@dataclasses.dataclass(frozen=True)
class _Lexicon:
  """Target stems per register: nouns (stem, gender), verbs, adjectives, adverbs."""
  nouns: Tuple[Tuple[Tuple[str, str], ...], ...]
  verbs: Tuple[Tuple[str, ...], ...]
  adjectives: Tuple[Tuple[str, ...], ...]
  adverbs: Tuple[Tuple[str, ...], ...]


def _make_lexicon() -> _Lexicon:
  """The invented vocabulary: fixed (its own seed), unique stems, no clash with function words."""
  rng = random.Random(_LEXICON_SEED)
  consonants, vowels = "bdfgklmnprstvz", "aeiou"
  taken = set(_NUMERALS.values()) | set(_POSTPOSITIONS.values()) | set(_ARTICLES.values())
  taken.add(_CONJUNCTION)

  def stem(closed: bool) -> str:
    while True:
      word = "".join(rng.choice(consonants) + rng.choice(vowels)
                     for _ in range(rng.choice((1, 2, 2))))
      word += rng.choice(consonants) if closed else ""
      if len(word) >= 3 and word not in taken:
        taken.add(word)
        return word

  num_registers = max(_REGISTERS.values())
  return _Lexicon(
      nouns=tuple(tuple((stem(rng.random() < 0.5), rng.choice("mf")) for _ in NOUNS)
                  for _ in range(num_registers)),
      verbs=tuple(tuple(stem(True) for _ in VERBS) for _ in range(num_registers)),
      adjectives=tuple(tuple(stem(True) for _ in ADJECTIVES) for _ in range(num_registers)),
      adverbs=tuple(tuple(stem(True) for _ in ADVERBS) for _ in range(num_registers)))


LEXICON = _make_lexicon()

# --- Meanings and their realizations ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NounPhrase:
  noun: int
  plural: bool
  determiner: str
  adjectives: Tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Clause:
  subject: NounPhrase
  verb: int
  tense: str
  obj: NounPhrase
  preposition: Optional[Tuple[int, NounPhrase]]
  adverb: Optional[int]


Sentence = Tuple[Clause, ...]


def _sample_noun_phrase(rng: random.Random) -> NounPhrase:
  plural = rng.random() < 0.4
  determiner = rng.choice(_PLURAL_DETERMINERS if plural else _SINGULAR_DETERMINERS)
  adjectives = tuple(rng.sample(range(len(ADJECTIVES)), rng.choice((0, 0, 1, 1, 2))))
  return NounPhrase(rng.randrange(len(NOUNS)), plural, determiner, adjectives)


def _sample_clause(rng: random.Random) -> Clause:
  subject = _sample_noun_phrase(rng)
  verb, tense = rng.randrange(len(VERBS)), rng.choice(_TENSES)
  obj = _sample_noun_phrase(rng)
  preposition = ((rng.randrange(len(PREPOSITIONS)), _sample_noun_phrase(rng))
                 if rng.random() < 0.5 else None)
  adverb = rng.randrange(len(ADVERBS)) if rng.random() < 0.35 else None
  return Clause(subject, verb, tense, obj, preposition, adverb)


def sample_sentence(rng: random.Random, max_words: int = MAX_WORDS) -> Sentence:
  """A random meaning: one clause, or two joined by "and", of 5-`max_words` source words."""
  if not MIN_WORDS <= max_words <= MAX_WORDS:
    raise ValueError(f"max_words={max_words}: expected {MIN_WORDS}..{MAX_WORDS}")
  while True:
    sentence = tuple(_sample_clause(rng) for _ in range(2 if rng.random() < 0.3 else 1))
    if MIN_WORDS <= len(realize_source(sentence).split()) <= max_words:
      return sentence


def _source_noun_phrase(np: NounPhrase) -> List[str]:
  words = [ADJECTIVES[a] for a in np.adjectives] + [NOUNS[np.noun][np.plural]]
  determiner = np.determiner
  if determiner == "a" and words[0][0] in "aeiou":
    determiner = "an"
  return [determiner] + words


def realize_source(sentence: Sentence) -> str:
  """The source text of a meaning (deterministic)."""
  clauses = []
  for clause in sentence:
    base, third, past = VERBS[clause.verb]
    verb = {"present": [base if clause.subject.plural else third], "past": [past],
            "future": ["will", base]}[clause.tense]
    words = _source_noun_phrase(clause.subject) + verb + _source_noun_phrase(clause.obj)
    if clause.preposition is not None:
      words += [PREPOSITIONS[clause.preposition[0]]] + _source_noun_phrase(clause.preposition[1])
    if clause.adverb is not None:
      words.append(ADVERBS[clause.adverb])
    clauses.append(" ".join(words))
  return " and ".join(clauses)


def _target_noun_phrase(np: NounPhrase, register: int) -> Tuple[List[str], str]:
  stem, gender = LEXICON.nouns[register][np.noun]
  if np.determiner in _NUMERALS:
    determiner = _NUMERALS[np.determiner]
  else:
    determiner = _ARTICLES[(np.determiner, gender, np.plural)]
  noun = stem + (_NOUN_PLURAL[gender] if np.plural else "")
  ending = _ADJECTIVE_ENDINGS[(gender, np.plural)]
  adjectives = [LEXICON.adjectives[register][a] + ending for a in reversed(np.adjectives)]
  return [determiner, noun] + adjectives, gender


def check_dominant_share(dominant_share: Optional[float]) -> None:
  if dominant_share is not None and not 0.0 < dominant_share < 1.0:
    raise ValueError(f"dominant_share={dominant_share}: expected None (uniform choices) or a "
                     "probability in (0, 1)")


def _register(rng: random.Random, num_registers: int, dominant_share: Optional[float]) -> int:
  """Uniform, or register 0 with probability `dominant_share` and the others equally likely."""
  if num_registers == 1:
    return 0
  if dominant_share is None:
    return rng.randrange(num_registers)
  u = rng.random()
  if u < dominant_share:
    return 0
  return 1 + min(int((u - dominant_share) / (1 - dominant_share) * (num_registers - 1)),
                 num_registers - 2)


def _moved(rng: random.Random, dominant_share: Optional[float]) -> bool:
  """Whether a movable phrase leaves its default place: half the time, or 1 - dominant_share."""
  return rng.random() < (0.5 if dominant_share is None else 1.0 - dominant_share)


def realize_target(sentence: Sentence, rng: random.Random, multimodality: int,
                   dominant_share: Optional[float] = None) -> str:
  """One translation of a meaning; `rng` draws the modes allowed by `multimodality` (each
  uniform, or its first variant with probability `dominant_share`)."""
  if multimodality not in MULTIMODALITY_LEVELS:
    raise ValueError(f"multimodality={multimodality}: expected one of {MULTIMODALITY_LEVELS}")
  check_dominant_share(dominant_share)
  register = _register(rng, _REGISTERS[multimodality], dominant_share)
  clauses = []
  for clause in sentence:
    subject, gender = _target_noun_phrase(clause.subject, register)
    obj, _ = _target_noun_phrase(clause.obj, register)
    verb = (LEXICON.verbs[register][clause.verb] +
            _verb_ending(clause.tense, gender, clause.subject.plural))
    phrase = []
    if clause.preposition is not None:
      preposition, np = clause.preposition
      phrase = _target_noun_phrase(np, register)[0] + [_POSTPOSITIONS[PREPOSITIONS[preposition]]]
    adverb = ([LEXICON.adverbs[register][clause.adverb] + _ADVERB_ENDING]
              if clause.adverb is not None else [])
    free = _FREE_ORDER[multimodality]
    phrase_first = bool(phrase) and free and _moved(rng, dominant_share)
    adverb_first = bool(adverb) and free and _moved(rng, dominant_share)
    words = ((adverb if adverb_first else []) + (phrase if phrase_first else []) + subject +
             ([] if phrase_first else phrase) + obj + [verb] + ([] if adverb_first else adverb))
    clauses.append(" ".join(words))
  return f" {_CONJUNCTION} ".join(clauses)


def _split_rng(seed: int, stream: str) -> random.Random:
  return random.Random(f"padir-corpus/{seed}/{stream}")


def generate_pairs(seed: int, split: str, num_pairs: int, multimodality: int,
                   exclude_sources: Sequence[str] = (), max_words: int = MAX_WORDS,
                   dominant_share: Optional[float] = None) -> List[Tuple[str, str]]:
  """`num_pairs` (source, target) pairs of one split; sources in `exclude_sources` are skipped.

  Each split has its own random streams, and sources do not depend on `multimodality` or
  `dominant_share`, so corpora of other levels or shares differ only in their targets.
  """
  sources_rng, modes_rng = _split_rng(seed, split), _split_rng(seed, split + "/modes")
  excluded = set(exclude_sources)
  pairs = []
  while len(pairs) < num_pairs:
    sentence = sample_sentence(sources_rng, max_words)
    source = realize_source(sentence)
    if source in excluded:
      continue
    pairs.append((source, realize_target(sentence, modes_rng, multimodality, dominant_share)))
  return pairs


def generate_corpus(seed: int = 0, multimodality: int = DEFAULT_MULTIMODALITY,
                    num_train: int = 50_000, num_validation: int = 1_000,
                    num_test: int = 1_000, max_words: int = MAX_WORDS,
                    dominant_share: Optional[float] = None) -> Dict[str, List[Tuple[str, str]]]:
  """The corpus, split -> pairs; evaluation sources never occur in earlier splits."""
  corpus, seen = {}, set()
  for split, size in zip(SPLITS, (num_train, num_validation, num_test)):
    corpus[split] = generate_pairs(seed, split, size, multimodality, exclude_sources=seen,
                                   max_words=max_words, dominant_share=dominant_share)
    seen.update(source for source, _ in corpus[split])
  return corpus


def measure_multimodality(seed: int = 0, multimodality: int = DEFAULT_MULTIMODALITY,
                          num_sources: int = 200, num_samples: int = 20,
                          dominant_share: Optional[float] = None) -> float:
  """Mean number of distinct references per source, over `num_samples` re-sampled translations
  of each of `num_sources` sources (1.0 means deterministic translation)."""
  sources_rng, modes_rng = _split_rng(seed, "measure"), _split_rng(seed, "measure/modes")
  total = 0
  for _ in range(num_sources):
    sentence = sample_sentence(sources_rng)
    total += len({realize_target(sentence, modes_rng, multimodality, dominant_share)
                  for _ in range(num_samples)})
  return total / num_sources


def write_corpus(directory: str, corpus: Dict[str, List[Tuple[str, str]]]) -> None:
  """Writes `{split}.src.gz` / `{split}.tgt.gz` (byte-identical for identical corpora)."""
  os.makedirs(directory, exist_ok=True)
  for split, pairs in corpus.items():
    for index, suffix in enumerate((SOURCE_SUFFIX, TARGET_SUFFIX)):
      path = os.path.join(directory, f"{split}.{suffix}.gz")
      with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write("".join(pair[index] + "\n" for pair in pairs).encode("utf-8"))


@dataclasses.dataclass(frozen=True)
class CorpusSpec:
  """A generated corpus on disk; calling it (idempotent) generates it when missing.

  `data_dir` gets `{split}.src.gz`, `{split}.tgt.gz`, `spm.model` (SentencePiece trained on the
  training split, PAD=0 EOS=1 UNK=2 BOS=3) and `corpus.json` (these parameters). Generation
  happens in a temporary folder renamed into place, so concurrent callers are safe.
  """
  data_dir: str
  seed: int = 0
  multimodality: int = DEFAULT_MULTIMODALITY
  num_train: int = 50_000
  num_validation: int = 1_000
  num_test: int = 1_000
  vocab_size: int = 1_000
  max_words: int = MAX_WORDS  # sentences of MIN_WORDS..max_words source words
  dominant_share: Optional[float] = None  # see `realize_target`; None: uniform choices

  def __post_init__(self):
    if self.multimodality not in MULTIMODALITY_LEVELS:
      raise ValueError(f"multimodality={self.multimodality}: expected one of "
                       f"{MULTIMODALITY_LEVELS}")
    check_dominant_share(self.dominant_share)

  @property
  def vocab_path(self) -> str:
    return os.path.join(self.data_dir, "spm.model")

  def _parameters(self) -> Dict[str, int]:
    parameters = dataclasses.asdict(self)
    del parameters["data_dir"]
    for name, default in (("max_words", MAX_WORDS), ("dominant_share", None)):
      if parameters[name] == default:  # corpus.json as before the option existed
        del parameters[name]
    return {**parameters, "generator_version": GENERATOR_VERSION}

  def _check_existing(self) -> bool:
    """True when data_dir holds this corpus; an error when it holds something else."""
    info = os.path.join(self.data_dir, "corpus.json")
    if not os.path.exists(self.data_dir):
      return False
    if not os.path.isfile(info):
      raise FileExistsError(f"{self.data_dir} exists but is not a generated corpus (no "
                            "corpus.json): remove it or choose another data_dir")
    with open(info) as f:
      found = json.load(f)
    if found != self._parameters():
      raise FileExistsError(f"{info} describes another corpus ({found}, wanted "
                            f"{self._parameters()}): remove it or choose another data_dir")
    return True

  def __call__(self) -> str:
    """Generates the corpus and its vocabulary unless present; returns `data_dir`."""
    if self._check_existing():
      return self.data_dir
    parent = os.path.dirname(os.path.abspath(self.data_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-corpus-")
    try:
      write_corpus(tmp, generate_corpus(self.seed, self.multimodality, self.num_train,
                                        self.num_validation, self.num_test, self.max_words,
                                        self.dominant_share))
      from padir import vocab as vocab_lib  # pylint: disable=g-import-not-at-top  (seqio)
      vocab_lib.train_sentencepiece(
          [os.path.join(tmp, f"train.{s}.gz") for s in (SOURCE_SUFFIX, TARGET_SUFFIX)],
          self.vocab_size, os.path.join(tmp, "spm"), seed=self.seed)
      with open(os.path.join(tmp, "corpus.json"), "w") as f:
        json.dump(self._parameters(), f, indent=2, sort_keys=True)
      try:
        os.rename(tmp, self.data_dir)
      except OSError:
        if not self._check_existing():  # Another process won the race: fine if it is ours.
          raise
    finally:
      shutil.rmtree(tmp, ignore_errors=True)
    return self.data_dir
