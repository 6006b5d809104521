"""Data: PaDIR noise statistics and loss weights, feature converters, local / WMT tasks, batches,
and the errors bad input gives."""
import gzip
import logging
import os

import gin
import numpy as np
import pytest
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

from padir import corpus
from padir import data
from padir import features
from padir import preprocessors
from padir import special_tokens as special_tokens_lib
from tasks import local
from tasks import wmt
from test_vocab import tiny_spm  # pylint: disable=unused-import  (shared session fixture)

LENGTHS = {"inputs": 24, "targets": 24}
TOKENS = special_tokens_lib.SpecialTokens.create(num_pieces=20_000, max_target_length=64)


def _random_targets(rows=4000, length=64, seed=0):
  """Real-piece targets of random lengths ending in EOS, PAD after."""
  rng = np.random.default_rng(seed)
  targets = rng.integers(4, TOKENS.num_pieces, size=(rows, length), dtype=np.int32)
  ends = rng.integers(8, length, size=rows)
  positions = np.arange(length)[None, :]
  targets[positions == ends[:, None]] = TOKENS.eos_id
  targets[positions > ends[:, None]] = TOKENS.pad_id
  return targets


def _noise(targets, **config):
  out = preprocessors.noise_targets(targets, tf.constant([1, 2]), TOKENS,
                                    preprocessors.NoiseConfig(**config))
  return {k: v.numpy() for k, v in out.items()}


# --- Noise -------------------------------------------------------------------------------------


def test_noise_proportions_match_parameters():
  targets = _random_targets()
  out = _noise(targets, ratio_distribution="fixed", fixed_ratio=0.3, correct_prob=0.2,
               random_prob=0.3)
  noised, noise = out["targets_noised"], out["noise_mask"]
  eligible = targets > TOKENS.eos_id
  assert not noise[~eligible].any()
  np.testing.assert_array_equal(noised[~eligible], targets[~eligible])  # EOS and PAD untouched.
  assert abs(noise[eligible].mean() - 0.3) < 0.01
  kept = noise & (noised == targets)
  masked = noise & (noised == TOKENS.mask_id)
  randomized = noise & ~kept & ~masked
  assert abs(kept.sum() / noise.sum() - 0.2) < 0.015
  assert abs(randomized.sum() / noise.sum() - 0.3) < 0.015
  assert abs(masked.sum() / noise.sum() - 0.5) < 0.015
  assert TOKENS.is_real_piece(noised[randomized]).all() and (noised[randomized] > 3).all()
  np.testing.assert_array_equal(masked, out["init_mask"])
  np.testing.assert_array_equal(noised[~noise], targets[~noise])


@pytest.mark.parametrize("distribution, mean", [("uniform", 0.5), ("beta", 2 / 7)])
def test_noise_ratio_is_drawn_per_example(distribution, mean):
  targets = _random_targets()
  out = _noise(targets, ratio_distribution=distribution, beta_a=2.0, beta_b=5.0)
  eligible = targets > TOKENS.eos_id
  per_row = (out["noise_mask"] & eligible).sum(1) / eligible.sum(1)
  assert abs(per_row.mean() - mean) < 0.02
  assert per_row.std() > 0.15  # A ratio per example, not one for all.
  if distribution == "uniform":
    quartiles = np.histogram(per_row, bins=[0, 0.25, 0.5, 0.75, 1.01])[0] / len(per_row)
    np.testing.assert_allclose(quartiles, 0.25, atol=0.04)


def test_noised_positions_are_marked_for_the_model():
  """Positions that start from scratch are [MASK], whatever the model's initial canvas: the
  model fills them (`PadirModel.unrolled_stages`)."""
  targets = _random_targets(rows=200)
  out = _noise(targets, correct_prob=0.0, random_prob=0.0)
  init = out["init_mask"]
  np.testing.assert_array_equal(out["noise_mask"], init)
  assert init.any() and (out["targets_noised"][init] == TOKENS.mask_id).all()
  assert (out["targets_noised"][~init] != TOKENS.mask_id).all()


