"""Where training metrics go: TensorBoard event files, `metrics.jsonl`, and a progress line.

Layout in `model_dir` (T5X's):
  train/events.out.tfevents.*        scalars of the training split
  validation/events.out.tfevents.*   scalars of the validation split
  metrics.jsonl                      one JSON object a line: {"step", "split", <name>: <value>}

Only process 0 writes. On resume, entries past the restored step (written before a crash) are
dropped from `metrics.jsonl` and purged from the event files, so a resumed run's record reads as
if it had never stopped.
"""
import datetime
import json
import logging
import math
import os
import sys
import time
from typing import Callable, Mapping, Optional

import jax
import numpy as np
import tqdm

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


def _truncate_jsonl(path: str, last_step: int) -> None:
  """Keeps only the lines of `path` with step <= last_step (atomic rewrite)."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = f.readlines()
  kept = []
  for line in lines:
    try:
      if json.loads(line)["step"] <= last_step:
        kept.append(line)
    except (ValueError, KeyError):  # A torn last line from a killed run.
      continue
  if len(kept) != len(lines):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(kept)
    os.replace(tmp, path)


class MetricsWriter:
  """Writes scalar metrics of the `train` and `validation` splits (process 0 only).

  Args:
    model_dir: the run directory.
    start_step: the step the run starts (or resumes) from; later records are dropped.
  """

  def __init__(self, model_dir: str, start_step: int = 0):
    self._enabled = jax.process_index() == 0
    self._writers = {}
    self._model_dir = model_dir
    self._start_step = start_step
    if self._enabled:
      os.makedirs(model_dir, exist_ok=True)
      _truncate_jsonl(os.path.join(model_dir, METRICS_FILE), start_step)
      self._jsonl = open(os.path.join(model_dir, METRICS_FILE), "a")

  def _writer(self, split: str):
    if split not in self._writers:
      # Imported when a run first writes: the trainer's modules import without tensorboardX
      # (benchmarks/device_check.py's machine has none).
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._writers[split] = SummaryWriter(
          logdir=os.path.join(self._model_dir, split),
          purge_step=self._start_step + 1 if self._start_step else None,
          flush_secs=30)
    return self._writers[split]

  def write(self, step: int, metrics: Mapping[str, float], split: str = "train") -> None:
    """Writes scalars for `step` (python or numpy scalars; non-finite values kept as strings
    in JSON, since JSON has no NaN)."""
    if not self._enabled:
      return
    writer = self._writer(split)
    record = {"step": int(step), "split": split}
    for name, value in sorted(metrics.items()):
      value = float(np.asarray(value))
      writer.add_scalar(name, value, global_step=int(step))
      record[name] = value if math.isfinite(value) else str(value)
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()

  def close(self) -> None:
    if not self._enabled:
      return
    for writer in self._writers.values():
      writer.close()
    self._writers = {}
    self._jsonl.close()


class Progress:
  """Progress of a run: a tqdm bar on a terminal, else one log line per `update` call.

  Shows step / total, loss, tokens/s and the ETA: the sooner of the steps left at the rate so
  far and `seconds_left()` (a run's wall-time budget, if it has one).
  """

  def __init__(self, start_step: int, total_steps: int, bar: Optional[bool] = None,
               seconds_left: Optional[Callable[[], float]] = None):
    self._enabled = jax.process_index() == 0
    self._total = total_steps
    self._seconds_left = seconds_left
    self._last_step = start_step
    self._start_step = start_step
    self._start_time = time.time()
    use_bar = sys.stderr.isatty() if bar is None else bar
    self._bar = (tqdm.tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)
                 if self._enabled and use_bar else None)

  def update(self, step: int, loss: float, tokens_per_second: float) -> None:
    if not self._enabled:
      return
    if self._bar is not None:
      self._bar.update(step - self._last_step)
      extra = {} if self._seconds_left is None else {"eta": self.eta(step)}
      self._bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens_per_second:,.0f}", **extra,
                            refresh=False)
    else:
      eta = self.eta(step)
      logger.info("step %d/%d  loss %.4f  tokens/s %.0f  eta %s", step, self._total, loss,
                   tokens_per_second, "?" if eta is None else eta)
    self._last_step = step

  def eta(self, step: int) -> Optional[datetime.timedelta]:
    """Time left as a `timedelta` (None before the first step's rate is known)."""
    rate = (step - self._start_step) / max(time.time() - self._start_time, 1e-9)
    left = [(self._total - step) / rate] if rate > 0 else []
    if self._seconds_left is not None:
      left.append(max(self._seconds_left(), 0.0))
    return datetime.timedelta(seconds=round(min(left))) if left else None

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()


class _StderrHandler(logging.StreamHandler):
  """Writes to the `sys.stderr` of the moment, not the one it was made with (a caller that
  swaps stderr, as pytest's capture does, may close the old one)."""

  def emit(self, record: logging.LogRecord) -> None:
    self.stream = sys.stderr
    super().emit(record)


def log_to_stderr() -> None:
  """INFO lines of the `padir` loggers on stderr (absl owns the root logger, at WARNING)."""
  handler = _StderrHandler()
  handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s] %(message)s"))
  package_logger = logging.getLogger("padir")
  if not package_logger.handlers:
    package_logger.addHandler(handler)
  package_logger.setLevel(logging.INFO)
  package_logger.propagate = False
