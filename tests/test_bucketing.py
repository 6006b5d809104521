"""Length-bucketed batches (`padir.data.get_dataset(length_buckets=...)`): shapes per bucket,
no real token cut or example lost, determinism, resumption, shards, and the share of real target
positions on Multi30k train."""
import collections

import gin
import numpy as np
import pytest
import tensorflow as tf

from padir import data
from padir import trainer

LENGTHS = {"inputs": 32, "targets": 32}
TARGET_BUCKETS = (16, 20, 24, 28)  # The tiny corpus: targets of 11 to over 32 pieces.
INPUT_BUCKETS = (18, 22, 26, 30)
BUCKETS = tuple(zip(INPUT_BUCKETS, TARGET_BUCKETS)) + ((32, 32),)
# The bindings suggested for gin/experiments/multi30k_padir.gin (feature lengths 48, 96 rows).
MULTI30K_TARGET_BUCKETS = (10, 13, 16, 19, 22, 26, 30, 36)
MULTI30K_INPUT_BUCKETS = (13, 16, 19, 22, 25, 29, 34, 40)


def _batches(task, **kwargs):
  args = dict(split="train", batch_size=16, shuffle=True, seed=5, num_epochs=1,
              length_buckets=TARGET_BUCKETS, input_length_buckets=INPUT_BUCKETS)
  args.update(kwargs)
  return list(data.get_dataset(task, LENGTHS, **args))


def _real_length(row):
  """One past the last non-zero position of a `[L]` row."""
  nonzero = np.flatnonzero(row)
  return int(nonzero[-1]) + 1 if nonzero.size else 0


def _examples(batches):
  """Each row of every batch as a hashable tuple of its features without trailing padding."""
  rows = []
  for batch in batches:
    names = sorted(batch)
    for i in range(len(batch[names[0]])):
      rows.append(tuple(tuple(np.trim_zeros(batch[name][i], "b").tolist()) for name in names))
  return collections.Counter(rows)