@pytest.mark.parametrize("scheme", ["all", "noise", "mask"])
def test_loss_weights_select_exact_positions(scheme):
  targets = _random_targets(rows=300)
  out = _noise(targets, loss_weights=scheme, correct_prob=0.2,
               random_prob=0.2)
  is_eos = targets == TOKENS.eos_id
  expected = {"all": targets != TOKENS.pad_id,
              "noise": out["noise_mask"] | is_eos,
              "mask": out["init_mask"] | is_eos}[scheme]
  assert out["targets_loss_weights"].dtype == np.float32
  np.testing.assert_array_equal(out["targets_loss_weights"], expected.astype(np.float32))
  if scheme == "mask":  # Kept / random-replaced noised tokens are not weighted.
    assert (out["noise_mask"] & ~out["init_mask"]).any()


def test_noise_config_is_validated():
  with pytest.raises(ValueError, match="correct_prob"):
    preprocessors.NoiseConfig(correct_prob=0.7, random_prob=0.5)
  with pytest.raises(ValueError, match="loss_weights"):
    preprocessors.NoiseConfig(loss_weights="masks")


# --- Feature converters ----------------------------------------------------------------------


def _examples(noised=False):
  examples = [{"inputs": [7, 8, 1], "targets": [5, 6, 9, 1]}, {"inputs": [4, 1], "targets": [8, 1]}]
  if noised:
    for ex in examples:
      ex[preprocessors.NOISED_FEATURE] = [TOKENS.mask_id] * (len(ex["targets"]) - 1) + [1]
      ex[preprocessors.LOSS_WEIGHTS_FEATURE] = [1.0] * len(ex["targets"])
  return tf.data.Dataset.from_generator(
      lambda: iter(examples),
      output_signature={k: tf.TensorSpec([None], tf.float32 if "weights" in k else tf.int32)
                        for k in examples[0]})


def test_ar_converter_shifts_with_bos():
  (ex, _) = list(features.ARFeatureConverter()(_examples(), {"inputs": 5, "targets": 6})
                 .as_numpy_iterator())
  np.testing.assert_array_equal(ex["decoder_target_tokens"], [5, 6, 9, 1, 0, 0])
  np.testing.assert_array_equal(ex["decoder_input_tokens"], [3, 5, 6, 9, 0, 0])
  np.testing.assert_array_equal(ex["decoder_loss_weights"], [1, 1, 1, 1, 0, 0])
  assert ex["decoder_loss_weights"].dtype == np.float32
  (packed,) = list(features.ARFeatureConverter(pack=True)(
      _examples(), {"inputs": 8, "targets": 8}).as_numpy_iterator())
  np.testing.assert_array_equal(packed["decoder_input_tokens"], [3, 5, 6, 9, 3, 8, 0, 0])
  np.testing.assert_array_equal(packed["decoder_segment_ids"], [1, 1, 1, 1, 2, 2, 0, 0])


def test_padir_converter_aligns_noised_inputs():
  (ex, _) = list(features.PadirFeatureConverter()(_examples(noised=True), {"inputs": 5,
                                                                           "targets": 6})
                 .as_numpy_iterator())
  np.testing.assert_array_equal(ex["decoder_target_tokens"], [5, 6, 9, 1, 0, 0])
  m = TOKENS.mask_id
  np.testing.assert_array_equal(ex["decoder_input_tokens"], [m, m, m, 1, 0, 0])
  np.testing.assert_array_equal(ex["decoder_loss_weights"], [1, 1, 1, 1, 0, 0])
  with pytest.raises(ValueError, match="does not pack"):
    features.PadirFeatureConverter(pack=True)
  with pytest.raises(ValueError, match="_padir"):
    features.PadirFeatureConverter()(_examples(), {"inputs": 5, "targets": 6})


# --- Local parallel text -------------------------------------------------------------------


