"""`padir eval`: a task split through the translate path, scored with sacreBLEU and friends.

  padir eval --checkpoint_dir runs/padir_tiny --task builtin_padir --split test --output eval/ \
    [--checkpoint_step N|latest|all] [--watch] [--gin.PadirDecodeConfig.num_decode_iterations=8]

Metrics, on detokenized text against the task's one reference per source:
  bleu                sacreBLEU corpus BLEU, 13a tokenizer, cased (`bleu_signature` is sacreBLEU's
                      signature of exactly these settings).
  chrf                sacreBLEU corpus chrF (character 6-grams, beta 2; `chrf_signature`).
  length_ratio        hypothesis / reference length in BLEU's 13a tokens (sacreBLEU's `ratio`,
                      the one its brevity penalty uses).
  stutter_rate        adjacent repeats: over all hypotheses split on whitespace, the number of
                      tokens equal to the token just before them, divided by the number of
                      adjacent token pairs (sum of len - 1; 0 when there is none).
                      "the the cat" -> 1/2; "a a a" -> 2/2.
  mean_iterations     PaDIR: decoder passes per sentence, averaged (empty sources excluded); null
                      for AR.
  bleu_per_iteration  PaDIR: [BLEU after iteration 1, ..., after iteration k], k =
                      num_decode_iterations, from the same single decode: the chosen candidate's
                      tokens after each iteration, cleaned up as the final output is (cut at EOS,
                      stutter removed when `stutter_remasking`). A sentence that converged early
                      keeps its final tokens, so the last entry equals `bleu`.

Output dir: `step_N.hypotheses.txt` and `step_N.json` per evaluated checkpoint, over all of
them `results.json` (settings + one entry per step) and `results.md` (a table), and the run
record (`config.gin`, `run_info.json`: seed, package versions, command line; see
`padir.checkpoints`). A step whose `step_N.json` exists is not evaluated again, so an interrupted
run re-run with the same command ends with the same files (but for the time in run_info.json);
an output dir holding results of other settings is refused.

`--watch` is the checkpoint-evaluation job beside training: it evaluates every new checkpoint as
training writes it, logs the metrics to TensorBoard in `MODEL_DIR/eval/TASK.SPLIT/`, and stops once
it has evaluated the final step of the run (`num_train_steps` of the run's saved config), or
after `--watch_timeout` seconds without a new checkpoint (an error: training seems dead). It may
start before training: it waits (up to `--watch_timeout`) for the model dir to appear.
"""
import dataclasses
import json
import logging
import os
import re
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import jax.numpy as jnp
import numpy as np
import sacrebleu

from padir import checkpoints
from padir import decoding
from padir import files
from padir import models
from padir import tables
from padir import translator as translator_lib

logger = logging.getLogger(__name__)

EVAL_GIN_FILE = "runs/eval.gin"
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
TENSORBOARD_SUBDIR = "eval"


# ----------------------------------------------------------------------------------------------
# Metrics on fixed hypotheses.


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> sacrebleu.metrics.bleu.BLEUScore:
  """sacreBLEU corpus BLEU (13a, cased, one reference per hypothesis)."""
  return sacrebleu.BLEU().corpus_score(list(hypotheses), [list(references)])


def stutter_rate(hypotheses: Sequence[str]) -> float:
  """Adjacent repeated whitespace tokens / adjacent token pairs (see the module docstring)."""
  repeats = pairs = 0
  for hypothesis in hypotheses:
    tokens = hypothesis.split()
    repeats += sum(a == b for a, b in zip(tokens, tokens[1:]))
    pairs += max(len(tokens) - 1, 0)
  return repeats / pairs if pairs else 0.0


def score_hypotheses(hypotheses: Sequence[str], references: Sequence[str]) -> Dict[str, Any]:
  """bleu, bleu_signature, chrf, chrf_signature, length_ratio, stutter_rate of fixed texts."""
  if len(hypotheses) != len(references):
    raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
  bleu_metric, chrf_metric = sacrebleu.BLEU(), sacrebleu.CHRF()
  bleu_score = bleu_metric.corpus_score(list(hypotheses), [list(references)])
  chrf_score = chrf_metric.corpus_score(list(hypotheses), [list(references)])
  return {
      "bleu": bleu_score.score,
      "bleu_signature": str(bleu_metric.get_signature()),
      "chrf": chrf_score.score,
      "chrf_signature": str(chrf_metric.get_signature()),
      "length_ratio": bleu_score.ratio,
      "stutter_rate": stutter_rate(hypotheses),
  }


