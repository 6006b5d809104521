"""The gin names of `padir.decoding` and `padir.models`, packages of several modules since they
were split from one file each (`padir/decoding.py`, `padir/models.py`): a run's config.gin
recorded before the split builds the same models and decode config, which decode the same; gin
records today's runs under the same names; `--gin.NAME=VALUE` bindings by those names apply.
"""
import gin
import jax
import numpy as np
import pytest

from padir import decoding
from padir import gin_utils
from padir import length
from padir import losses
from padir import models
from padir import network
from padir.special_tokens import SpecialTokens

ST = SpecialTokens.create(num_pieces=24, max_target_length=8)
BATCH = {"encoder_input_tokens": np.array([[5, 6, 7, 1, 0, 0], [8, 9, 1, 0, 0, 0]], np.int32),
         "decoder_input_tokens": np.zeros((2, 8), np.int32)}


def stub_vocabulary():
  return type("StubVocabulary", (), {"special_tokens": ST})()


def tiny_network():
  return network.Transformer(network.get_config(
      "test", num_encoder_layers=1, num_decoder_layers=1, emb_dim=32, num_heads=2, head_dim=16,
      mlp_dim=64, dropout_rate=0.0))


def run(model=gin.REQUIRED, decode_config=gin.REQUIRED):
  """Stands for `trainer.train`: takes the model and builds its decode defaults, which gin then
  records, as a training run's config.gin does."""
  return model, decode_config()


def run_input(model_file: str) -> str:
  """A run's gin input: a model file of gin/models/, the stubs, `run` for the trainer."""
  return "\n".join([
      "from __gin__ import dynamic_registration",
      "from padir import models",
      "import test_gin_names",
      f"include '{model_file}'",
      "VOCABULARY = @test_gin_names.stub_vocabulary()",
      "models.PadirModel.module = @test_gin_names.tiny_network()" if "padir" in model_file
      else "models.ARModel.module = @test_gin_names.tiny_network()",
      "test_gin_names.run.model = %MODEL",
      "test_gin_names.run.decode_config = %DECODE_CONFIG", ""])