def _write(path, lines, raw=None):
  payload = raw if raw is not None else "".join(line + "\n" for line in lines).encode("utf-8")
  with (gzip.open(path, "wb") if path.endswith(".gz") else open(path, "wb")) as f:
    f.write(payload)


@pytest.fixture(scope="module")
def multi30k_like(tmp_path_factory):
  """A tiny folder in the Multi30k layout (gz train, plain val, test_2016_flickr)."""
  folder = tmp_path_factory.mktemp("multi30k_like")
  en, de = map(list, zip(*corpus.generate_pairs(seed=5, split="train", num_pairs=40,
                                                multimodality=1)))
  en[5] = ""  # An empty line: dropped from training, kept in evaluation splits.
  de[9] = " "
  _write(str(folder / "train.en.gz"), en)
  _write(str(folder / "train.de.gz"), de)
  _write(str(folder / "val.en"), en[:10])
  _write(str(folder / "val.de"), de[:10])
  _write(str(folder / "test_2016_flickr.en.gz"), en[10:14])
  _write(str(folder / "test_2016_flickr.de.gz"), de[10:14])
  return folder


@pytest.fixture(scope="module")
def local_tasks(multi30k_like, tiny_spm):
  names = local.register_parallel_text("test_local_en_de", vocabulary=tiny_spm,
                                       folder=str(multi30k_like), src="en", tgt="de",
                                       max_target_length=32)
  return dict(zip(("ar", "padir"), names))


def test_local_tasks_registered_idempotently(local_tasks, multi30k_like, tiny_spm, caplog):
  assert local_tasks == {"ar": "test_local_en_de_ar", "padir": "test_local_en_de_padir"}
  task = seqio.get_mixture_or_task(local_tasks["padir"])
  assert set(task.splits) == {"train", "val", "validation", "test_2016_flickr", "test"}
  with caplog.at_level(logging.WARNING):
    assert task.num_input_examples("train") == 38 and task.num_input_examples("val") == 10
  assert "train.en.gz split 'train': dropping 2 of 40 pairs with an empty side" in caplog.text
  again = local.register_parallel_text("test_local_en_de", vocabulary=tiny_spm,
                                       folder=str(multi30k_like), src="en", tgt="de",
                                       max_target_length=32)
  assert again == tuple(local_tasks.values())
  with pytest.raises(ValueError, match="already registered with another configuration"):
    local.register_parallel_text("test_local_en_de", vocabulary=tiny_spm,
                                 folder=str(multi30k_like), src="en", tgt="de",
                                 max_target_length=48)


@pytest.mark.parametrize("flavour", ["ar", "padir"])
def test_local_task_batches(local_tasks, flavour):
  batches = list(data.get_dataset(local_tasks[flavour], LENGTHS, "train", batch_size=8,
                                  shuffle=True, seed=3, num_epochs=1))
  assert len(batches) == 38 // 8
  for batch in batches:
    assert set(batch) == {"encoder_input_tokens", "decoder_target_tokens",
                          "decoder_input_tokens", "decoder_loss_weights"}
    for key, value in batch.items():
      assert value.shape == (8, 24)
      assert value.dtype == (np.float32 if key == "decoder_loss_weights" else np.int32)
  first = batches[0]
  assert (first["decoder_target_tokens"] == 1).sum() == 8  # One EOS per example.
  if flavour == "padir":
    vocabulary = seqio.get_mixture_or_task(local_tasks["padir"]).output_features["targets"]
    tokens = vocabulary.vocabulary.special_tokens
    eos = first["decoder_target_tokens"] == 1
    np.testing.assert_array_equal(first["decoder_input_tokens"][eos], 1)
    assert (first["decoder_input_tokens"] == tokens.mask_id).any()
  else:
    np.testing.assert_array_equal(first["decoder_input_tokens"][:, 0], 3)