def pad_histories(histories: Sequence[np.ndarray], pad_id: int) -> np.ndarray:
  """Per-line histories [k, T_i] -> [N, k, T], T = max T_i, each padded on the right with PAD.

  Batches of different `TranslatorOptions.length_buckets` decode to different lengths T_i. PAD
  after a row's tokens changes neither its `decoding.postprocess` (on its first T_i positions;
  PAD after them) nor its text.
  """
  length = max(h.shape[-1] for h in histories)
  return np.stack([np.pad(h, ((0, 0), (0, length - h.shape[-1])), constant_values=pad_id)
                   for h in histories])


def iteration_hypotheses(translator: translator_lib.Translator,
                         predictions: Sequence[translator_lib.Prediction],
                         collapse_stutter: bool) -> List[List[str]]:
  """Texts after each refinement iteration: [k][num_lines], from `aux['history']` [k, T].

  Each iteration's tokens are cleaned up as the final output (`decoding.postprocess`); lines
  the model did not run (empty sources) stay empty. Lines may differ in T (length buckets).
  """
  ran = [p for p in predictions if p.aux]
  if not ran:
    return []
  special = translator.model.special_tokens
  histories = pad_histories([p.aux["history"] for p in ran], special.pad_id)  # [N, k, T]
  num, k, length = histories.shape
  cleaned = np.asarray(decoding.postprocess(jnp.asarray(histories.reshape(num * k, length)),
                                            collapse_stutter, special.eos_id, special.pad_id))
  cleaned = cleaned.reshape(num, k, length)
  texts = [[""] * len(predictions) for _ in range(k)]
  row = 0
  for line, prediction in enumerate(predictions):
    if prediction.aux:
      for i in range(k):
        texts[i][line] = translator.text(cleaned[row, i])
      row += 1
  return texts


def evaluate(translator: translator_lib.Translator, sources: Sequence[str],
             references: Sequence[str], progress: bool = False) -> Tuple[Dict[str, Any], List[str]]:
  """Translates `sources` once and scores the translations against `references`.

  Returns:
    (metrics: `score_hypotheses`' + num_examples, mean_iterations and bleu_per_iteration (None
    for AR); the hypotheses). Deterministic: no timings (benchmarks measure speed).
  """
  model = translator.model
  padir = isinstance(model, models.PadirModel)
  predictions = translator.predict(sources, {"return_history": True} if padir else None, progress)
  hypotheses = [p.text for p in predictions]
  results = {"num_examples": len(sources), **score_hypotheses(hypotheses, references),
             "mean_iterations": None, "bleu_per_iteration": None}
  if padir:
    iterations = [float(p.aux["iterations"]) for p in predictions if p.aux]
    results["mean_iterations"] = float(np.mean(iterations)) if iterations else 0.0
    results["bleu_per_iteration"] = [
        bleu(texts, references).score
        for texts in iteration_hypotheses(translator, predictions, model.scheme.stutter_remasking)]
  return results, hypotheses


# ----------------------------------------------------------------------------------------------
# Checkpoints of a run.


def available_steps(model_dir: str) -> List[int]:
  """Steps of the complete checkpoints in `model_dir`, ascending."""
  directory = checkpoints.checkpoint_dir(model_dir)
  if not os.path.isdir(directory):
    return []
  manager = checkpoints.make_manager(directory, read_only=True)
  try:
    return sorted(manager.all_steps())
  finally:
    manager.close()


def final_train_step(model_dir: str) -> Optional[int]:
  """`num_train_steps` of the run, from the `run_info.json` the trainer writes (None if absent).

  The trainer saves its last checkpoint at exactly this step, so training has finished when a
  checkpoint of this step exists.
  """
  steps = checkpoints.read_run_info(model_dir).get("num_train_steps")
  return int(steps) if steps is not None else None


# ----------------------------------------------------------------------------------------------
# Output files.


def _step_file(output_dir: str, step: int, suffix: str) -> str:
  return os.path.join(output_dir, f"step_{step}.{suffix}")


