"""Quiet commands: on a machine without a GPU no `padir` command prints TensorFlow's or CUDA's
start-up notices, and real warnings still show (padir/quiet.py)."""
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow  # Each test starts TensorFlow in a fresh process.

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTICES = ("cuInit", "cuda drivers", "absl::InitializeLog", "cpu_feature_guard", "oneDNN",
           "rebuild TensorFlow")


def _env() -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  for name in ("TF_CPP_MIN_LOG_LEVEL", "PADIR_VERBOSE_STARTUP"):  # As a user's shell has it.
    env.pop(name, None)
  return env


def _run(args, env=None) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, *args], cwd=REPO, env=env or _env(), capture_output=True,
                        text=True, timeout=300)


def test_a_command_that_imports_tensorflow_prints_no_start_up_notices():
  proc = _run(["-m", "padir.cli", "vocab", "--help"])  # Imports seqio, hence TensorFlow.
  assert proc.returncode == 0, proc.stderr
  assert "usage:" in proc.stdout
  assert not [n for n in NOTICES if n in proc.stderr], proc.stderr


def test_tensorflow_starts_quietly_without_the_gpu_and_real_messages_still_show():
  code = textwrap.dedent("""
      import os, sys, warnings
      from padir import quiet
      quiet.install()
      import tensorflow as tf
      print("GPUS", tf.config.get_visible_devices("GPU"))
      print("SUM", int(tf.reduce_sum(tf.constant([1, 2]))))  # Initialises its devices.
      assert type(tf.__spec__.loader).__name__ != "_QuietLoader"
      assert quiet._FINDER is None and all(
          type(f).__name__ != "_TensorFlowFinder" for f in sys.meta_path)
      with quiet.filtered_stderr():
        os.write(2, b"E0000 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)\\n")
        os.write(2, b"a real native error\\n")
        warnings.warn("a real python warning")
      """)
  proc = _run(["-c", code])
  assert proc.returncode == 0, proc.stderr
  assert "GPUS []" in proc.stdout and "SUM 3" in proc.stdout
  assert "a real native error" in proc.stderr and "a real python warning" in proc.stderr
  assert not [n for n in NOTICES if n in proc.stderr], proc.stderr
