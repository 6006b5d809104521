"""Length predictors (`padir.length`) and the PaDIR model's parts: one class per head, the same
model from its parts as from the arguments (and string names) that earlier configs recorded."""
import shutil
import warnings

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from padir import checkpoints
from padir import decoding
from padir import length
from padir import losses
from padir import models
from padir import network
from padir import translator  # Imported before a fixture's training locks the gin config.
from padir.special_tokens import SpecialTokens

ST = SpecialTokens.create(num_pieces=24, max_target_length=8)
SRC = np.array([[5, 6, 1, 0], [7, 8, 9, 1]], np.int32)
GOLD = np.array([4, 2], np.int32)


def _network():
  return network.Transformer(network.get_config(
      "test", num_encoder_layers=1, num_decoder_layers=1, emb_dim=32, num_heads=2, head_dim=16,
      mlp_dim=64, dropout_rate=0.0))


def stub_vocabulary():
  return type("StubVocabulary", (), {"special_tokens": ST})()


def tiny_network():
  return _network()


def built(model=gin.REQUIRED):
  return model


def _build(config: str):
  gin.clear_config()
  try:
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      gin.parse_config(config + "\ntest_length.built.model = %MODEL\n")
      model = gin.get_configurable(built)()
  finally:
    gin.clear_config()
  return model, [str(w.message) for w in caught if w.category is DeprecationWarning]


HEADER = """
from __gin__ import dynamic_registration
from padir import checkpoints
from padir import decoding
from padir import length
from padir import losses
from padir import models
import test_length
MODEL = @models.PadirModel()
"""
# The model section of a config.gin that a run recorded before the model took its parts as
# objects (runs/m30k/student_distilled/config.gin, network and vocabulary stubbed).
RECORDED_BEFORE_THE_PARTS = HEADER + """
MODEL/models.PadirModel.decoder_input_scheme = 'mask_range'
MODEL/models.PadirModel.glancing_fraction = 0.5
MODEL/models.PadirModel.glancing_ratio = 0.5
MODEL/models.PadirModel.keep_visible = True
MODEL/models.PadirModel.label_smoothing = 0.1
MODEL/models.PadirModel.length_label_sigma = 1.0
MODEL/models.PadirModel.length_loss_weight = 1.0
MODEL/models.PadirModel.length_predictor = 'offset'
MODEL/models.PadirModel.loss_normalizing_factor = 'NUM_REAL_TARGET_TOKENS'
MODEL/models.PadirModel.max_length_offset = 16
MODEL/models.PadirModel.module = @test_length.tiny_network()
MODEL/models.PadirModel.num_train_stages = 1
MODEL/models.PadirModel.rejecter = 'linear'
MODEL/models.PadirModel.rejecter_fraction = 0.1
MODEL/models.PadirModel.rejecter_k = 1
MODEL/models.PadirModel.rejecter_loss_weight = 1.0
MODEL/models.PadirModel.rejecter_threshold = 0.0
MODEL/models.PadirModel.remasking_scheme = 'initial'
MODEL/models.PadirModel.special_tokens = None
MODEL/models.PadirModel.stutter_remasking = False
MODEL/models.PadirModel.vocabulary = @test_length.stub_vocabulary()
MODEL/models.PadirModel.z_loss = 0.0001
"""
# The same model as today's gin files bind it.
TODAY = HEADER + """
models.PadirModel:
  module = @test_length.tiny_network()
  vocabulary = @test_length.stub_vocabulary()
  loss = @losses.LossSettings()
  length_predictor = @length.Offset()
  scheme = @decoding.RefinementScheme()
  training = @models.TrainingRecipe()
losses.LossSettings.label_smoothing = 0.1
losses.LossSettings.z_loss = 1e-4
decoding.RefinementScheme:
  decoder_input_scheme = 'mask_range'
  rejecter = 'linear'
  remasking_scheme = 'initial'
  keep_visible = True
models.TrainingRecipe.glancing_ratio = 0.5
models.TrainingRecipe.glancing_fraction = 0.5
"""


def _parts(model):
  return (model.loss_settings, model.length_predictor, model.scheme, model.training,
          model.module.config, model.decode_fn)


def test_a_config_recorded_before_the_parts_builds_todays_model():
  old, old_warnings = _build(RECORDED_BEFORE_THE_PARTS)
  new, new_warnings = _build(TODAY)
  assert _parts(old) == _parts(new)
  assert new.length_predictor == length.Offset(special_tokens=ST, max_offset=16)
  assert new.loss_settings == losses.LossSettings(label_smoothing=0.1, z_loss=1e-4)
  assert old_warnings and "deprecated" in old_warnings[0] and not new_warnings