def evaluated_steps(output_dir: str, settings: Mapping[str, Any]) -> Dict[int, Dict[str, Any]]:
  """Results already in `output_dir`, by step; refuses results of other settings."""
  found = {}
  if not os.path.isdir(output_dir):
    return found
  for name in os.listdir(output_dir):
    match = re.fullmatch(r"step_(\d+)\.json", name)
    if not match:
      continue
    with open(os.path.join(output_dir, name)) as f:
      entry = json.load(f)
    if entry.get("settings") != dict(settings):
      raise ValueError(f"--output {output_dir} holds {name} from other settings "
                       f"({entry.get('settings')}); use another --output dir")
    found[int(match.group(1))] = entry
  return found


def _cell(value, digits: int = 2) -> str:
  return "-" if value is None else f"{value:.{digits}f}"


def eval_markdown(summary: Mapping[str, Any]) -> str:
  """`padir eval`'s results.md: the settings, then a table of one row per step."""
  settings = summary["settings"]
  entries = summary["evaluations"]
  lines = [f"# padir eval: {settings['task']} / {settings['split']}", "",
           f"- checkpoint dir: `{settings['checkpoint_dir']}`",
           f"- command: `{summary['command']}`"]
  if entries:
    lines += [f"- examples: {entries[-1]['num_examples']}",
              f"- sacreBLEU: `{entries[-1]['bleu_signature']}`, `{entries[-1]['chrf_signature']}`"]
  rows = [(e["step"], f"{e['bleu']:.2f}", f"{e['chrf']:.2f}", f"{e['length_ratio']:.3f}",
           f"{100 * e['stutter_rate']:.2f}", _cell(e["mean_iterations"]),
           "-" if e["bleu_per_iteration"] is None else
           " / ".join(f"{b:.2f}" for b in e["bleu_per_iteration"])) for e in entries]
  lines += ["", *tables.markdown_table(
      ("step", "BLEU", "chrF", "length ratio", "stutter %", "mean iterations",
       "BLEU after iteration 1..k"), rows, "rrrrrrl")]
  return "\n".join(lines) + "\n"


def write_summary(output_dir: str, settings: Mapping[str, Any], command: str) -> Dict[str, Any]:
  """Rewrites results.json and results.md from every `step_N.json` in `output_dir`."""
  done = evaluated_steps(output_dir, settings)
  entries = [done[step] for step in sorted(done)]
  summary = {"settings": dict(settings), "command": command,
             "evaluations": [{k: v for k, v in e.items() if k != "settings"} for e in entries]}
  files.write_json(os.path.join(output_dir, RESULTS_JSON), summary)
  files.write_text(os.path.join(output_dir, RESULTS_MD), eval_markdown(summary))
  return summary


# ----------------------------------------------------------------------------------------------
# The job.


class _TensorBoard:
  """Scalars of each evaluated step in MODEL_DIR/eval/TASK.SPLIT/ (TensorBoard beside training)."""

  def __init__(self, logdir: str):
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self._writer = SummaryWriter(logdir=logdir)

  def write(self, step: int, results: Mapping[str, Any]) -> None:
    for name in ("bleu", "chrf", "length_ratio", "stutter_rate", "mean_iterations"):
      if results.get(name) is not None:
        self._writer.add_scalar(name, results[name], global_step=step)
    for i, value in enumerate(results.get("bleu_per_iteration") or (), start=1):
      self._writer.add_scalar(f"bleu_after_iteration_{i}", value, global_step=step)
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


