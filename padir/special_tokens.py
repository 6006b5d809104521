"""The PaDIR id layout: the one source of truth for special token ids.

Pure Python (no seqio/TensorFlow), so models and decoding can use it on any machine.

Layout of the model's vocabulary, for a SentencePiece model with `num_pieces` pieces:

  [0, num_pieces)                       real pieces; PAD=0, EOS=1, UNK=2, BOS=3 among them
  num_pieces                            [MASK]
  num_pieces + 1                        [LENGTH]
  [num_pieces + 2, + max_target_length) [MASK_1] .. [MASK_N], N = max_target_length
  num_pieces + 2 + max_target_length    the CTC blank (`blank_id`), if below vocab_size
  rest up to vocab_size                 unused padding (vocab_size is a multiple of 128)

The T5 layout (`SpecialTokens.t5`), for T5's and mT5's SentencePiece models and checkpoints:

  [0, num_pieces)                         real pieces; PAD=0, EOS=1, UNK=2; no BOS: the decoder
                                          starts with id 0, as T5's does
  [num_pieces, num_pieces + extra_ids)    seqio's sentinels; [MASK_{i+1}] is <extra_id_i>
                                          (id num_pieces + extra_ids - 1 - i), as in the paper's
                                          code, so max_target_length <= extra_ids
  num_pieces + extra_ids                  [MASK]    } two of the rows that pad the checkpoint's
  num_pieces + extra_ids + 1              [LENGTH]  } vocabulary to a multiple of 128
  num_pieces + extra_ids + 2              the CTC blank (`blank_id`)
  vocab_size = the checkpoint's (32128 for T5, 250112 for mT5)

The ranges never overlap each other or a real piece, and the `[MASK_i]` range is sized by the
same `max_target_length` in training and inference.
"""
import dataclasses

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2
BOS_ID = 3
VOCAB_MULTIPLE = 128


LAYOUTS = ("padir", "t5")


@dataclasses.dataclass(frozen=True)
class SpecialTokens:
  """Special ids of a PaDIR vocabulary. Build with `SpecialTokens.create` or `SpecialTokens.t5`."""
  num_pieces: int
  max_target_length: int
  pad_id: int = PAD_ID
  eos_id: int = EOS_ID
  unk_id: int = UNK_ID
  bos_id: int = BOS_ID  # the decoder's start token (T5 layout: PAD)
  layout: str = "padir"
  extra_ids: int = 0  # T5 layout: seqio's sentinels after the pieces

  def __post_init__(self):
    if self.layout not in LAYOUTS:
      raise ValueError(f"layout={self.layout!r}: expected one of {LAYOUTS}")
    if self.max_target_length < 1:
      raise ValueError(f"max_target_length={self.max_target_length} must be >= 1")
    if self.layout == "t5" and self.max_target_length > self.extra_ids:
      raise ValueError(f"max_target_length={self.max_target_length}: the T5 layout's [MASK_i] are "
                       f"the vocabulary's {self.extra_ids} sentinels (<extra_id_i>), so targets "
                       f"can be at most {self.extra_ids} long")

  @classmethod
  def create(cls, num_pieces: int, max_target_length: int) -> "SpecialTokens":
    """This project's layout, for a SentencePiece model made by `padir vocab`."""
    if num_pieces <= BOS_ID:
      raise ValueError(f"num_pieces={num_pieces}: a vocabulary needs PAD, EOS, UNK, BOS and pieces")
    return cls(num_pieces=num_pieces, max_target_length=max_target_length)

  @classmethod
  def t5(cls, num_pieces: int, max_target_length: int, extra_ids: int = 100) -> "SpecialTokens":
    """T5's layout, for T5's / mT5's SentencePiece model with seqio's `extra_ids` sentinels."""
    if num_pieces <= UNK_ID + 1:
      raise ValueError(f"num_pieces={num_pieces}: a vocabulary needs PAD, EOS, UNK and pieces")
    if extra_ids < 1:
      raise ValueError(f"extra_ids={extra_ids}: the T5 layout's [MASK_i] are its sentinels")
    tokens = cls(num_pieces=num_pieces, max_target_length=max_target_length, bos_id=PAD_ID,
                 layout="t5", extra_ids=extra_ids)
    rows = tokens.vocab_size - (num_pieces + extra_ids)
    if rows < 2:
      raise ValueError(f"{num_pieces} pieces + {extra_ids} sentinels leave {rows} spare rows "
                       f"below {tokens.vocab_size}: [MASK] and [LENGTH] need 2")
    return tokens

  @property
  def first_real_piece(self) -> int:
    """The lowest id of a piece that is not PAD, EOS, UNK or BOS."""
    return max(self.pad_id, self.eos_id, self.unk_id, self.bos_id) + 1

  @property
  def mask_id(self) -> int:
    return self.num_pieces + self.extra_ids

  @property
  def length_id(self) -> int:
    return self.mask_id + 1

  @property
  def blank_id(self) -> int:
    """CTC's blank (`padir.ctc`): the first spare row after the other ids (padir layout: after
    the [MASK_i] range; T5 layout: after [LENGTH]). Raises ValueError when the vocabulary's
    padding to a multiple of 128 leaves no spare row."""
    blank = self.length_id + 1 if self.layout == "t5" else self.mask_range_end
    if blank >= self.vocab_size:
      raise ValueError(f"no spare vocabulary row for the CTC blank: id {blank} >= vocab_size "
                       f"{self.vocab_size} ({self.num_pieces} pieces, max_target_length "
                       f"{self.max_target_length}); change max_target_length by one")
    return blank

  @property
  def mask_range_start(self) -> int:
    """The lowest id of the [MASK_i] range (padir layout: [MASK_1]'s)."""
    if self.layout == "t5":
      return self.num_pieces + self.extra_ids - self.max_target_length
    return self.num_pieces + 2

  @property
  def mask_range_end(self) -> int:
    """One past the highest id of the [MASK_i] range."""
    return self.mask_range_start + self.max_target_length

  @property
  def vocab_size(self) -> int:
    """Model vocabulary size: every id above, rounded up to a multiple of 128."""
    end = self.mask_id if self.layout == "t5" else self.mask_range_end  # T5: sentinels' end
    return -(-end // VOCAB_MULTIPLE) * VOCAB_MULTIPLE

  def mask_range_id(self, position):
    """[MASK_{position+1}] for a 0-based position (works on ints and arrays)."""
    if self.layout == "t5":
      return self.num_pieces + self.extra_ids - 1 - position
    return self.mask_range_start + position

  def is_real_piece(self, ids):
    """True for ids of real SentencePiece pieces (works on ints and arrays)."""
    return (ids >= 0) & (ids < self.num_pieces)
