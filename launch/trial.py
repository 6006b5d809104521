"""Runs one training run of a sweep and its trials, in this process, through the `padir` entry
points: `padir train` (`padir.commands.train.main`, which resumes), then for each trial
`padir eval` (`padir.commands.eval.main`) and a decode-speed timing. Each step's output goes to
a log file.

`launch.local` calls `run_group` in worker processes (one process imports JAX/TensorFlow once
and runs several steps; the gin config, global to a process, is cleared before each step).

Speed: `Translator.translate` over the first `speed_sentences` sources of the evaluation split
(batched as `padir eval` batches them: `gin/runs/eval.gin`), once to compile, then `repeats`
times (`padir.timing.wall_seconds`); `ms_per_sentence` is the median time / sentences, end to
end (tokenization, device decoding, detokenization; compilation excluded). Timings taken while
other trials run in parallel (`--parallel` > 1) share the machine.
"""
import contextlib
import dataclasses
import os
import statistics
import sys
import time
import traceback
from typing import Any, Dict, List, Mapping, Sequence

from padir import files

RUN_FILE = "run.json"
TRIAL_FILE = "trial.json"
TRAIN_LOG = "train.log"
EVAL_LOG = "eval.log"


@dataclasses.dataclass(frozen=True)
class EvalPlan:
  """One trial: `padir eval` arguments and where its record goes."""
  name: str
  output_dir: str
  eval_args: List[str]
  gin_bindings: List[str]  # "NAME = VALUE", for the timing's translator
  record: Dict[str, Any]  # settings and commands, copied into trial.json


@dataclasses.dataclass(frozen=True)
class RunPlan:
  """One training run and the trials that evaluate it."""
  name: str
  model_dir: str
  train_args: List[str]
  evals: List[EvalPlan]
  eval_task: str
  eval_split: str
  task_modules: List[str]
  speed_sentences: int = 128
  speed_repeats: int = 3


@contextlib.contextmanager
def output_to(path: str):
  """Sends this process's stdout and stderr (file descriptors 1 and 2) to `path` (appended)."""
  sys.stdout.flush()
  sys.stderr.flush()
  saved = [os.dup(1), os.dup(2)]
  os.makedirs(os.path.dirname(path), exist_ok=True)
  try:
    with open(path, "a") as log:
      os.dup2(log.fileno(), 1)
      os.dup2(log.fileno(), 2)
      try:
        yield
      finally:
        sys.stdout.flush()
        sys.stderr.flush()
  finally:
    os.dup2(saved[0], 1)
    os.dup2(saved[1], 2)
    for fd in saved:
      os.close(fd)


def measure_speed(model_dir: str, step: int, bindings: Sequence[str], plan: RunPlan
                  ) -> Dict[str, Any]:
  """Median decoding time of the first sources of the evaluation split (module docstring)."""
  import jax  # pylint: disable=g-import-not-at-top  (heavy: only in workers)
  from padir import data  # pylint: disable=g-import-not-at-top
  from padir import evaluation  # pylint: disable=g-import-not-at-top
  from padir import translator as translator_lib  # pylint: disable=g-import-not-at-top
  translator = translator_lib.Translator.from_checkpoint(
      model_dir, step, bindings, [evaluation.EVAL_GIN_FILE])
  sources = [e["inputs_text"] for e in data.iterate_examples(
      plan.eval_task, plan.eval_split, module=plan.task_modules,
      max_examples=plan.speed_sentences)]
  from padir import timing  # pylint: disable=g-import-not-at-top
  median = statistics.median(timing.wall_seconds(lambda: translator.translate(sources),
                                                 plan.speed_repeats))
  device = jax.devices()[0]
  return {"devices": f"{jax.device_count()} x {device.device_kind}",
          "ms_per_sentence": 1000.0 * median / len(sources),
          "sentences_per_second": len(sources) / median, "sentences": len(sources),
          "batch_size": translator.options.batch_size, "repeats": plan.speed_repeats}


