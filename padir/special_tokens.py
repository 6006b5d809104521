"""The PaDIR id layout: the one source of truth for special token ids.

Pure Python (no seqio/TensorFlow), so models and decoding can use it on any machine.

Layout of the model's vocabulary, for a SentencePiece model with `num_pieces` pieces:

  [0, num_pieces)                       real pieces; PAD=0, EOS=1, UNK=2, BOS=3 among them
  num_pieces                            [MASK]
  num_pieces + 1                        [LENGTH]
  [num_pieces + 2, + max_target_length) [MASK_1] .. [MASK_N], N = max_target_length
  rest up to vocab_size                 unused padding (vocab_size is a multiple of 128)

The ranges never overlap each other or a real piece (reference mistake 4 in DESIGN.md), and the
`[MASK_i]` range is sized by the same `max_target_length` in training and inference (mistake 5).
"""
import dataclasses

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2
BOS_ID = 3
VOCAB_MULTIPLE = 128


@dataclasses.dataclass(frozen=True)
class SpecialTokens:
  """Special ids of a PaDIR vocabulary. Build with `SpecialTokens.create`."""
  num_pieces: int
  max_target_length: int
  pad_id: int = PAD_ID
  eos_id: int = EOS_ID
  unk_id: int = UNK_ID
  bos_id: int = BOS_ID

  @classmethod
  def create(cls, num_pieces: int, max_target_length: int) -> "SpecialTokens":
    if num_pieces <= BOS_ID:
      raise ValueError(f"num_pieces={num_pieces}: a vocabulary needs PAD, EOS, UNK, BOS and pieces")
    if max_target_length < 1:
      raise ValueError(f"max_target_length={max_target_length} must be >= 1")
    return cls(num_pieces=num_pieces, max_target_length=max_target_length)

  @property
  def mask_id(self) -> int:
    return self.num_pieces

  @property
  def length_id(self) -> int:
    return self.num_pieces + 1

  @property
  def mask_range_start(self) -> int:
    """Id of [MASK_1]; [MASK_i] is `mask_range_start + i - 1` (position i-1, 0-based)."""
    return self.num_pieces + 2

  @property
  def mask_range_end(self) -> int:
    """One past the id of [MASK_N]."""
    return self.mask_range_start + self.max_target_length

  @property
  def vocab_size(self) -> int:
    """Model vocabulary size: every id above, rounded up to a multiple of 128."""
    return -(-self.mask_range_end // VOCAB_MULTIPLE) * VOCAB_MULTIPLE

  def mask_range_id(self, position):
    """[MASK_{position+1}] for a 0-based position (works on ints and arrays)."""
    return self.mask_range_start + position

  def is_real_piece(self, ids):
    """True for ids of real SentencePiece pieces (works on ints and arrays)."""
    return (ids >= 0) & (ids < self.num_pieces)