@dataclasses.dataclass
class EvalJob:
  """Evaluates checkpoints of one run on one task split into `output_dir` (see module doc)."""
  checkpoint_dir: str
  task: str
  split: str
  output_dir: str
  gin_files: Sequence[str] = ()
  gin_bindings: Sequence[str] = ()
  task_modules: Sequence[str] = ("tasks.builtin",)
  max_examples: Optional[int] = None
  command: str = ""
  progress: bool = False

  def __post_init__(self):
    self.model_dir, _ = translator_lib.resolve_model_dir(self.checkpoint_dir)
    self.settings = {"checkpoint_dir": self.model_dir, "task": self.task, "split": self.split,
                     "gin_files": list(self.gin_files), "gin_bindings": list(self.gin_bindings),
                     "max_examples": self.max_examples}
    self._translator = None
    self._data = None
    self._done = evaluated_steps(self.output_dir, self.settings)

  def _examples(self) -> Tuple[List[str], List[str]]:
    if self._data is None:
      from padir import data  # pylint: disable=g-import-not-at-top  (seqio only when evaluating)
      examples = list(data.iterate_examples(self.task, self.split, module=self.task_modules,
                                            max_examples=self.max_examples))
      self._data = ([e["inputs_text"] for e in examples], [e["targets_text"] for e in examples])
    return self._data

  def evaluate_step(self, step: int, tensorboard: Optional[_TensorBoard] = None
                    ) -> Dict[str, Any]:
    """Evaluates checkpoint `step` (unless done before) and rewrites the summary."""
    if step not in self._done:
      sources, references = self._examples()
      if self._translator is None:
        self._translator = translator_lib.Translator.from_checkpoint(
            self.model_dir, step, self.gin_bindings, [EVAL_GIN_FILE, *self.gin_files])
        checkpoints.write_run_record(self.output_dir, gin_config=self._translator.gin_config,
                                     seed=self._translator.options.seed, extra=self.settings)
      else:
        self._translator.load_step(step)
      results, hypotheses = evaluate(self._translator, sources, references, self.progress)
      os.makedirs(self.output_dir, exist_ok=True)
      translator_lib.write_lines(_step_file(self.output_dir, step, "hypotheses.txt"), hypotheses)
      if tensorboard is not None:
        tensorboard.write(step, results)
      entry = {"step": step, **results, "settings": self.settings}
      files.write_json(_step_file(self.output_dir, step, "json"), entry)
      self._done[step] = entry
      logger.info("step %d: BLEU %.2f chrF %.2f (%s)", step, results["bleu"], results["chrf"],
                  results["bleu_signature"])
    write_summary(self.output_dir, self.settings, self.command)
    return self._done[step]

  def run(self, which: str = "latest") -> Dict[str, Any]:
    """Evaluates `which` checkpoint(s): a step number, 'latest' or 'all'. Returns the summary."""
    steps = available_steps(self.model_dir)
    if not steps:
      raise translator_lib.CheckpointDirError(
          f"checkpoint dir {self.model_dir} has no complete checkpoint")
    if which == "all":
      chosen = steps
    elif which == "latest":
      chosen = steps[-1:]
    elif which.isdigit() and int(which) in steps:
      chosen = [int(which)]
    else:
      raise ValueError(f"--checkpoint_step={which}: expected a step of {steps}, 'latest' or 'all'")
    for step in chosen:
      self.evaluate_step(step)
    return write_summary(self.output_dir, self.settings, self.command)

  def watch(self, poll_seconds: float = 60.0, timeout_seconds: float = 3600.0) -> Dict[str, Any]:
    """Evaluates each new checkpoint until the run's final step is evaluated (see module doc).

    Raises:
      TimeoutError: no new checkpoint for `timeout_seconds`.
    """
    final = None
    tensorboard = _TensorBoard(os.path.join(self.model_dir, TENSORBOARD_SUBDIR,
                                            f"{self.task}.{self.split}"))
    last_new = time.time()
    try:
      while True:
        new = [s for s in available_steps(self.model_dir) if s not in self._done]
        for step in new:
          try:
            self.evaluate_step(step, tensorboard)
          except (FileNotFoundError, checkpoints.NoUsableCheckpointError) as e:
            logger.warning("checkpoint %d skipped (deleted or unreadable): %s", step, e)
        if new:
          last_new = time.time()
        final = final_train_step(self.model_dir)  # A resumed run may have another total.
        if final is not None and final in self._done:
          logger.info("training finished at step %d; all checkpoints evaluated", final)
          break
        if time.time() - last_new > timeout_seconds:
          raise TimeoutError(
              f"no new checkpoint in {self.model_dir} for {timeout_seconds:.0f} s and the final "
              f"step {final} is not evaluated: has training stopped? (--watch_timeout)")
        time.sleep(poll_seconds)
    finally:
      tensorboard.close()
    return write_summary(self.output_dir, self.settings, self.command)


def wait_for_run(checkpoint_dir: str, poll_seconds: float, timeout_seconds: float) -> None:
  """Waits until `checkpoint_dir` is a `padir train` model dir (an eval job started before its
  training job).

  Raises:
    TimeoutError: it is not one after `timeout_seconds`.
  """
  deadline = time.time() + timeout_seconds
  while True:
    try:
      translator_lib.resolve_model_dir(checkpoint_dir)
      return
    except translator_lib.CheckpointDirError as e:
      if time.time() > deadline:
        raise TimeoutError(f"{e}, still after --watch_timeout={timeout_seconds:.0f} s: has "
                           "training started with this --model_dir?") from e
      logger.info("waiting for training to start in %s (%s)", checkpoint_dir, e)
      time.sleep(poll_seconds)
