"""The shipped experiment gin files parse with their model and run files, and bind what they
say (network size, decoder-input scheme on both ends, task), without training anything."""
import gin
import pytest

from padir import gin_utils
from padir import network
from padir import preprocessors

RUNS = {
    # name: (gin files after runs/train.gin's place, expected task, expected network fields)
    "demo_teacher": (["models/ar_tiny.gin", "runs/train.gin", "experiments/builtin_mini.gin",
                      "experiments/builtin_ar.gin"], "builtin_demo_ar",
                     {"emb_dim": 64, "num_encoder_layers": 2}),
    "demo_student": (["models/padir_tiny.gin", "runs/train.gin", "experiments/builtin_mini.gin",
                      "experiments/builtin_padir.gin"], "builtin_demo_padir",
                     {"emb_dim": 64, "num_decoder_layers": 2}),
    "multi30k_teacher": (["models/ar_tiny.gin", "runs/train.gin", "experiments/multi30k_ar.gin"],
                         "multi30k_en_de_ar", {"emb_dim": 256, "num_encoder_layers": 3}),
    "multi30k_student": (["models/padir_tiny.gin", "runs/train.gin",
                          "experiments/multi30k_padir.gin"], "multi30k_en_de_padir",
                         {"emb_dim": 256}),
    "multi30k_gpu_student": (["models/padir_small.gin", "runs/train.gin",
                              "experiments/multi30k_padir.gin", "experiments/multi30k_gpu.gin"],
                             "multi30k_en_de_padir", {"emb_dim": 512, "dtype": "bfloat16"}),
}


@pytest.mark.parametrize("run", sorted(RUNS))
def test_experiment_parses_and_binds(run):
  files, task, fields = RUNS[run]
  gin.clear_config()
  try:
    gin_utils.parse_gin(files, ["MODEL_DIR = '/tmp/unused'"], finalize=False)
    assert gin.query_parameter("%MIXTURE_OR_TASK_NAME") == task
    config = gin.get_configurable(network.get_config)()
    for name, value in fields.items():
      assert getattr(config, name) == value, (name, getattr(config, name))
    if "padir" in files[0]:
      # The data's noise starts from the model's decoder-input scheme.
      assert str(gin.query_parameter("preprocessors.padir_noise.init_scheme")) == (
          "%DECODER_INPUT_SCHEME")
      assert gin.query_parameter("%DECODER_INPUT_SCHEME") == "mask_range"
  finally:
    gin.clear_config()