def _assert_same(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for name in x:
      np.testing.assert_array_equal(x[name], y[name])


def test_bucket_lengths_pair_inputs_and_close_with_the_feature_lengths():
  assert data.bucket_lengths((8, 16), None, LENGTHS) == ((8, 8), (16, 16), (32, 32))
  assert data.bucket_lengths((8, 16), None, {"inputs": 12, "targets": 16}) == ((8, 8), (12, 16))
  assert data.bucket_lengths((8, 32), (10, 32), LENGTHS) == ((10, 8), (32, 32))
  for bad in [(), (8, 8), (0, 8), (8, 33)]:
    with pytest.raises(ValueError, match="get_dataset.length_buckets"):
      data.bucket_lengths(bad, None, LENGTHS)
  for bad in [(10,), (12, 10), (10, 40)]:
    with pytest.raises(ValueError, match="get_dataset.input_length_buckets"):
      data.bucket_lengths((8, 16), bad, LENGTHS)


def test_bucket_by_length_routes_to_the_first_bucket_that_holds_both_sides():
  def example(inputs, targets):
    return {"encoder_input_tokens": np.pad(np.full(inputs, 7, np.int32), (0, 8 - inputs)),
            "decoder_target_tokens": np.pad(np.full(targets, 7, np.int32), (0, 8 - targets)),
            "decoder_loss_weights": np.pad(np.ones(targets, np.float32), (0, 8 - targets))}

  # (inputs, targets): bucket (4, 2) holds the first; (5, 2) needs bucket (6, 4); (3, 7) the last.
  pairs = [(3, 2), (5, 2), (2, 4), (3, 7)]
  ds = tf.data.Dataset.from_generator(
      lambda: (example(*p) for p in pairs),
      output_signature={"encoder_input_tokens": tf.TensorSpec([8], tf.int32),
                        "decoder_target_tokens": tf.TensorSpec([8], tf.int32),
                        "decoder_loss_weights": tf.TensorSpec([8], tf.float32)})
  batches = list(data.bucket_by_length(ds, ((4, 2), (6, 4), (8, 8)), batch_size=2,
                                       drop_remainder=False).as_numpy_iterator())
  shapes = [(b["encoder_input_tokens"].shape, b["decoder_target_tokens"].shape,
             b["decoder_loss_weights"].shape) for b in batches]
  assert shapes == [((2, 6), (2, 4), (2, 4)), ((1, 4), (1, 2), (1, 2)), ((1, 8), (1, 8), (1, 8))]
  with pytest.raises(tf.errors.InvalidArgumentError, match="fits no bucket"):
    list(data.bucket_by_length(ds, ((4, 2), (6, 4)), batch_size=2).as_numpy_iterator())
  with pytest.raises(ValueError, match="neither encoder_"):
    data.bucket_by_length(ds.map(lambda x: {**x, "weights": x["decoder_loss_weights"]}),
                          ((8, 8),), batch_size=2)


@pytest.mark.slow
def test_batches_have_their_bucket_shapes_and_cut_or_lose_nothing(tiny_corpus):
  task = tiny_corpus["padir_task"]
  batches = _batches(task, drop_remainder=False)
  seen = collections.Counter()
  for batch in batches:
    widths = {name: value.shape[1] for name, value in batch.items()}
    bucket = (widths["encoder_input_tokens"], widths["decoder_target_tokens"])
    assert bucket in BUCKETS
    assert {w for name, w in widths.items() if name.startswith("decoder_")} == {bucket[1]}
    k = BUCKETS.index(bucket)
    for i in range(len(batch["decoder_target_tokens"])):
      inputs = _real_length(batch["encoder_input_tokens"][i])
      targets = max(_real_length(batch[name][i]) for name in batch if name.startswith("decoder_"))
      assert inputs <= bucket[0] and targets <= bucket[1]
      # The first bucket that holds it: each earlier one is too short on one side.
      assert all(inputs > i_len or targets > t_len for i_len, t_len in BUCKETS[:k])
    seen[bucket] += len(batch["decoder_target_tokens"])
  assert set(seen) == set(BUCKETS)  # The last (task lengths) holds the longest targets.
  full = sum(n // 16 for n in seen.values())
  assert sum(len(b["decoder_target_tokens"]) == 16 for b in batches) == full
  # Every example of the epoch, with every feature, exactly as the unbucketed batches hold it.
  unbucketed = _batches(task, drop_remainder=False, length_buckets=None,
                        input_length_buckets=None)
  assert _examples(batches) == _examples(unbucketed)


@pytest.mark.slow
def test_bucketed_stream_is_deterministic_and_resumable(tiny_corpus):
  task = tiny_corpus["padir_task"]
  full = _batches(task, num_epochs=2)
  assert len({b["decoder_target_tokens"].shape for b in full}) > 1
  _assert_same(full, _batches(task, num_epochs=2))
  _assert_same(full[7:], _batches(task, num_epochs=2, skip_batches=7))  # A run resumed at 7.
  other = _batches(task, num_epochs=2, seed=6)
  assert [b["decoder_target_tokens"].shape for b in other] != [
      b["decoder_target_tokens"].shape for b in full]


@pytest.mark.slow
def test_shards_hold_the_rows_of_one_global_bucketed_batch(tiny_corpus):
  task = tiny_corpus["padir_task"]
  whole = _batches(task, batch_size=16)
  shards = [_batches(task, batch_size=8, shard_id=i, num_shards=2) for i in range(2)]
  joined = [{name: np.concatenate([a[name], b[name]]) for name in a}
            for a, b in zip(*shards, strict=True)]
  _assert_same(whole, joined)
  with pytest.raises(ValueError, match="needs get_dataset.seed"):
    _batches(task, batch_size=8, num_shards=2, seed=None)


def test_bucketing_settings_are_checked(tiny_corpus):
  with pytest.raises(ValueError, match="unset get_dataset.pack"):
    _batches(tiny_corpus["ar_task"], pack=True)
  with pytest.raises(ValueError, match="needs get_dataset.length_buckets"):
    _batches(tiny_corpus["padir_task"], length_buckets=None)
  with pytest.raises(ValueError, match=r"task_feature_lengths\['targets'\]"):
    _batches(tiny_corpus["padir_task"], length_buckets=(8, 40), input_length_buckets=None)


@pytest.mark.slow
def test_multi30k_train_batches_are_mostly_real_tokens(multi30k_dir):
  """Through the trainer's dataset function and scoped gin bindings, as a run configures it."""
  gin.clear_config()
  gin.parse_config(f"""
      train/get_dataset.mixture_or_task_name = 'multi30k_en_de_padir'
      train/get_dataset.module = 'tasks.multi30k'
      train/get_dataset.task_feature_lengths = {{'inputs': 48, 'targets': 48}}
      train/get_dataset.seed = 0
      train/get_dataset.length_buckets = {MULTI30K_TARGET_BUCKETS}
      train/get_dataset.input_length_buckets = {MULTI30K_INPUT_BUCKETS}
  """)
  try:
    with gin.config_scope("train"):
      batches = trainer.seqio_dataset_fn(batch_size=96, shard_id=0, num_shards=1,
                                         skip_batches=0)
      real = positions = 0
      shapes = set()
      for _, batch in zip(range(50), batches):
        targets = batch["decoder_target_tokens"]
        real += np.count_nonzero(targets)
        positions += targets.size
        shapes.add((batch["encoder_input_tokens"].shape, targets.shape))
  finally:
    gin.clear_config()
  allowed = {((96, i), (96, t)) for i, t in zip(MULTI30K_INPUT_BUCKETS + (48,),
                                                  MULTI30K_TARGET_BUCKETS + (48,))}
  assert shapes <= allowed
  assert real / positions >= 0.8, f"only {real / positions:.1%} of target positions are real"