# The config.gin of `run_input('models/padir_tiny.gin')` and of `'models/ar_tiny.gin'` (gin's
# operative config) made with the code of the commit before the split: what runs recorded then.
RECORDED_BEFORE_THE_SPLIT = {
    "padir": """\
from __gin__ import dynamic_registration
from padir import decoding
from padir import length
from padir import losses
from padir import models
from padir import network
from padir import optimizers
from padir import preprocessors
import test_gin_names

# Macros:
# ==============================================================================
DECODE_CONFIG = @decoding.PadirDecodeConfig
DECODER_INPUT_SCHEME = 'random'
MODEL = @models.PadirModel()
OPTIMIZER = @optimizers.adamw()
VOCABULARY = @test_gin_names.stub_vocabulary()

# Parameters for OPTIMIZER/optimizers.adamw:
# ==============================================================================
OPTIMIZER/optimizers.adamw.b1 = 0.9
OPTIMIZER/optimizers.adamw.b2 = 0.98
OPTIMIZER/optimizers.adamw.clip_gradient_norm = 1.0
OPTIMIZER/optimizers.adamw.epsilon = 1e-09
OPTIMIZER/optimizers.adamw.learning_rate = @optimizers.rsqrt_schedule()
OPTIMIZER/optimizers.adamw.learning_rate_multipliers = None
OPTIMIZER/optimizers.adamw.weight_decay = 0.0

# Parameters for MODEL/length.Classifier:
# ==============================================================================
MODEL/length.Classifier.special_tokens = None

# Parameters for MODEL/losses.LossSettings:
# ==============================================================================
MODEL/losses.LossSettings.label_smoothing = 0.1
MODEL/losses.LossSettings.length_loss_weight = 1.0
MODEL/losses.LossSettings.loss_normalizing_factor = 'NUM_REAL_TARGET_TOKENS'
MODEL/losses.LossSettings.rejecter_loss_weight = 1.0
MODEL/losses.LossSettings.z_loss = 0.0001

# Parameters for decoding.PadirDecodeConfig:
# ==============================================================================
decoding.PadirDecodeConfig.alpha = 0.0
decoding.PadirDecodeConfig.early_exit = True
decoding.PadirDecodeConfig.exit_confidence = 0.0
decoding.PadirDecodeConfig.keep_candidates_after_first_pass = None
decoding.PadirDecodeConfig.length_beam = 1
decoding.PadirDecodeConfig.masked_logits_only = False
decoding.PadirDecodeConfig.max_decode_length = None
decoding.PadirDecodeConfig.num_canvas_sizes = 4
decoding.PadirDecodeConfig.num_decode_iterations = 4
decoding.PadirDecodeConfig.num_parallel_samples = 1
decoding.PadirDecodeConfig.return_all_candidates = False
decoding.PadirDecodeConfig.return_history = False
decoding.PadirDecodeConfig.scoring = 'mean'
decoding.PadirDecodeConfig.temperature = 0.0
decoding.PadirDecodeConfig.top_k = 0
decoding.PadirDecodeConfig.top_k_lengths = 1
decoding.PadirDecodeConfig.top_p = 1.0

# Parameters for MODEL/models.PadirModel:
# ==============================================================================
MODEL/models.PadirModel.length_predictor = @length.Classifier()
MODEL/models.PadirModel.loss = @losses.LossSettings()
MODEL/models.PadirModel.module = @test_gin_names.tiny_network()
MODEL/models.PadirModel.optimizer_def = %OPTIMIZER
MODEL/models.PadirModel.scheme = @decoding.RefinementScheme()
MODEL/models.PadirModel.special_tokens = None
MODEL/models.PadirModel.training = @models.TrainingRecipe()
MODEL/models.PadirModel.vocabulary = %VOCABULARY

# Parameters for MODEL/decoding.RefinementScheme:
# ==============================================================================
MODEL/decoding.RefinementScheme.aligned = False
MODEL/decoding.RefinementScheme.decoder_input_scheme = %DECODER_INPUT_SCHEME
MODEL/decoding.RefinementScheme.keep_visible = False
MODEL/decoding.RefinementScheme.rejecter = 'passthrough'
MODEL/decoding.RefinementScheme.rejecter_fraction = 0.1
MODEL/decoding.RefinementScheme.rejecter_k = 1
MODEL/decoding.RefinementScheme.rejecter_threshold = 0.0
MODEL/decoding.RefinementScheme.remasking_scheme = 'previous'
MODEL/decoding.RefinementScheme.stutter_remasking = False

# Parameters for OPTIMIZER/optimizers.rsqrt_schedule:
# ==============================================================================
OPTIMIZER/optimizers.rsqrt_schedule.linear_warmup = True
OPTIMIZER/optimizers.rsqrt_schedule.scale = 0.0141
OPTIMIZER/optimizers.rsqrt_schedule.warmup_steps = 200

# Parameters for test_gin_names.run:
# ==============================================================================
test_gin_names.run.decode_config = %DECODE_CONFIG
test_gin_names.run.model = %MODEL

# Parameters for VOCABULARY/test_gin_names.stub_vocabulary:
# ==============================================================================
# None.

# Parameters for MODEL/test_gin_names.tiny_network:
# ==============================================================================
# None.

# Parameters for MODEL/models.TrainingRecipe:
# ==============================================================================
MODEL/models.TrainingRecipe.glancing_fraction = 1.0
MODEL/models.TrainingRecipe.glancing_ratio = 0.0
MODEL/models.TrainingRecipe.num_train_stages = 1
""",
    "ar": """\
from __gin__ import dynamic_registration
from padir import decoding
from padir import models
from padir import network
from padir import optimizers
import test_gin_names

# Macros:
# ==============================================================================
DECODE_CONFIG = @decoding.ARDecodeConfig
MODEL = @models.ARModel()
OPTIMIZER = @optimizers.adamw()
VOCABULARY = @test_gin_names.stub_vocabulary()

# Parameters for OPTIMIZER/optimizers.adamw:
# ==============================================================================
OPTIMIZER/optimizers.adamw.b1 = 0.9
OPTIMIZER/optimizers.adamw.b2 = 0.98
OPTIMIZER/optimizers.adamw.clip_gradient_norm = 1.0
OPTIMIZER/optimizers.adamw.epsilon = 1e-09
OPTIMIZER/optimizers.adamw.learning_rate = @optimizers.rsqrt_schedule()
OPTIMIZER/optimizers.adamw.learning_rate_multipliers = None
OPTIMIZER/optimizers.adamw.weight_decay = 0.0

# Parameters for decoding.ARDecodeConfig:
# ==============================================================================
decoding.ARDecodeConfig.alpha = 0.6
decoding.ARDecodeConfig.beam_size = 4
decoding.ARDecodeConfig.decode_method = 'beam'
decoding.ARDecodeConfig.max_decode_length = None
decoding.ARDecodeConfig.num_decodes = 1
decoding.ARDecodeConfig.temperature = 1.0
decoding.ARDecodeConfig.top_k = 0
decoding.ARDecodeConfig.top_p = 1.0

# Parameters for MODEL/models.ARModel:
# ==============================================================================
MODEL/models.ARModel.decode_fn = None
MODEL/models.ARModel.label_smoothing = 0.1
MODEL/models.ARModel.loss_normalizing_factor = 'NUM_REAL_TARGET_TOKENS'
MODEL/models.ARModel.module = @test_gin_names.tiny_network()
MODEL/models.ARModel.optimizer_def = %OPTIMIZER
MODEL/models.ARModel.special_tokens = None
MODEL/models.ARModel.vocabulary = %VOCABULARY
MODEL/models.ARModel.z_loss = 0.0001

# Parameters for OPTIMIZER/optimizers.rsqrt_schedule:
# ==============================================================================
OPTIMIZER/optimizers.rsqrt_schedule.linear_warmup = True
OPTIMIZER/optimizers.rsqrt_schedule.scale = 0.0141
OPTIMIZER/optimizers.rsqrt_schedule.warmup_steps = 200

# Parameters for test_gin_names.run:
# ==============================================================================
test_gin_names.run.decode_config = %DECODE_CONFIG
test_gin_names.run.model = %MODEL

# Parameters for VOCABULARY/test_gin_names.stub_vocabulary:
# ==============================================================================
# None.

# Parameters for MODEL/test_gin_names.tiny_network:
# ==============================================================================
# None.
""",
}


