"""A PaDIR student warm-started from an AR teacher: re-bucketed decoder relative position biases,
special-token embedding rows from the real pieces' statistics, and when the trainer does either."""
import logging

import flax.linen as nn
import gin
import jax
import numpy as np
import pytest

from padir import checkpoints
from padir import layers
from padir import models
from padir import network
from padir import optimizers
from padir import partitioning
from padir import student_init
from padir import train_step
from padir import trainer
from padir.special_tokens import SpecialTokens

SPECIAL = SpecialTokens.create(num_pieces=100, max_target_length=16)
INPUT_SHAPES = {"encoder_input_tokens": (2, 8), "decoder_input_tokens": (2, 8)}
AR_CONFIG = """from __gin__ import dynamic_registration
from padir import models
from padir import trainer

# Macros:
# ==============================================================================
MODEL = @models.ARModel()

# Parameters for MODEL/models.ARModel:
# ==============================================================================
MODEL/models.ARModel.alpha = 0.6

# Parameters for trainer.train:
# ==============================================================================
trainer.train.model = %MODEL
trainer.train.seed = 0
"""
PADIR_CONFIG = AR_CONFIG.replace("ARModel", "PadirModel")


# ----------------------------------------------------------------------------------------------
# Relative position biases.


def _biases(table, max_distance, length, bidirectional):
  """Biases `[heads, length (query), length (key)]` of `table` `[heads, buckets]`."""
  heads, buckets = table.shape
  module = layers.RelativePositionBiases(buckets, max_distance, heads)
  return np.asarray(module.apply({"params": {"rel_embedding": table}}, length, length,
                                 bidirectional))[0]


