"""Quiet start-up: TensorFlow's and CUDA's start-up notices kept off a command's output.

TensorFlow (imported by seqio and the data modules: it only feeds data here) writes native
notices straight to file descriptor 2 when it loads — "Could not find cuda drivers on your
machine", "failed call to cuInit: ... UNKNOWN ERROR (303)", oneDNN and CPU-instruction notices —
where no log level silences them all. `install()` (called by `padir.cli.main` before a command's
module is imported) arranges that TensorFlow's first import runs with descriptor 2 captured; the
captured lines are written back afterwards except the known notices (`NOISE`), so a real warning
or error still shows. The same import hides the GPUs from TensorFlow, as T5X does
(`tf.config.set_visible_devices([], 'GPU')`): TensorFlow neither probes CUDA on a machine without
one nor takes GPU memory that JAX needs on a machine with one. PADIR_VERBOSE_STARTUP=1 turns both
off.
"""
import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from typing import Iterator, Optional, Pattern

NOISE = re.compile("|".join([
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"cudart_stub\.cc.*Could not find cuda drivers",
    r"failed call to cuInit",
    r"cuda_(diagnostics|executor|platform)\.cc.*(kernel driver does not appear to be running|"
    r"retrieving CUDA diagnostic information|hostname|libcuda reported version)",
    r"cpu_feature_guard\.cc",
    r"This TensorFlow binary is optimized to use available CPU instructions",
    r"To enable the following instructions: .* rebuild TensorFlow",
    r"oneDNN custom operations are on",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"computation placer already registered",
    r"TF-TRT Warning: Could not find TensorRT",
]))
VERBOSE_ENV = "PADIR_VERBOSE_STARTUP"


@contextlib.contextmanager
def filtered_stderr(noise: Pattern = NOISE) -> Iterator[None]:
  """Captures file descriptor 2 (native libraries' stderr, and Python's when sys.stderr writes
  there) for the block; then writes the captured lines that do not match `noise` to
  sys.stderr."""
  try:
    sys.stderr.flush()
    saved = os.dup(2)
  except (OSError, ValueError, AttributeError):  # No descriptor 2 to capture.
    yield
    return
  with tempfile.TemporaryFile() as capture:
    os.dup2(capture.fileno(), 2)
    try:
      yield
    finally:
      try:
        sys.stderr.flush()
      except (OSError, ValueError):
        pass
      os.dup2(saved, 2)
      os.close(saved)
      capture.seek(0)
      text = capture.read().decode("utf-8", errors="replace")
      kept = [line for line in text.splitlines(keepends=True) if not noise.search(line)]
      if kept:
        sys.stderr.write("".join(kept))
        sys.stderr.flush()


def _hide_gpus(tf) -> None:
  try:
    tf.config.set_visible_devices([], "GPU")
  except Exception:  # pylint: disable=broad-except  (already initialised, or no tf.config)
    pass


class _QuietLoader(importlib.abc.Loader):
  """TensorFlow's own loader, run under `filtered_stderr`, then GPUs hidden from it."""

  def __init__(self, loader):
    self._loader = loader

  def __getattr__(self, name):
    return getattr(self._loader, name)

  def create_module(self, spec):
    return self._loader.create_module(spec)

  def exec_module(self, module):
    try:
      with filtered_stderr():
        self._loader.exec_module(module)
        _hide_gpus(module)
    finally:  # The module keeps its real loader.
      module.__loader__ = self._loader
      if getattr(module, "__spec__", None) is not None:
        module.__spec__.loader = self._loader


class _TensorFlowFinder(importlib.abc.MetaPathFinder):
  """Finds `tensorflow` once (then leaves sys.meta_path), giving it a `_QuietLoader`."""

  def find_spec(self, fullname, path, target=None):  # pylint: disable=unused-argument
    if fullname != "tensorflow":
      return None
    uninstall()
    spec = importlib.util.find_spec(fullname)
    if spec is not None and spec.loader is not None:
      spec.loader = _QuietLoader(spec.loader)
    return spec


_FINDER: Optional[_TensorFlowFinder] = None


def install() -> None:
  """TensorFlow's first import, from now on in this process, is quiet (module docstring).
  Does nothing if TensorFlow is already imported or PADIR_VERBOSE_STARTUP is set."""
  global _FINDER
  if _FINDER is not None or "tensorflow" in sys.modules or os.environ.get(VERBOSE_ENV):
    return
  _FINDER = _TensorFlowFinder()
  sys.meta_path.insert(0, _FINDER)


def uninstall() -> None:
  global _FINDER
  if _FINDER is not None and _FINDER in sys.meta_path:
    sys.meta_path.remove(_FINDER)
  _FINDER = None