# Fields added since the recording: gin writes their defaults too; every other line must match.
ADDED_SINCE_THE_RECORDING = ("decoding.PadirDecodeConfig.blank_penalty = ",
                             "decoding.PadirDecodeConfig.blank_penalty_decay = ",
                             "decoding.PadirDecodeConfig.length_score_weight = ")


def _as_recorded(text: str) -> str:
  return "".join(line for line in text.splitlines(keepends=True)
                 if not line.startswith(ADDED_SINCE_THE_RECORDING))


def _scheme_bound_once(recorded: str) -> str:
  """The recording as today's files write it: the decoder-input scheme was a macro shared with
  the data noise (DECODER_INPUT_SCHEME), it is now the model's one binding."""
  return recorded.replace("DECODER_INPUT_SCHEME = 'random'\n", "").replace(
      "%DECODER_INPUT_SCHEME", "'random'")


def _parse(text: str, tmp_path, bindings=()):
  path = tmp_path / "config.gin"
  path.write_text(text)
  gin.clear_config()
  gin_utils.parse_gin([str(path)], list(bindings), finalize=False)
  model, decode_config = gin.get_configurable(run)()
  return model, decode_config, gin.operative_config_str()


@pytest.fixture(autouse=True)
def _clear_gin():
  yield
  gin.clear_config()


@pytest.mark.parametrize("kind", ["padir", "ar"])
def test_a_config_recorded_before_the_split_loads_and_is_recorded_the_same(kind, tmp_path):
  model, decode_config, recorded = _parse(RECORDED_BEFORE_THE_SPLIT[kind], tmp_path)
  assert _as_recorded(recorded) == RECORDED_BEFORE_THE_SPLIT[kind]
  assert type(model) is (models.PadirModel if kind == "padir" else models.ARModel)
  assert decode_config == model.decode_config_class()