def _train(plan: RunPlan) -> None:
  import gin  # pylint: disable=g-import-not-at-top
  from padir import evaluation  # pylint: disable=g-import-not-at-top
  from padir.commands import train as train_command  # pylint: disable=g-import-not-at-top
  final = evaluation.final_train_step(plan.model_dir)
  if final is not None and final in evaluation.available_steps(plan.model_dir):
    return
  files.write_json(os.path.join(os.path.dirname(plan.model_dir), RUN_FILE),
             {"train_args": plan.train_args})
  gin.clear_config()
  rc = train_command.main(plan.train_args)
  if rc:
    raise RuntimeError(f"padir train exited with {rc}")


def _evaluate(plan: RunPlan, trial: EvalPlan) -> Dict[str, Any]:
  import gin  # pylint: disable=g-import-not-at-top
  from padir import evaluation  # pylint: disable=g-import-not-at-top
  from padir.commands import eval as eval_command  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  start = time.time()
  rc = eval_command.main(trial.eval_args)
  if rc:
    raise RuntimeError(f"padir eval exited with {rc}")
  results = files.read_json(os.path.join(trial.output_dir, evaluation.RESULTS_JSON))
  final = results["evaluations"][-1]
  eval_seconds = time.time() - start
  speed = measure_speed(plan.model_dir, final["step"], trial.gin_bindings, plan)
  keep = ("step", "num_examples", "bleu", "chrf", "length_ratio", "stutter_rate",
          "mean_iterations", "bleu_per_iteration", "bleu_signature", "chrf_signature")
  return {**trial.record, **{k: final.get(k) for k in keep}, "speed": speed,
          "eval_seconds": eval_seconds}


def _logged(log: str, fn, *args):
  """`fn(*args)` with this process's output sent to `log`; a traceback goes there too."""
  with output_to(log):
    try:
      return fn(*args)
    except BaseException:
      traceback.print_exc()
      raise


def failure(trial: EvalPlan, error: str) -> Dict[str, Any]:
  """The record of a trial that did not finish."""
  return {**trial.record, "status": "failed", "error": error}


def _say(text: str) -> None:
  """A progress line on the console (this process's stdout, when no step is running)."""
  print(text, flush=True)


def run_group(plan: RunPlan) -> List[Dict[str, Any]]:
  """Trains `plan` (unless finished) and runs its trials; returns one record per trial (a
  trial.json's content, or `failure`'s)."""
  train_log = os.path.join(os.path.dirname(plan.model_dir), TRAIN_LOG)
  start = time.time()
  try:
    _logged(train_log, _train, plan)
  except Exception:  # pylint: disable=broad-except  (reported per trial; the sweep goes on)
    _say(f"{plan.name}: training failed, see {train_log}")
    return [failure(t, f"training failed, see {train_log}") for t in plan.evals]
  train_seconds = time.time() - start
  _say(f"{plan.name}: trained ({train_seconds:.0f} s)")
  records = []
  for trial in plan.evals:
    log = os.path.join(trial.output_dir, EVAL_LOG)
    try:
      record = dict(_logged(log, _evaluate, plan, trial), status="done",
                    train_seconds=train_seconds)
    except Exception:  # pylint: disable=broad-except
      _say(f"{trial.name}: evaluation failed, see {log}")
      records.append(failure(trial, f"evaluation failed, see {log}"))
      continue
    files.write_json(os.path.join(trial.output_dir, TRIAL_FILE), record)
    _say(f"{trial.name}: BLEU {record['bleu']:.2f}, chrF {record['chrf']:.2f}, "
         f"{record['speed']['ms_per_sentence']:.2f} ms/sentence")
    records.append(record)
  return records


def is_done(trial: EvalPlan) -> bool:
  """True when the trial's record exists with the same commands; another record is an error."""
  path = os.path.join(trial.output_dir, TRIAL_FILE)
  if not os.path.exists(path):
    return False
  recorded = files.read_json(path).get("commands")
  if recorded != trial.record["commands"]:
    raise ValueError(f"{path} was written by other commands ({recorded}); use another --root "
                     "or delete it")
  return True


def load_record(trial: EvalPlan) -> Mapping[str, Any]:
  return files.read_json(os.path.join(trial.output_dir, TRIAL_FILE))