def test_batches_are_deterministic_resumable_and_sharded(local_tasks):
  def batches(**kwargs):
    args = dict(split="train", batch_size=4, shuffle=True, seed=7, num_epochs=2)
    args.update(kwargs)
    return list(data.get_dataset(local_tasks["padir"], LENGTHS, **args))

  full = batches()
  assert len(full) == 2 * 38 // 4
  assert not np.array_equal(full[0]["decoder_input_tokens"], full[-1]["decoder_input_tokens"])
  for a, b in zip(full[5:], batches(skip_batches=5), strict=True):  # A rerun, resumed at 5.
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  shards = [batches(shard_id=i, num_shards=2, num_epochs=1, batch_size=1) for i in range(2)]
  inputs = [{tuple(b["encoder_input_tokens"][0]) for b in shard} for shard in shards]
  assert len(inputs[0]) + len(inputs[1]) == 38 and not inputs[0] & inputs[1]


@pytest.mark.slow
def test_noise_is_bound_by_gin_at_the_edge(local_tasks):
  gin.parse_config("""
      padir_noise.ratio_distribution = 'fixed'
      padir_noise.fixed_ratio = 1.0
      padir_noise.correct_prob = 0.0
      padir_noise.random_prob = 0.0
      padir_noise.loss_weights = 'mask'
  """)
  try:
    batch = next(data.get_dataset(local_tasks["padir"], LENGTHS, batch_size=4, seed=0))
  finally:
    gin.clear_config()
  targets, inputs = batch["decoder_target_tokens"], batch["decoder_input_tokens"]
  words = targets > 1
  mask_id = seqio.get_mixture_or_task(local_tasks["padir"]).output_features[
      "targets"].vocabulary.special_tokens.mask_id
  assert (inputs[words] == mask_id).all() and (inputs[~words] == targets[~words]).all()
  np.testing.assert_array_equal(batch["decoder_loss_weights"], (targets > 0).astype(np.float32))


def test_iterate_examples_keeps_order_and_empty_lines(local_tasks):
  examples = list(data.iterate_examples(local_tasks["padir"], "validation"))
  assert len(examples) == 10
  assert examples[0]["inputs_text"] == corpus.generate_pairs(5, "train", 1, 1)[0][0]
  assert examples[5]["inputs_text"] == "" and examples[9]["targets_text"] == ""
  np.testing.assert_array_equal(examples[5]["inputs"], [1])  # Just EOS.
  assert examples[0]["inputs"][-1] == 1 and examples[0]["inputs"].dtype == np.int32
  assert set(examples[0]) == {"inputs_text", "targets_text", "inputs", "targets"}
  with pytest.raises(ValueError, match="did you mean"):
    list(data.iterate_examples("test_local_en_de_padri", "validation"))


def test_tsv_task(tmp_path, tiny_spm):
  tsv = str(tmp_path / "distilled.tsv")
  _write(tsv, ["a dog runs\tein hund rennt", "\t", "two cats\tzwei katzen"])
  ar, _ = local.register_parallel_text("test_tsv", vocabulary=tiny_spm, tsv=tsv,
                                       max_target_length=32)
  assert seqio.get_mixture_or_task(ar).num_input_examples("train") == 2
  batches = list(data.get_dataset(ar, LENGTHS, "train", batch_size=2, shuffle=False,
                                  num_epochs=1))
  assert len(batches) == 1 and batches[0]["encoder_input_tokens"].shape == (2, 24)


@pytest.mark.parametrize("files, error", [
    ({"train.en": ["a", "b", "c"], "train.de": ["x", "y"]},
     r"train\.en has 3 lines but .*train\.de has 2"),
    ({"train.en.gz": ["a", "b"], "train.de.gz": b"x\n\xc3\x28\n"},
     r"train\.de\.gz:2: invalid UTF-8"),
    ({"train.tsv": ["a\tb", "no tab here"]}, r"train\.tsv:2: expected 'source<TAB>target'"),
])
def test_bad_input_errors_name_file_and_line(tmp_path, tiny_spm, files, error):
  for name, content in files.items():
    _write(str(tmp_path / name), *(([], content) if isinstance(content, bytes) else (content,)))
  kwargs = ({"tsv": str(tmp_path / "train.tsv")} if "train.tsv" in files else
            {"folder": str(tmp_path), "src": "en", "tgt": "de"})
  ar, _ = local.register_parallel_text(f"test_bad_{tmp_path.name}", vocabulary=tiny_spm,
                                       **kwargs)
  with pytest.raises(data.TextFileError, match=error):
    next(data.get_dataset(ar, LENGTHS, "train", batch_size=1, shuffle=False, num_epochs=1))


