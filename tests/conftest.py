"""Shared pytest set-up: quiet logs, JAX's persistent compilation cache, the shared data path."""
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CACHE_DIR = os.environ.get("PADIR_TEST_JAX_CACHE", str(pathlib.Path.home() / ".cache" / "padir_jax_tests"))

jax.config.update("jax_compilation_cache_dir", CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture(scope="session")
def multi30k_dir():
  """../shared/data/multi30k, or a skip saying why."""
  path = SHARED_DATA / "multi30k"
  if not (path / "train.en.gz").exists():
    pytest.skip(f"real data not found at {path} (it lives beside the project, see its README)")
  return path
