"""`padir average`: one checkpoint from the mean of a run's last ones (fairseq's
`scripts/average_checkpoints.py`), as a model dir that `padir eval`, `infer`, `distill` and
`trainer.train.init_checkpoint` read like the run itself.

  padir average --model_dir runs/multi30k/teacher --last 3 --output runs/multi30k/teacher_avg3

Writes OUTPUT/checkpoints/<newest averaged step>/params (parameters only: nothing to resume
from), OUTPUT/config.gin (the run's) and OUTPUT/averaged.json (the source and its steps). An
OUTPUT that already holds checkpoints is refused, so nothing written is replaced.
"""
import os
import shutil
from typing import List, Optional, Sequence

from padir import checkpoints
from padir import files
from padir import translator as translator_lib

AVERAGED_FILE = "averaged.json"


def choose_steps(available: Sequence[int], last: Optional[int],
                 steps: Optional[Sequence[int]]) -> List[int]:
  """The steps to average: `steps` (each must exist) or the newest `last` of `available`."""
  if steps:
    missing = sorted(set(steps) - set(available))
    if missing:
      raise ValueError(f"--steps {missing} not saved; the run has {list(available)}")
    return sorted(set(steps))
  if last is None or last < 1:
    raise ValueError(f"--last={last} must be >= 1")
  if last > len(available):
    raise ValueError(f"--last={last}: the run has only {len(available)} checkpoints "
                     f"{list(available)}")
  return sorted(available)[-last:]


def average(model_dir: str, output: str, last: Optional[int] = None,
            steps: Optional[Sequence[int]] = None) -> List[int]:
  """Writes the averaged model dir (module docstring); returns the averaged steps."""
  source, _ = translator_lib.resolve_model_dir(model_dir)
  chosen = choose_steps(checkpoints.saved_steps(source), last, steps)
  target = checkpoints.checkpoint_dir(output)
  if os.path.isdir(target) and os.listdir(target):
    raise FileExistsError(f"{target} already holds checkpoints: give a new --output")
  params = checkpoints.average_params(source, chosen)
  os.makedirs(output, exist_ok=True)
  shutil.copyfile(os.path.join(source, checkpoints.CONFIG_FILE),
                  os.path.join(output, checkpoints.CONFIG_FILE))
  checkpoints.save_params(target, chosen[-1], params)
  files.write_json(os.path.join(output, AVERAGED_FILE), {"model_dir": source, "steps": chosen})
  return chosen