def test_length_beyond_vocabulary_max_is_an_error(local_tasks):
  with pytest.raises(ValueError, match="exceeds the vocabulary's max_target_length=32"):
    data.get_dataset(local_tasks["padir"], {"inputs": 24, "targets": 48}, batch_size=2)


@pytest.mark.slow
def test_real_multi30k(multi30k_dir, tiny_spm):
  ar, padir = local.register_parallel_text("test_real_multi30k_en_de", vocabulary=tiny_spm,
                                           folder=str(multi30k_dir), src="en", tgt="de")
  task = seqio.get_mixture_or_task(padir)
  assert [task.num_input_examples(s) for s in ("train", "validation", "test")] == [
      29_000, 1_014, 1_000]
  batch = next(data.get_dataset(padir, {"inputs": 64, "targets": 64}, "train", batch_size=4,
                                seed=0))
  assert batch["decoder_input_tokens"].shape == (4, 64)
  first = next(data.iterate_examples(ar, "test"))
  assert first["inputs_text"] and first["targets_text"]


def test_multi30k_module_registers_both_directions():
  import tasks.multi30k  # pylint: disable=g-import-not-at-top,unused-import
  for name in ("multi30k_en_de", "multi30k_de_en"):
    for flavour in ("_ar", "_padir"):
      assert {"train", "validation", "test", "test_2016_flickr"} <= set(
          seqio.get_mixture_or_task(name + flavour).splits)


# --- WMT via TFDS (mock data) --------------------------------------------------------------


def _write_tfds_metadata(data_dir, tfds_name, num_examples):
  """Split sizes for a mocked TFDS dataset (seqio asks for them; mock data has none)."""
  builder = tfds.builder(tfds_name, data_dir=data_dir)
  builder.info.set_splits(tfds.core.SplitDict([
      tfds.core.SplitInfo(name=split, shard_lengths=[num_examples], num_bytes=0)
      for split in wmt.SPLITS]))
  os.makedirs(builder.data_dir, exist_ok=True)
  builder.info.write_to_directory(builder.data_dir)


@pytest.mark.slow
def test_wmt_tasks_on_mock_data(tiny_spm, tmp_path):
  for name, (tfds_name, _, _, _) in wmt.WMT_TASKS.items():
    for flavour in ("_ar", "_padir"):
      registered = seqio.get_mixture_or_task(name + flavour)
      assert registered.source.tfds_dataset.name == tfds_name
      assert set(registered.splits) == set(wmt.SPLITS)
  for name in ("wmt14_en_de", "wmt16_ro_en"):
    tfds_name, src, tgt, _ = wmt.WMT_TASKS[name]
    _write_tfds_metadata(str(tmp_path), tfds_name, num_examples=6)
    ar, padir = wmt.register_tfds_translation(f"test_{name}", tfds_name, src, tgt,
                                              vocab_path=tiny_spm, max_target_length=32)
    with tfds.testing.mock_data(num_examples=6, data_dir=str(tmp_path)):
      (example,) = list(data.iterate_examples(ar, "test", max_examples=1))
      assert isinstance(example["inputs_text"], str) and example["targets"][-1] == 1
      for task in (ar, padir):
        batch = next(data.get_dataset(task, LENGTHS, "test", batch_size=2, seed=0))
        assert batch["encoder_input_tokens"].shape == (2, 24)
        assert batch["decoder_loss_weights"].dtype == np.float32