def test_a_legacy_argument_replaces_the_field_of_its_part():
  """As the benchmarks' and sweeps' `--gin.models.PadirModel.NAME=...` overrides do."""
  model, caught = _build(TODAY + """
models.PadirModel.glancing_ratio = 0.0
models.PadirModel.length_predictor = 'classifier'
models.PadirModel.rejecter = 'constant_k'
models.PadirModel.length_loss_weight = 0.1
""")
  assert model.training.glancing_ratio == 0.0 and model.training.glancing_fraction == 0.5
  assert isinstance(model.length_predictor, length.Classifier)
  assert (model.scheme.rejecter, model.scheme.keep_visible) == ("constant_k", True)
  assert model.loss_settings.length_loss_weight == 0.1
  assert caught
  with pytest.raises(TypeError, match="rejector"):
    models.PadirModel(_network(), special_tokens=ST, rejector="linear")
  # Configs older than the decode configs bound the canvas length on the model, as None.
  assert models.PadirModel(_network(), special_tokens=ST, max_decode_length=None).scheme == (
      decoding.RefinementScheme())
  with pytest.raises(ValueError, match="max_decode_length"):
    models.PadirModel(_network(), special_tokens=ST, max_decode_length=12)


def test_every_name_maps_to_its_class_and_unknown_ones_are_named():
  for name, cls in length.PREDICTORS.items():
    with pytest.warns(DeprecationWarning, match=cls.__name__):
      assert isinstance(length.get(name), cls)
  with pytest.warns(DeprecationWarning):
    assert length.get("offset", {"max_length_offset": 3}).max_offset == 3
  with pytest.warns(DeprecationWarning):
    assert length.get("affine", {"max_length_offset": 3}) == length.Affine()
  with pytest.raises(ValueError, match="length_predictor"):
    length.get("psychic")
  with pytest.raises(ValueError, match="max_offset"):
    length.Offset(max_offset=0)


@pytest.mark.parametrize("predictor, head", [
    (length.Classifier(), "classifier"), (length.Offset(max_offset=3), "offset"),
    (length.Affine(), "affine"), (length.Fertility(), "fertility"), (length.Oracle(), None)])
def test_each_predictor_names_its_network_head(predictor, head):
  model = models.PadirModel(_network(), special_tokens=ST, length_predictor=predictor)
  assert model.module.config.length_head == head
  if head == "offset":
    assert model.module.config.max_length_offset == 3
  tokens = np.asarray(model._encoder_inputs(SRC))  # pylint: disable=protected-access
  if head == "classifier":
    assert tokens.shape == (2, 5) and np.all(tokens[:, 0] == ST.length_id)
  else:
    np.testing.assert_array_equal(tokens, SRC)


def test_offset_scores_lengths_within_the_window_and_fits_the_offsets():
  offset = length.Offset(max_offset=2).bind(ST)
  logits = jnp.log(jnp.array([[0.1, 0.2, 0.4, 0.2, 0.1]] * 2))
  sources = jnp.array([3, 4])
  scores = np.asarray(offset.predict(logits, sources))
  assert scores.shape == (2, ST.max_target_length + 1)
  assert np.argmax(scores[0]) == 3 and np.argmax(scores[1]) == 4
  assert np.isneginf(scores[0, 0]) and np.isneginf(scores[0, 6])
  loss, predicted = offset.loss(logits, jnp.asarray(GOLD), sources, losses.LossSettings())
  np.testing.assert_array_equal(predicted, sources)
  assert float(loss) > 0
  head = offset.fit({"bias": np.zeros(5, np.float32)}, np.array([3, 4, 5]), np.array([4, 5, 6]))
  assert np.argmax(head["bias"]) == 3  # Offset +1.
  lengths, _ = decoding.length_candidates(jnp.asarray(scores), decoding.RefinementConfig(), 8)
  np.testing.assert_array_equal(lengths[:, 0], sources)


def test_regression_predictors_round_and_affine_fits_a_line():
  affine = length.Affine().bind(ST)
  loss, predicted = affine.loss(jnp.array([2.4, 3.6]), jnp.array([2, 4]), jnp.array([2, 3]),
                                losses.LossSettings())
  np.testing.assert_array_equal(predicted, [2, 4])
  assert float(loss) == pytest.approx((0.4 ** 2 + 0.4 ** 2) / 2, rel=1e-5)
  head = affine.fit({"scale": 1.0, "bias": 0.0}, np.array([2, 4, 6]), np.array([3, 5, 7]))
  assert float(head["scale"]) == pytest.approx(1.0) and float(head["bias"]) == pytest.approx(1.0)
  assert length.Fertility().fit({}, np.array([1]), np.array([1])) is None
  assert length.Oracle().bind(ST).loss(None, GOLD, None, losses.LossSettings()) is None
  oracle = length.Oracle().bind(ST).outputs(None, {"decoder_target_tokens": SRC})
  np.testing.assert_array_equal(oracle, [3, 4])


