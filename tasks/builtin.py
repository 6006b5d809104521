"""The built-in offline corpus (`padir.corpus`) as tasks: the project's default data.

  builtin_ar / builtin_padir             default multi-modality (level 2), seed 0, 50k/1k/1k
  builtin_mm{0,1,2,3}_ar / _padir        each multi-modality level (0 = deterministic)
  builtin_demo_ar / _padir               `padir demo`'s: sentences of <= 10 words, 10k/512/512,
                                         dominant variants (4 in 5)

Nothing is read or written at import: the corpus and its SentencePiece model are generated
into `$PADIR_DATA_DIR/builtin/...` the first time a dataset or the vocabulary is used (seconds),
then reused. `register_builtin(...)` (`padir.parallel_text`) registers other variants (seed,
sizes, level, lengths).
"""
from padir import corpus
from padir.parallel_text import (  # pylint: disable=unused-import  (names kept for callers)
    DEFAULT_MAX_TARGET_LENGTH, register_builtin)

register_builtin()
# `padir demo`'s corpus (padir/demo.py, gin/experiments/builtin_*.gin): sentences of at most 10
# words (26 pieces with EOS), which a small model learns in minutes; each choice's first variant
# 4 times in 5 (the teacher then settles on it, and distillation has one mode to give).
register_builtin("builtin_demo", num_train=10_240, num_validation=512, num_test=512,
                 max_words=10, dominant_share=0.8, max_target_length=32)
for _level in corpus.MULTIMODALITY_LEVELS:
  register_builtin(f"builtin_mm{_level}", multimodality=_level)
