"""`import padir` and the network, model, decoding and corpus modules never import seqio or
TensorFlow (accelerator images may lack them; their import costs seconds)."""
import subprocess
import sys

LIGHT_MODULES = ["padir", "padir.cli", "padir.special_tokens", "padir.layers", "padir.network",
                 "padir.losses", "padir.decoding", "padir.models", "padir.partitioning",
                 "padir.corpus"]


def test_model_side_never_imports_seqio_or_tensorflow():
  code = ("import sys\n" + "".join(f"import {m}\n" for m in LIGHT_MODULES) +
          "print(sorted(m for m in ('seqio', 'tensorflow') if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True, timeout=300).stdout
  assert out.strip().splitlines()[-1] == "[]"


def test_padir_help_lists_every_command():
  out = subprocess.run([sys.executable, "-m", "padir.cli", "--help"], capture_output=True,
                       text=True, check=True, timeout=60).stdout
  for command in ("train", "eval", "infer", "distill", "vocab", "demo", "theory"):
    assert f"  {command} " in out