@pytest.mark.slow  # Compiles a predict call (~15 s on 2 busy cores).
def test_a_new_predictor_is_one_class():
  """A predictor is a subclass; the model asks it, never its name."""

  class HalfClassifier(length.Classifier):
    """The classifier, its length logits halved (a flatter distribution)."""

    def predict(self, outputs, source_lengths):
      return super().predict(outputs, source_lengths) / 2

  model = models.PadirModel(_network(), special_tokens=ST, length_predictor=HalfClassifier())
  params = model.get_initial_variables(jax.random.PRNGKey(0), {
      "encoder_input_tokens": SRC.shape, "decoder_input_tokens": (2, 8)})
  tokens, aux = jax.jit(lambda p: model.predict_batch_with_aux(
      p, {"encoder_input_tokens": SRC, "decoder_input_tokens": SRC},
      decoder_params={"num_decode_iterations": 1, "num_canvas_sizes": 1}))(
          nn.meta.unbox(params)["params"])
  assert tokens.shape == (2, 4) and aux["lengths"].shape == (2,)


def test_a_recorded_decode_config_still_builds():
  """Configs recorded while `max_decode_length` was a decode config field bind it to None."""
  gin.clear_config()
  try:
    gin.parse_config(HEADER + """
DECODE_CONFIG = @decoding.PadirDecodeConfig
decoding.PadirDecodeConfig.num_decode_iterations = 4
decoding.PadirDecodeConfig.max_decode_length = None
test_length.built.model = %DECODE_CONFIG
""")
    config = gin.get_configurable(built)()()
  finally:
    gin.clear_config()
  assert config == decoding.PadirDecodeConfig()
  assert "max_decode_length" not in decoding.field_names(decoding.PadirDecodeConfig)
  with pytest.raises(ValueError, match="max_decode_length"):
    decoding.PadirDecodeConfig(max_decode_length=12)


def test_decode_time_scheme_changes_are_an_explicit_ablation():
  """A `PadirDecodeConfig` decodes with the trained scheme; a mapping's scheme fields ablate it
  (`decoding.ablate_scheme`), and its 'max_decode_length' sets the canvas length."""
  scheme = decoding.RefinementScheme(rejecter="linear", remasking_scheme="initial",
                                     keep_visible=True)
  model = models.PadirModel(_network(), special_tokens=ST, scheme=scheme)
  assert model.refinement_config(decoding.PadirDecodeConfig()).scheme == scheme
  ablated = model.refinement_config({"rejecter": "constant_fraction", "rejecter_fraction": 0.3,
                                     "num_decode_iterations": 2, "max_decode_length": 6})
  assert ablated.scheme == decoding.ablate_scheme(
      scheme, {"rejecter": "constant_fraction", "rejecter_fraction": 0.3})
  assert ablated.decode == decoding.PadirDecodeConfig(num_decode_iterations=2)
  assert model.scheme == scheme  # The model's own scheme is left as trained.
  with pytest.raises(ValueError, match="bogus"):
    model.check_decoder_params({"bogus": 1})
  with pytest.raises(ValueError, match="no RefinementScheme fields"):
    decoding.ablate_scheme(scheme, {"num_decode_iterations": 2})


_PARTS = ("MODEL/losses.LossSettings.", "MODEL/decoding.RefinementScheme.",
          "MODEL/models.TrainingRecipe.")


def _recorded_before_the_parts(config_text: str) -> str:
  """A run's config.gin as it was recorded before PadirModel took its parts as objects: their
  fields bound as model arguments, the length predictor by name."""
  lines = []
  for line in config_text.splitlines():
    if line.startswith(tuple(f"MODEL/models.PadirModel.{name} " for name in
                             ("loss", "scheme", "training", "length_predictor"))):
      continue
    if line.startswith("MODEL/length."):
      continue
    for part in _PARTS:
      if line.startswith(part):
        line = "" if "aligned" in line else "MODEL/models.PadirModel." + line[len(part):]
    lines.append(line)
  lines += ["MODEL/models.PadirModel.length_predictor = 'classifier'",
            "MODEL/models.PadirModel.max_length_offset = 16",
            "MODEL/models.PadirModel.length_label_sigma = 1.0"]
  return "\n".join(lines) + "\n"


def test_a_run_recorded_before_the_parts_loads_and_translates_the_same(tiny_padir_dir, tmp_path):
  old_dir = tmp_path / "old_run"
  shutil.copytree(tiny_padir_dir, old_dir)
  config_path = old_dir / checkpoints.CONFIG_FILE
  old_text = _recorded_before_the_parts(config_path.read_text())
  assert "@losses.LossSettings" not in old_text and "PadirModel.rejecter = " in old_text
  config_path.write_text(old_text)
  small = ["TranslatorOptions.batch_size = 4", "TranslatorOptions.length_buckets = (8, 16)"]
  lines = ["a dog sees the cat .", "the big dog will see a small cat in the house ."]
  new = translator.Translator.from_checkpoint(tiny_padir_dir, gin_bindings=small)
  expected = (_parts(new.model), new.decode_config, new.translate(lines))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    old = translator.Translator.from_checkpoint(str(old_dir), gin_bindings=small)
  assert (_parts(old.model), old.decode_config, old.translate(lines)) == expected
