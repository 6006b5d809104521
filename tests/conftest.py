"""Shared pytest set-up: quiet logs, JAX's persistent compilation cache, the shared data path, the
`slow` marker on every test that uses a fixture that trains a model (pytest.ini; `-m "not slow"` leaves
them out)."""
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests check correctness, not speed: XLA's cheapest CPU compile (about 5x faster compiles).
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
                             " --xla_llvm_disable_expensive_passes=true").strip()

import jax  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CACHE_DIR = os.environ.get("PADIR_TEST_JAX_CACHE", str(pathlib.Path.home() / ".cache" / "padir_jax_tests"))

jax.config.update("jax_compilation_cache_dir", CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


# The fast path (`-m "not slow"`, README) leaves out the tests that train a model, run a
# pipeline or a benchmark end to end, or start TensorFlow or JAX in new processes. Most are
# marked `@pytest.mark.slow` in their files; here, every test that uses a fixture that trains
# (the tiny checkpoints below take ~20 s and ~40 s on 2 cores, test_demo.py's reduced demo
# ~3 min), and the tests named in SLOW_TESTS (tests/test_markers.py checks that both lists name
# what exists).
TRAINING_FIXTURES = frozenset({
    "tiny_ar_dir", "tiny_padir_dir",  # below
    "demo_run",  # test_demo.py
    "killed_run",  # test_reliability.py
    "trained_ar", "trained_padir",  # test_models.py
    "copy_model",  # test_ctc.py
    "reports",  # test_theory.py: every theory experiment at its small size
})
SLOW_TESTS = frozenset({  # file::test function (every parametrization)
    "test_student_training.py::test_the_offset_predictor_learns_a_length_rule_that_the_classifier_cannot",
    "test_student_training.py::test_glancing_reveals_less_as_the_model_learns",
    "test_student_training.py::test_the_length_prior_is_fitted_to_the_data",
    "test_models.py::test_three_stages_with_the_learned_rejecter_report_per_stage_metrics",
    "test_models.py::test_t5_layout_ar_and_padir_learn_and_decode",
    "test_ctc.py::test_best_alignment_equals_a_brute_force_viterbi",
})


def pytest_collection_modifyitems(config, items):  # pylint: disable=unused-argument
  for item in items:
    name = f"{item.path.name}::{getattr(item, 'originalname', item.name)}"
    if name in SLOW_TESTS or TRAINING_FIXTURES.intersection(getattr(item, "fixturenames", ())):
      item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def multi30k_dir():
  """../shared/data/multi30k, or a skip saying why."""
  path = SHARED_DATA / "multi30k"
  if not (path / "train.en.gz").exists():
    pytest.skip(f"real data not found at {path} (it lives beside the project, see its README)")
  return path


# ------------------------------------------------------------------------------------------------
# One tiny trained AR and one tiny trained PaDIR checkpoint per session, trained by the real
# trainer (`padir train`'s main, in-process) for a few steps on a small built-in corpus with the
# `test` network, and shared by every test that needs a checkpoint (translator, eval, distill).

TINY_MAX_LENGTH = 32
TINY_TRAIN_STEPS = 20
TINY_SAVE_EVERY = 10


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
  """The `tinytest_ar` / `tinytest_padir` tasks (2000 training pairs, 300 pieces), generated
  into this session's tmp dir. Returns a dict: ar_task, padir_task, data_dir (the corpus files)."""
  import seqio  # pylint: disable=g-import-not-at-top  (only for tests that need data)
  from tasks import builtin  # pylint: disable=g-import-not-at-top
  data_dir = tmp_path_factory.mktemp("tinytest") / "corpus"  # Created by the generator.
  ar_task, padir_task = builtin.register_builtin(
      "tinytest", num_train=2000, num_validation=20, num_test=20, vocab_size=300,
      max_target_length=TINY_MAX_LENGTH, data_dir=str(data_dir))
  vocabulary = seqio.get_mixture_or_task(ar_task).output_features["targets"].vocabulary
  assert vocabulary.special_tokens.num_pieces > 4  # Generates the corpus and its vocabulary.
  return {"ar_task": ar_task, "padir_task": padir_task, "data_dir": str(data_dir)}


def _train_tiny(tmp_path_factory, corpus, kind: str) -> str:
  import gin  # pylint: disable=g-import-not-at-top
  from padir.commands import train as train_command  # pylint: disable=g-import-not-at-top
  gin.clear_config()  # `padir train` finalizes (locks) the config it parses.
  root = tmp_path_factory.mktemp(f"tiny_{kind}")
  experiment = root / "experiment.gin"
  experiment.write_text("\n".join([
      "from __gin__ import dynamic_registration",
      "from padir import network",
      "from padir import optimizers",
      "from padir import preprocessors",
      "from padir import trainer",
      f"MIXTURE_OR_TASK_NAME = '{corpus[kind + '_task']}'",
      f"TASK_FEATURE_LENGTHS = {{'inputs': {TINY_MAX_LENGTH}, 'targets': {TINY_MAX_LENGTH}}}",
      "network.get_config.name = 'test'",
      "network.get_config.dropout_rate = 0.0",
      "optimizers.adamw.learning_rate = 0.003",
      "trainer.train.eval_dataset_fn = None",
      "trainer.train.log_every = 10",
  ]) + "\n")
  model_dir = str(root / "model")
  rc = train_command.main([f"--gin_file=models/{kind}_tiny.gin", "--gin_file=runs/train.gin",
                           f"--gin_file={experiment}", f"--gin.TRAIN_STEPS={TINY_TRAIN_STEPS}",
                           "--gin.BATCH_SIZE=16", f"--gin.SAVE_EVERY={TINY_SAVE_EVERY}",
                           f"--model_dir={model_dir}"])
  assert rc == 0, f"training the tiny {kind} model failed (rc {rc})"
  return model_dir


@pytest.fixture(scope="session")
def tiny_ar_dir(tmp_path_factory, tiny_corpus):
  """Model dir of a tiny AR run (checkpoints at steps 10 and 20, config.gin)."""
  return _train_tiny(tmp_path_factory, tiny_corpus, "ar")


@pytest.fixture(scope="session")
def tiny_padir_dir(tmp_path_factory, tiny_corpus):
  """Model dir of a tiny PaDIR run (checkpoints at steps 10 and 20, config.gin)."""
  return _train_tiny(tmp_path_factory, tiny_corpus, "padir")
