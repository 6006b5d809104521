"""The shipped experiment gin files parse with their model and run files, and bind what they
say (network size, decoder-input scheme on both ends, task), without training anything."""
import gin
import pytest

from padir import data as data_lib
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
      assert gin.query_parameter(
          "decoding.RefinementScheme.decoder_input_scheme") == "mask_range"
  finally:
    gin.clear_config()


@pytest.mark.parametrize("model", ["ar_base", "padir_small"])
def test_t5_finetune_recipe_parses(model, tmp_path):
  """experiments/t5_finetune_wmt.gin with a `padir convert` network.gin: the task is a T5
  vocabulary-mode WMT task and the network is the checkpoint's, whatever the preset said."""
  from padir import t5_import
  from tasks import wmt
  checkpoint = t5_import.ImportedCheckpoint(
      params={}, vocab_size=32128, source="t5_1_1_base", format="huggingface",
      network=dict(emb_dim=768, num_heads=12, head_dim=64, mlp_dim=2048, num_encoder_layers=12,
                   num_decoder_layers=12, mlp_activations=("gelu", "linear"),
                   logits_via_embedding=False, relative_attention_num_buckets=32,
                   relative_attention_max_distance=128))
  network_gin = tmp_path / "network.gin"
  network_gin.write_text(t5_import.network_gin(checkpoint))
  task = f"wmt14_en_de_t5_{model.split('_')[0]}"
  gin.clear_config()
  try:
    gin_utils.parse_gin([f"models/{model}.gin", "runs/train.gin",
                         "experiments/t5_finetune_wmt.gin", str(network_gin)],
                        ["MODEL_DIR = '/tmp/unused'", f"MIXTURE_OR_TASK_NAME = '{task}'"],
                        finalize=False)
    config = gin.get_configurable(network.get_config)()
    assert (config.emb_dim, config.num_encoder_layers, config.mlp_dim) == (768, 12, 2048)
    assert gin.query_parameter("%TASK_FEATURE_LENGTHS")["targets"] == wmt.T5_MAX_TARGET_LENGTH
  finally:
    gin.clear_config()
  vocabulary = data_lib.get_mixture_or_task(task).output_features["targets"].vocabulary
  assert vocabulary.extra_ids == wmt.T5_EXTRA_IDS