@pytest.mark.parametrize("kind", ["padir", "ar"])
def test_todays_gin_files_record_the_names_runs_recorded_before_the_split(kind, tmp_path):
  _, _, recorded = _parse(run_input(f"models/{kind}_tiny.gin"), tmp_path)
  assert _as_recorded(recorded) == _scheme_bound_once(RECORDED_BEFORE_THE_SPLIT[kind])
  assert "from padir import decoding\n" in recorded and "from padir import models\n" in recorded


@pytest.mark.slow
def test_the_recorded_padir_model_is_todays_and_decodes_the_same(tmp_path):
  model, decode_config, _ = _parse(RECORDED_BEFORE_THE_SPLIT["padir"], tmp_path)
  expected = models.PadirModel(
      tiny_network(), vocabulary=stub_vocabulary(),
      loss=losses.LossSettings(label_smoothing=0.1, z_loss=1e-4),
      length_predictor=length.Classifier(), scheme=decoding.RefinementScheme(),
      training=models.TrainingRecipe())
  assert (model.loss_settings, model.length_predictor, model.scheme, model.training,
          model.module.config, model.decode_fn) == (
              expected.loss_settings, expected.length_predictor, expected.scheme,
              expected.training, expected.module.config, expected.decode_fn)
  assert model.decode_fn is decoding.padir_decode
  shapes = {k: v.shape for k, v in BATCH.items()}
  params = model.get_initial_variables(jax.random.PRNGKey(0), shapes)["params"]
  rng = jax.random.PRNGKey(1)
  tokens, aux = model.predict_batch_with_aux(params, BATCH, rng, decode_config)
  expected_tokens, expected_aux = expected.predict_batch_with_aux(params, BATCH, rng,
                                                                  decoding.PadirDecodeConfig())
  np.testing.assert_array_equal(tokens, expected_tokens)
  np.testing.assert_array_equal(aux["lengths"], expected_aux["lengths"])


@pytest.mark.slow
def test_the_recorded_ar_model_decodes_like_todays(tmp_path):
  model, decode_config, _ = _parse(RECORDED_BEFORE_THE_SPLIT["ar"], tmp_path)
  expected = models.ARModel(tiny_network(), vocabulary=stub_vocabulary())
  shapes = {k: v.shape for k, v in BATCH.items()}
  params = model.get_initial_variables(jax.random.PRNGKey(0), shapes)["params"]
  tokens, _ = model.predict_batch_with_aux(params, BATCH, None, decode_config)
  expected_tokens, _ = expected.predict_batch_with_aux(params, BATCH, None,
                                                       decoding.ARDecodeConfig())
  np.testing.assert_array_equal(tokens, expected_tokens)


def test_gin_bindings_by_the_recorded_names_apply(tmp_path):
  """As `--gin.NAME=VALUE` flags, sweeps and benchmarks give them: each binding parsed alone."""
  model, decode_config, _ = _parse(run_input("models/padir_tiny.gin"), tmp_path, [
      "models.PadirModel.optimizer_def = None",
      "models.TrainingRecipe.num_train_stages = 2",
      "decoding.RefinementScheme.rejecter = 'linear'",
      "decoding.PadirDecodeConfig.top_k_lengths = 3",
      "PadirDecodeConfig.num_decode_iterations = 8",
  ])
  assert model.optimizer_def is None
  assert model.training.num_train_stages == 2 and model.scheme.rejecter == "linear"
  assert decode_config == decoding.PadirDecodeConfig(top_k_lengths=3, num_decode_iterations=8)
  model, decode_config, _ = _parse(run_input("models/ar_tiny.gin"), tmp_path, [
      "models.ARModel.z_loss = 0.5", "decoding.ARDecodeConfig.decode_method = 'greedy'"])
  assert model.z_loss == 0.5
  assert decode_config == decoding.ARDecodeConfig(decode_method="greedy")