@pytest.mark.parametrize("num_buckets,max_distance", [(32, 128), (8, 16), (16, 20)])
@pytest.mark.slow
def test_relpos_gives_each_offset_the_teacher_bias_of_its_distance(num_buckets, max_distance):
  teacher = np.random.default_rng(0).normal(size=(3, num_buckets)).astype(np.float32)
  student = student_init.causal_to_bidirectional_relpos(teacher, num_buckets, max_distance)
  assert student.shape == teacher.shape and student.dtype == teacher.dtype

  length = max_distance + 10  # Past max_distance too.
  last = length - 1
  # [heads, d]: the bias of the key d positions before the last query.
  teacher_past = _biases(teacher, max_distance, length, False)[:, last, ::-1]
  student_bias = _biases(student, max_distance, length, True)
  student_past = student_bias[:, last, ::-1]
  student_future = student_bias[:, 0, :]  # [heads, d]: key d after the query.

  # Future keys mirror past ones (d = 0 is the query itself).
  np.testing.assert_allclose(student_future[:, 1:], student_past[:, 1:], rtol=1e-6)
  # Each student bucket: the mean teacher bias of the distances 0..max_distance it covers.
  distance = np.arange(length, dtype=np.int32)
  bucket = np.asarray(layers.relative_position_bucket(-distance, True, num_buckets,
                                                      max_distance))
  covered = distance <= max_distance
  single = []
  for d in distance:
    same = covered & (bucket == bucket[d])
    np.testing.assert_allclose(student_past[:, d], teacher_past[:, same].mean(axis=1),
                               rtol=1e-5, atol=1e-6)
    if same.sum() == 1:
      single.append(d)
  # Distances with a bucket of their own get the teacher's bias exactly.
  assert single == list(range(num_buckets // 4))
  np.testing.assert_array_equal(student_past[:, single], teacher_past[:, single])
  np.testing.assert_array_equal(student_future[:, single[1:]], teacher_past[:, single[1:]])


def test_relpos_rejects_a_table_of_other_buckets():
  with pytest.raises(ValueError, match=r"expected \[heads, 32\]"):
    student_init.causal_to_bidirectional_relpos(np.zeros((2, 16)), 32, 128)


# ----------------------------------------------------------------------------------------------
# Special-token embeddings.


def _cosines(rows):
  unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
  return unit @ unit.T


@pytest.mark.parametrize("num_pieces,max_target_length,dim", [(100, 16, 32), (1000, 256, 256)])
def test_special_rows_from_real_piece_statistics(num_pieces, max_target_length, dim):
  st = SpecialTokens.create(num_pieces, max_target_length)
  rng = np.random.default_rng(0)
  embedding = (rng.normal(0.3, 1.0, (st.vocab_size, dim))
               * rng.uniform(0.5, 1.5, dim)).astype(np.float32)
  out = student_init.init_special_rows(embedding, st)
  assert out.shape == embedding.shape and out.dtype == embedding.dtype
  np.testing.assert_array_equal(out, student_init.init_special_rows(embedding, st))

  special = np.arange(st.mask_id, st.mask_range_end)
  others = np.setdiff1d(np.arange(st.vocab_size), special)
  np.testing.assert_array_equal(out[others], embedding[others])
  assert np.all(out[special] != embedding[special])

  real = embedding[4:num_pieces].astype(np.float64)
  mean, std = real.mean(axis=0), real.std(axis=0)
  mask, length = out[st.mask_id], out[st.length_id]
  for row in (mask, length):
    assert np.sqrt(np.mean(((row - mean) / std) ** 2)) < 0.2  # Mean + 0.1 std noise.
  assert not np.allclose(mask, length)

  ranged = out[st.mask_range_start:st.mask_range_end]
  cosines = _cosines(ranged)
  offset = np.abs(np.arange(max_target_length)[:, None] - np.arange(max_target_length))
  neighbours = cosines[offset == 1].mean()
  distant = cosines[offset >= max_target_length // 2].mean()
  assert neighbours > 0.5 and distant < neighbours - 0.2, (neighbours, distant)
  real_norm = np.median(np.linalg.norm(real, axis=1))
  norms = np.linalg.norm(ranged, axis=1)
  assert np.all((norms > 0.5 * real_norm) & (norms < 2.0 * real_norm)), (norms, real_norm)
  # The position code is at the real rows' scale: unit root mean square in units of std.
  np.testing.assert_allclose(np.sqrt(np.mean(((ranged - mean) / std) ** 2, axis=1)), 1.0,
                             rtol=1e-5)


def test_special_rows_need_room_and_real_pieces():
  with pytest.raises(ValueError, match="expected \\[vocab >= 118"):
    student_init.init_special_rows(np.zeros((100, 8)), SPECIAL)
  with pytest.raises(ValueError, match="no real pieces"):
    student_init.init_special_rows(np.zeros((128, 8)), SpecialTokens.create(4, 16))


# ----------------------------------------------------------------------------------------------
# Detection.


def test_trained_model_class_follows_train_model_through_macros():
  assert student_init.trained_model_class(AR_CONFIG) == "ARModel"
  assert student_init.trained_model_class(PADIR_CONFIG) == "PadirModel"
  assert student_init.trained_model_class(
      "train.model = @train/models.PadirModel()\n") == "PadirModel"
  assert student_init.trained_model_class("trainer.train.seed = 0\n") is None
  assert student_init.trained_model_class("trainer.train.model = %MODEL\n") is None


def _model_dir(root, config):
  """A model_dir with an (empty) checkpoints/ step dir and `config` as its config.gin."""
  (root / "checkpoints" / "7" / "params").mkdir(parents=True)
  if config is not None:
    (root / "config.gin").write_text(config)
  return root


def test_source_decoder_causal_from_any_checkpoint_path(tmp_path):
  ar = _model_dir(tmp_path / "ar", AR_CONFIG)
  for path in (ar, ar / "checkpoints", ar / "checkpoints" / "7"):
    assert student_init.source_decoder_causal(str(path)) is True
  assert student_init.source_decoder_causal(str(_model_dir(tmp_path / "p", PADIR_CONFIG))) is False
  assert student_init.source_decoder_causal(str(_model_dir(tmp_path / "none", None))) is None
  assert student_init.source_decoder_causal(str(_model_dir(tmp_path / "bad", "a = ("))) is None
  assert student_init.source_decoder_causal(str(tmp_path / "t5x_checkpoint")) is None


def _network():
  return network.Transformer(network.get_config("test"))


def _params(model, seed=0):
  variables = model.get_initial_variables(jax.random.PRNGKey(seed), INPUT_SHAPES)
  return {checkpoints.path_name(p): np.asarray(v) for p, v in
          jax.tree_util.tree_flatten_with_path(nn.meta.unbox(variables["params"]))[0]}


@pytest.fixture(scope="module")
def teacher_params():
  return _params(models.ARModel(_network(), special_tokens=SPECIAL))


def _adapted(teacher_params):
  return {
      student_init.DECODER_RELPOS: student_init.causal_to_bidirectional_relpos(
          teacher_params[student_init.DECODER_RELPOS], 32, 128),
      student_init.TOKEN_EMBEDDING: student_init.init_special_rows(
          teacher_params[student_init.TOKEN_EMBEDDING], SPECIAL)}


def _assert_params(actual, expected):
  assert set(actual) == set(expected)
  for name in expected:
    np.testing.assert_array_equal(np.asarray(actual[name]), expected[name], err_msg=name)


def test_adapt_to_student_detects_an_ar_source(tmp_path, teacher_params, caplog):
  student = models.PadirModel(_network(), special_tokens=SPECIAL)
  ar = str(_model_dir(tmp_path / "ar", AR_CONFIG))
  adapt = lambda source, **kw: student_init.adapt_to_student(teacher_params, student, source, **kw)
  with caplog.at_level(logging.INFO, logger=student_init.__name__):
    _assert_params(adapt(ar), {**teacher_params, **_adapted(teacher_params)})
  assert "re-bucketed from causal to bidirectional" in caplog.text
  assert "[MASK_1..16] (102..117)" in caplog.text
  _assert_params(adapt(ar, map_causal_relpos=False, init_special_embeddings=False),
                 teacher_params)
  only_relpos = adapt(ar, init_special_embeddings=False)
  _assert_params(only_relpos, {**teacher_params, student_init.DECODER_RELPOS:
                               _adapted(teacher_params)[student_init.DECODER_RELPOS]})

  # A PaDIR source is used as it is; an unknown one too, with a warning, unless forced.
  _assert_params(adapt(str(_model_dir(tmp_path / "padir", PADIR_CONFIG))), teacher_params)
  unknown = str(_model_dir(tmp_path / "unknown", None))
  caplog.clear()
  with caplog.at_level(logging.WARNING, logger=student_init.__name__):
    _assert_params(adapt(unknown), teacher_params)
  assert "cannot tell whether it is an AR run" in caplog.text
  _assert_params(adapt(unknown, map_causal_relpos=True, init_special_embeddings=True),
                 {**teacher_params, **_adapted(teacher_params)})

  # An AR (causal) target is left alone, and cannot be forced.
  teacher = models.ARModel(_network(), special_tokens=SPECIAL)
  _assert_params(student_init.adapt_to_student(teacher_params, teacher, ar), teacher_params)
  with pytest.raises(ValueError, match="only for a model with a non-causal T5 decoder"):
    student_init.adapt_to_student(teacher_params, teacher, ar, map_causal_relpos=True)
  # A change asked for needs its parameter among the copied ones.
  with pytest.raises(ValueError, match="init_special_embeddings: the warm-start checkpoint has no "
                     "token_embedder/embedding"):
    student_init.adapt_to_student({}, student, ar, map_causal_relpos=False)


# ----------------------------------------------------------------------------------------------
# The trainer's warm start.


@pytest.fixture
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


@pytest.mark.slow
def test_warm_start_adapts_a_student_from_an_ar_run(tmp_path, teacher_params, clean_gin):
  del clean_gin
  teacher_dir = str(tmp_path / "teacher")
  manager = checkpoints.make_manager(checkpoints.checkpoint_dir(teacher_dir))
  checkpoints.save(manager, 5, teacher_params, {"step": np.int32(5)})
  manager.wait_until_finished()
  checkpoints.write_run_record(teacher_dir, gin_config=AR_CONFIG, seed=0)

  student = models.PadirModel(_network(), special_tokens=SPECIAL,
                              optimizer_def=optimizers.adamw(learning_rate=1e-3))
  mesh = train_step.make_train_mesh(None)
  with jax.set_mesh(mesh), nn.logical_axis_rules(partitioning.LOGICAL_AXIS_RULES):
    shardings = trainer.train_state_shardings(
        mesh, trainer.abstract_train_state(student, INPUT_SHAPES))
    state = trainer.init_train_state(student, jax.random.PRNGKey(1), INPUT_SHAPES, None,
                                     shardings)
    fresh = _params(student, seed=1)
    warm = trainer.warm_start(student, state, teacher_dir, shardings)
    gin.bind_parameter("trainer.warm_start.map_causal_relpos", False)
    gin.bind_parameter("trainer.warm_start.init_special_embeddings", False)
    copied = trainer.warm_start(student, state, teacher_dir, shardings)

  as_dict = lambda s: {checkpoints.path_name(p): v for p, v in
                       jax.tree_util.tree_flatten_with_path(jax.device_get(s.params))[0]}
  copy = {**fresh, **{k: v for k, v in teacher_params.items() if k in fresh}}
  assert "length_head/kernel" in fresh and "length_head/kernel" not in teacher_params
  _assert_params(as_dict(warm), {**copy, **_adapted(teacher_params)})
  _assert_params(as_dict(copied), copy)


def test_special_rows_in_t5_layout():
  """T5's sentinels become [MASK_i] in position order (<extra_id_0> = [MASK_1]); the sentinels
  beyond max_target_length and every piece are left as they are."""
  st = SpecialTokens.t5(num_pieces=200, max_target_length=16, extra_ids=20)
  rng = np.random.default_rng(0)
  embedding = rng.normal(0.3, 1.0, (st.vocab_size, 8)).astype(np.float32)
  out = student_init.init_special_rows(embedding, st)
  real = embedding[3:200].astype(np.float64)
  mean, std = real.mean(axis=0), real.std(axis=0)
  code = student_init.sinusoidal_code(16, 8)
  for i in range(16):
    np.testing.assert_allclose(out[st.mask_range_id(i)], mean + std * code[i], rtol=1e-5)
  changed = {st.mask_id, st.length_id, *(st.mask_range_id(i) for i in range(16))}
  others = np.array(sorted(set(range(st.vocab_size)) - changed))
  np.testing.assert_array_equal(out[others], embedding[others])
  assert st.mask_range_id(15) == 204 and 203 in others  # <extra_id_16> is not a mask
