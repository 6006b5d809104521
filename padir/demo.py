"""`padir demo`: the main job on the built-in offline corpus, end to end, in one command.

  padir demo --workdir runs/demo                    # ~22 minutes on 2 CPU cores
  padir demo --workdir /tmp/demo --size reduced     # a smoke test of the pipeline (minutes)

Stages, each timed and logged against its budget (`DemoSize.budgets_s`):
  corpus             the built-in corpus's sentences of at most 10 words (`tasks.builtin`)
  teacher            train the AR teacher                 experiments/builtin_ar.gin
                     (`teacher_steps` in all; the parameters at `teacher_steps - student_steps`
                     are kept in `teacher_init/`, where both students start)
  distill            translate `num_distill_sources` fresh sources with it, beam 4
                     (`padir.distill`): sentences of the corpus's language that no split holds,
                     so the teacher translates them by its own rule (on its training split it
                     returns the memorised references, multi-modal as they are)
  student_raw        train PaDIR on the original data     experiments/builtin_padir.gin
  student_distilled  train PaDIR on the distilled data    + the distillation's task.gin
  evaluate           every system on the test split, in this one process
Training runs `padir train`'s gin files in this process (models/*_tiny.gin, runs/train.gin,
experiments/builtin_mini.gin for the network, then the experiment); both students start from
the teacher's parameters at step `teacher_steps - student_steps` (`trainer.train.init_checkpoint`),
so a student's training (warm start + its own steps) is exactly as long as the AR baseline's:
PaDIR never wins by having trained longer.

Systems: `ar_greedy`, `ar_beam4` (the fully trained teacher, KV cache) and `padir_raw@K`,
`padir_distilled@K` (each student with K = 1, 2, 4, 8 refinement iterations). Each goes through
the translate path (`padir.translator`: text -> ids -> jitted decode -> text) and gets
  bleu, chrf, stutter_rate, length_ratio   `padir.evaluation.score_hypotheses` (sacreBLEU)
  mean_iterations           PaDIR: decoder passes per sentence (rows stop when they converge)
  sentences_per_s_batch64   the test split at batch 64, sentences / wall second, after a warm-up
                            batch (compilation excluded)
  latency_ms_batch1         median wall ms of one sentence a call, over the first
                            `num_latency_sentences` test sentences, after a warm-up call
  speedup_batch1            AR greedy's latency / the system's
Every source is padded to one length (`LENGTH_BUCKETS`), so each system compiles two shapes.

Workdir: `demo.json` (the size), `teacher/`, `teacher_init/`, `distill_sources.txt`, `distilled/`,
`student_raw/`, `student_distilled/` (model dirs and the distillation), `stages.json` (finished
stages: wall time, this process's CPU time, budget), `hypotheses/SYSTEM.txt`, `results.json`,
`results.md`, `tradeoff.png` (BLEU vs batch-1 latency). Re-running with the same workdir reuses
finished stages; an interrupted training resumes from its newest checkpoint and an interrupted
distillation from its finished shards. A workdir of another size is refused.
"""
import argparse
import dataclasses
import datetime
import json
import logging
import os
import platform
import shlex
import shutil
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import gin
import jax

from padir import checkpoints
from padir import distill as distill_lib
from padir import evaluation
from padir import files
from padir import gin_utils
from padir import metrics as metrics_lib
from padir import trainer
from padir import translator as translator_lib

logger = logging.getLogger(__name__)

STAGES = ("corpus", "teacher", "distill", "student_raw", "student_distilled", "evaluate")
ITERATIONS = (1, 2, 4, 8)
# The demo corpus: the built-in generator's sentences of at most 10 words (26 pieces with EOS),
# which a small model learns in minutes.
CORPUS_MAX_WORDS = 10
MAX_TARGET_LENGTH = 32
LENGTH_BUCKETS = (MAX_TARGET_LENGTH,)
EVAL_BATCH_SIZE = 64
DISTILL_BEAM_SIZE = 4
TRAIN_GIN = "runs/train.gin"
MINI_GIN = "experiments/builtin_mini.gin"
PADIR_GIN = "experiments/builtin_padir.gin"
SETTINGS_FILE = "demo.json"
DISTILL_SOURCES = "distill_sources.txt"
STAGES_FILE = "stages.json"
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
TRADEOFF_PNG = "tradeoff.png"
LEARNING_CURVES_PNG = "learning_curves.png"
RESULT_FIELDS = ("name", "model", "iterations", "bleu", "chrf", "stutter_rate",
                 "latency_ms_batch1", "sentences_per_s_batch64")


@dataclasses.dataclass(frozen=True)
class DemoSize:
  """How big a demo run is.

  Attributes:
    corpus: corpus name; its tasks are `{corpus}_ar` / `{corpus}_padir`.
    num_train: training pairs (the teacher's and the raw student's).
    num_validation: validation pairs (the corpus has the split; the demo does not use it).
    num_test: test pairs, all evaluated (a multiple of EVAL_BATCH_SIZE).
    num_latency_sentences: test sentences timed one a call (batch-1 latency).
    num_distill_sources: fresh source sentences the teacher translates for the distilled
      student (a multiple of the distillation batch, 128, so that every batch has one shape).
    distill_shard_size: sources per distillation shard (the unit of resuming).
    teacher_steps: AR teacher training steps, in all (the AR baseline's training).
    student_steps: training steps of each PaDIR student, after its warm start from the teacher
      at step `teacher_steps - student_steps`.
    gin_bindings: extra bindings of every training run (after the experiment files).
    budgets_s: expected wall seconds of each stage on 2 quiet CPU cores.
  """
  corpus: str
  num_train: int
  num_validation: int
  num_test: int
  num_latency_sentences: int
  num_distill_sources: int
  distill_shard_size: int
  budgets_s: Mapping[str, float]
  teacher_steps: int
  student_steps: int
  gin_bindings: Tuple[str, ...] = ()

  def __post_init__(self):
    if not 0 < self.student_steps < self.teacher_steps:
      raise ValueError(f"student_steps={self.student_steps} must be in (0, teacher_steps="
                       f"{self.teacher_steps}): students start from the teacher at step "
                       "teacher_steps - student_steps")

  @property
  def student_init_step(self) -> int:
    """The teacher's step where the students start."""
    return self.teacher_steps - self.student_steps


SIZES = {
    "default": DemoSize(
        corpus="builtin_demo", num_train=10_240, num_validation=512, num_test=512,
        num_latency_sentences=64, num_distill_sources=10_240, distill_shard_size=2_560,
        budgets_s={"corpus": 20, "teacher": 780, "distill": 60, "student_raw": 255,
                   "student_distilled": 255, "evaluate": 90},
        teacher_steps=3000, student_steps=1500),
    "reduced": DemoSize(
        corpus="builtin_demo_reduced", num_train=256, num_validation=64, num_test=64,
        num_latency_sentences=4, num_distill_sources=256, distill_shard_size=128,
        budgets_s={"corpus": 20, "teacher": 20, "distill": 15, "student_raw": 20,
                   "student_distilled": 20, "evaluate": 60},
        teacher_steps=20, student_steps=10,
        gin_bindings=("BATCH_SIZE = 8", "optimizers.cosine_schedule.warmup_steps = 2")),
}


class DemoError(ValueError):
  """A workdir that cannot be used (another size), named in the message."""


# ----------------------------------------------------------------------------------------------
# Files of the workdir.


def _check_settings(workdir: str, size_name: str, size: DemoSize) -> None:
  """Writes demo.json, or checks that the workdir's is of the same size."""
  path = os.path.join(workdir, SETTINGS_FILE)
  settings = json.loads(json.dumps({"size": size_name, **dataclasses.asdict(size)}))
  settings.pop("budgets_s")  # Budgets are expectations, not settings.
  saved = files.read_json(path)
  if saved is None:
    os.makedirs(workdir, exist_ok=True)
    files.write_json(path, settings)
  elif saved != settings:
    raise DemoError(f"--workdir {workdir} holds a demo of other settings (size "
                    f"{saved.get('size')!r}, see {path}): use another --workdir")


class Stages:
  """Finished stages of a workdir (`stages.json`) and the timing of this run's."""

  def __init__(self, workdir: str, size: DemoSize):
    self._path = os.path.join(workdir, STAGES_FILE)
    self._size = size
    self.finished: Dict[str, Dict[str, Any]] = files.read_json(self._path) or {}
    self._start = time.time()

  def done(self, stage: str) -> bool:
    return stage in self.finished

  def start(self, stage: str) -> Tuple[float, float]:
    index = STAGES.index(stage) + 1
    left = sum(self._size.budgets_s[s] for s in STAGES[index - 1:] if not self.done(s))
    logger.info("stage %d/%d %s (budget %s; elapsed %s, about %s left)", index, len(STAGES),
                stage, _clock(self._size.budgets_s[stage]), _clock(time.time() - self._start),
                _clock(left))
    return time.time(), time.process_time()

  def finish(self, stage: str, started: Tuple[float, float], **record) -> None:
    """Records the stage's wall time and this process's CPU time (on a loaded machine, CPU
    seconds / cores is what the stage would take alone)."""
    wall, cpu = time.time() - started[0], time.process_time() - started[1]
    budget = self._size.budgets_s[stage]
    self.finished[stage] = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "budget_s": budget,
                            **record}
    files.write_json(self._path, self.finished)
    log = logger.warning if wall > budget else logger.info
    log("stage %s done in %s, %.0f CPU seconds (budget %s)", stage, _clock(wall), cpu,
        _clock(budget))

  def reuse(self, stage: str) -> None:
    logger.info("stage %d/%d %s: finished in an earlier run (%s), reused", STAGES.index(stage) + 1,
                len(STAGES), stage, _clock(self.finished[stage]["wall_s"]))


def _clock(seconds: float) -> str:
  return str(datetime.timedelta(seconds=round(seconds)))


# ----------------------------------------------------------------------------------------------
# Stages.


def prepare_corpus(size: DemoSize) -> Tuple[str, str]:
  """Registers the demo corpus's tasks and generates it if missing. Returns (AR, PaDIR) tasks."""
  from padir import data  # pylint: disable=g-import-not-at-top  (seqio only when running)
  from tasks import builtin  # pylint: disable=g-import-not-at-top
  tasks = builtin.register_builtin(size.corpus, num_train=size.num_train,
                                   num_validation=size.num_validation, num_test=size.num_test,
                                   max_words=CORPUS_MAX_WORDS,
                                   max_target_length=MAX_TARGET_LENGTH)
  vocabulary = data.task_vocabulary(tasks[0])
  logger.info("corpus %s: %d pieces, tasks %s", size.corpus,
              vocabulary.special_tokens.num_pieces, ", ".join(tasks))
  return tasks


def train(gin_files: Sequence[str], model_dir: str, steps: int, size: DemoSize,
          bindings: Sequence[str] = ()) -> None:
  """`padir train` in this process: the model gin file, runs/train.gin, the demo's network
  (experiments/builtin_mini.gin), the other `gin_files`, then the run's bindings."""
  gin.clear_config()
  gin_utils.parse_gin(
      [gin_files[0], TRAIN_GIN, MINI_GIN, *gin_files[1:]],
      [f"MODEL_DIR = {model_dir!r}", *size.gin_bindings, *bindings, f"TRAIN_STEPS = {steps}"])
  trainer.train()


def train_teacher(teacher_dir: str, init_dir: str, ar_task: str, size: DemoSize) -> None:
  """The AR teacher, `size.teacher_steps` on one learning-rate schedule, with a copy of the run
  at `size.student_init_step` in `init_dir` (where the students start). Resumable."""
  gin_files = ["models/ar_tiny.gin", "experiments/builtin_ar.gin"]
  bindings = [f"MIXTURE_OR_TASK_NAME = {ar_task!r}",
              f"optimizers.cosine_schedule.decay_steps = {size.teacher_steps}"]
  if not os.path.isdir(init_dir):
    train(gin_files, teacher_dir, size.student_init_step, size, bindings)
    shutil.rmtree(init_dir + ".tmp", ignore_errors=True)
    shutil.copytree(teacher_dir, init_dir + ".tmp")
    os.replace(init_dir + ".tmp", init_dir)
  train(gin_files, teacher_dir, size.teacher_steps, size, bindings)


def distill_sources(path: str, ar_task: str, size: DemoSize) -> str:
  """Writes (once) `size.num_distill_sources` source sentences of the corpus's generator that
  none of its splits holds (the generator's `distill` stream) to `path`; returns `path`."""
  from padir import corpus  # pylint: disable=g-import-not-at-top
  if not os.path.exists(path):
    known = [s for split in ("train", "validation", "test") for s in test_set(ar_task, split)[0]]
    pairs = corpus.generate_pairs(0, "distill", size.num_distill_sources,
                                  corpus.DEFAULT_MULTIMODALITY, exclude_sources=known,
                                  max_words=CORPUS_MAX_WORDS)
    files.write_text(path, "".join(source + "\n" for source, _ in pairs))
  return path


def distill(teacher_dir: str, sources_file: str, output_dir: str,
            size: DemoSize) -> distill_lib.DistillResult:
  """The teacher's beam-4 translations of `sources_file`, registered as tasks."""
  return distill_lib.distill(
      teacher_dir, distill_lib.Sources(source_file=sources_file), output_dir,
      shard_size=size.distill_shard_size, decode_method="beam", beam_size=DISTILL_BEAM_SIZE,
      name=f"{size.corpus}_distilled",
      gin_bindings=[f"TranslatorOptions.length_buckets = {LENGTH_BUCKETS}"], progress=True)


def measure(translator: translator_lib.Translator, sources: Sequence[str],
            references: Sequence[str], decoder_params: Mapping[str, Any],
            num_latency_sentences: int) -> Tuple[Dict[str, Any], List[str]]:
  """Quality and speed of one system (see the module docstring). Returns (metrics, hypotheses).

  `translator` decodes EVAL_BATCH_SIZE sentences a call; a copy decoding one a call times the
  latency.
  """
  translator.translate(sources[:EVAL_BATCH_SIZE], decoder_params)  # Compiles.
  start = time.perf_counter()
  predictions = translator.predict(sources, decoder_params)
  throughput = len(sources) / (time.perf_counter() - start)

  one = translator_lib.Translator(translator.model, translator.params,
                                  dataclasses.replace(translator.options, batch_size=1))
  one.translate(sources[:1], decoder_params)  # Compiles.
  latencies = []
  for source in sources[:num_latency_sentences]:
    start = time.perf_counter()
    one.translate([source], decoder_params)
    latencies.append(1e3 * (time.perf_counter() - start))

  hypotheses = [p.text for p in predictions]
  scores = evaluation.score_hypotheses(hypotheses, references)
  iterations = [float(p.aux["iterations"]) for p in predictions if "iterations" in p.aux]
  return {
      **scores,
      "mean_iterations": statistics.fmean(iterations) if iterations else None,
      "latency_ms_batch1": statistics.median(latencies),
      "sentences_per_s_batch64": throughput,
  }, hypotheses


def systems(teacher_dir: str, student_dirs: Mapping[str, str],
            padir_decoder_params: Optional[Mapping[str, Any]] = None):
  """(name, model, iterations, model dir, decoder_params) of every evaluated system;
  `padir_decoder_params` are added to every student's."""
  yield "ar_greedy", "ar", None, teacher_dir, {"decode_method": "greedy"}
  yield "ar_beam4", "ar", None, teacher_dir, {"decode_method": "beam", "beam_size": 4}
  for data_name, model_dir in student_dirs.items():
    for k in ITERATIONS:
      yield (f"padir_{data_name}@{k}", "padir", k, model_dir,
             {**(padir_decoder_params or {}), "num_decode_iterations": k})


def evaluate(sources: Sequence[str], references: Sequence[str], teacher_dir: str,
             student_dirs: Mapping[str, str], *, hypotheses_dir: str,
             num_latency_sentences: int,
             length_buckets: Optional[Sequence[int]] = None,
             padir_decoder_params: Optional[Mapping[str, Any]] = None) -> List[Dict[str, Any]]:
  """Every system (`systems`) on one test set, one after the other in this process; writes
  `hypotheses_dir/SYSTEM.txt`. Returns the rows of results.json's `systems`."""
  options = [f"TranslatorOptions.batch_size = {EVAL_BATCH_SIZE}"]
  if length_buckets:
    options.append(f"TranslatorOptions.length_buckets = {tuple(length_buckets)}")
  translators: Dict[str, translator_lib.Translator] = {}
  rows = []
  for name, model, iterations, model_dir, decoder_params in systems(teacher_dir, student_dirs,
                                                                   padir_decoder_params):
    if model_dir not in translators:
      translators[model_dir] = translator_lib.Translator.from_checkpoint(
          model_dir, gin_bindings=options)
    metrics, hypotheses = measure(translators[model_dir], sources, references, decoder_params,
                                  num_latency_sentences)
    translator_lib.write_lines(os.path.join(hypotheses_dir, f"{name}.txt"), hypotheses)
    rows.append({"name": name, "model": model, "iterations": iterations, **metrics})
    logger.info("%-20s BLEU %6.2f  chrF %6.2f  stutter %.4f  batch-1 %8.1f ms  batch-64 %7.1f "
                "sentences/s", name, metrics["bleu"], metrics["chrf"], metrics["stutter_rate"],
                metrics["latency_ms_batch1"], metrics["sentences_per_s_batch64"])
  greedy = rows[0]["latency_ms_batch1"]
  for row in rows:
    row["speedup_batch1"] = greedy / row["latency_ms_batch1"]
  return rows


def test_set(task: str, split: str) -> Tuple[List[str], List[str]]:
  """(sources, references) of a task split, as its raw text."""
  from padir import data  # pylint: disable=g-import-not-at-top  (seqio only when running)
  examples = list(data.iterate_examples(task, split))
  return [e["inputs_text"] for e in examples], [e["targets_text"] for e in examples]


# ----------------------------------------------------------------------------------------------
# Reports.


# The paper's "minimal quality loss", as the demo's targets (BLEU points).
MAX_GAP_TO_AR_BEAM_AT_4 = 0.5
MAX_GAP_TO_AR_GREEDY_AT_1 = 6.0


def checks(rows: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
  """The demo's claims, measured: every field present; the distilled student at 4 iterations
  within MAX_GAP_TO_AR_BEAM_AT_4 of AR beam 4 and above AR greedy, at 1 iteration within
  MAX_GAP_TO_AR_GREEDY_AT_1 of AR greedy; the distilled student at least as good as the raw one
  at every K; BLEU of each student rising from 1 to 4 iterations, and the students' mean not
  lower with more iterations (K = 1, 2, 4, 8 in turn)."""
  bleu = {row["name"]: row["bleu"] for row in rows}
  students = [d for d in ("raw", "distilled") if f"padir_{d}@1" in bleu]  # Raw is optional.
  mean_by_k = [statistics.fmean([bleu[f"padir_{d}@{k}"] for d in students]) for k in ITERATIONS]
  distilled = {k: bleu[f"padir_distilled@{k}"] for k in ITERATIONS}
  return {
      "every_field": all(row.get(f) is not None or (f == "iterations" and row["model"] == "ar")
                         for row in rows for f in RESULT_FIELDS),
      "distilled_at_4_minus_ar_beam4": distilled[4] - bleu["ar_beam4"],
      "distilled_at_4_near_ar_beam4":
          distilled[4] >= bleu["ar_beam4"] - MAX_GAP_TO_AR_BEAM_AT_4,
      "distilled_at_4_above_ar_greedy": distilled[4] > bleu["ar_greedy"],
      "distilled_at_1_minus_ar_greedy": distilled[1] - bleu["ar_greedy"],
      "distilled_at_1_near_ar_greedy":
          distilled[1] >= bleu["ar_greedy"] - MAX_GAP_TO_AR_GREEDY_AT_1,
      "distilled_at_least_raw": (all(distilled[k] >= bleu[f"padir_raw@{k}"] for k in ITERATIONS)
                                 if "raw" in students else None),
      "bleu_rises_from_1_to_4": all(bleu[f"padir_{d}@4"] > bleu[f"padir_{d}@1"]
                                    for d in students),
      "students_mean_bleu_by_iterations": mean_by_k,
      "more_iterations_do_not_lower_bleu": all(b >= a for a, b in zip(mean_by_k, mean_by_k[1:])),
  }


def machine() -> Dict[str, Any]:
  device = jax.devices()[0]
  return {"platform": device.platform, "device_kind": device.device_kind,
          "device_count": jax.device_count(), "cpu_count": os.cpu_count(),
          "processor": platform.processor() or platform.machine(),
          "python": platform.python_version(), "jax": jax.__version__}


def load_average() -> Optional[List[float]]:
  """The 1, 5 and 15-minute load averages (speed numbers are worth little without them)."""
  return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def results_markdown(results: Mapping[str, Any]) -> str:
  """The results as markdown: how they were made, the table, the stages and the checks."""
  m = results["machine"]
  rows = results["systems"]
  lines = [
      f"# {results['title']}: AR teacher -> distillation -> PaDIR students",
      "",
      f"- command: `{results['command']}`",
      f"- date: {results['date']}; machine: {m['cpu_count']} CPU cores ({m['processor']}), "
      f"JAX {m['jax']} on {m['platform']}; load average at the start of evaluation "
      f"{results['load_average']['evaluate_start']}, at its end "
      f"{results['load_average']['evaluate_end']}",
      f"- test set: {results['test_sentences']} sentences of `{results['test_task']}` "
      f"({results['test_split']}); "
      f"sacreBLEU `{rows[0]['bleu_signature']}`, `{rows[0]['chrf_signature']}`",
      f"- speed, one process, this machine: batch-1 latency = median over "
      f"{results['latency_sentences']} test sentences translated one a call; throughput = the "
      f"test set at batch {EVAL_BATCH_SIZE}; both through the translate path (text -> text), "
      "compilation excluded",
      *([f"- training: {results['training']}"] if "training" in results else []),
      "",
      "| system | BLEU | chrF | stutter % | length ratio | latency ms (batch 1) | "
      "speedup (batch 1) | sentences/s (batch 64) |",
      "|---|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for r in rows:
    lines.append(f"| {r['name']} | {r['bleu']:.2f} | {r['chrf']:.2f} | "
                 f"{100 * r['stutter_rate']:.2f} | {r['length_ratio']:.3f} | "
                 f"{r['latency_ms_batch1']:.1f} | {r['speedup_batch1']:.2f}x | "
                 f"{r['sentences_per_s_batch64']:.1f} |")
  if "stages" in results:
    lines += ["", "| stage | wall time | CPU seconds | budget |", "|---|---:|---:|---:|"]
    for stage in STAGES:
      record = results["stages"][stage]
      lines.append(f"| {stage} | {_clock(record['wall_s'])} | {record['cpu_s']:.0f} | "
                   f"{_clock(record['budget_s'])} |")
  c = results["checks"]
  mean = " -> ".join(f"{b:.2f}" for b in c["students_mean_bleu_by_iterations"])
  lines += [
      "",
      f"- every system has every field: {_yes(c['every_field'])}",
      f"- distilled@4 within {MAX_GAP_TO_AR_BEAM_AT_4} BLEU of AR beam 4 "
      f"({c['distilled_at_4_minus_ar_beam4']:+.2f}): {_yes(c['distilled_at_4_near_ar_beam4'])}",
      f"- distilled@4 above AR greedy: {_yes(c['distilled_at_4_above_ar_greedy'])}",
      f"- distilled@1 within {MAX_GAP_TO_AR_GREEDY_AT_1} BLEU of AR greedy "
      f"({c['distilled_at_1_minus_ar_greedy']:+.2f}): {_yes(c['distilled_at_1_near_ar_greedy'])}",
      f"- distilled student at least as good as the raw-data one at every K: "
      f"{_yes(c['distilled_at_least_raw'])}",
      f"- each student's BLEU rises from 1 to 4 iterations: {_yes(c['bleu_rises_from_1_to_4'])}",
      f"- more iterations do not lower BLEU (students' mean at K = "
      f"{', '.join(map(str, ITERATIONS))}: {mean}): {_yes(c['more_iterations_do_not_lower_bleu'])}",
  ]
  return "\n".join(lines) + "\n"


def _yes(value: Optional[bool]) -> str:
  return "n/a" if value is None else "yes" if value else "**no**"


def tradeoff_plot(rows: Sequence[Mapping[str, Any]], path: str, title: str = "padir demo") -> None:
  """BLEU vs batch-1 latency, one point per system; each student's K joined by a line."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  figure = Figure(figsize=(7, 5))
  ax = figure.subplots()
  for model_name, marker in (("ar", "s"), ("padir_raw", "o"), ("padir_distilled", "^")):
    points = [r for r in rows if r["name"].startswith(model_name)]
    ax.plot([r["latency_ms_batch1"] for r in points], [r["bleu"] for r in points],
            marker=marker, linestyle="" if model_name == "ar" else "-", label=model_name)
    for r in points:
      ax.annotate(r["name"].split("_", 1)[1] if model_name == "ar" else f"K={r['iterations']}",
                  (r["latency_ms_batch1"], r["bleu"]), textcoords="offset points",
                  xytext=(4, 4), fontsize=8)
  ax.set_xscale("log")
  ax.set_xlabel("latency, batch 1 (ms per sentence, median; log scale)")
  ax.set_ylabel("BLEU (test)")
  ax.set_title(f"{title}: quality vs batch-1 latency")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend()
  figure.tight_layout()
  figure.savefig(path + ".tmp.png", dpi=120)
  os.replace(path + ".tmp.png", path)


def training_curve(model_dir: str) -> Dict[str, List[float]]:
  """A run's curves from its metrics.jsonl: `steps`, `minutes` (of training, summed from each
  train log row's steps/s) and `accuracy` of its train rows; `validation_minutes` and
  `validation_accuracy` of its validation rows (placed at the minutes of their step)."""
  with open(os.path.join(model_dir, "metrics.jsonl"), encoding="utf-8") as f:
    rows = [json.loads(line) for line in f if line.strip()]
  curve = {"steps": [], "minutes": [], "accuracy": [], "validation_minutes": [],
           "validation_accuracy": []}
  minutes, step = 0.0, 0
  for row in rows:
    if row.get("split") == "train" and row.get("steps_per_second"):
      minutes += (row["step"] - step) / row["steps_per_second"] / 60
      step = row["step"]
      for key, value in (("steps", step), ("minutes", minutes), ("accuracy", row["accuracy"])):
        curve[key].append(value)
    elif row.get("split") == "validation" and "accuracy" in row:
      curve["validation_minutes"].append(minutes)
      curve["validation_accuracy"].append(row["accuracy"])
  return curve


def learning_curves_plot(teacher_dir: str, student_dirs: Mapping[str, str], path: str,
                         student_init_step: Optional[int], title: str) -> None:
  """Token accuracy against training minutes: the teacher, and each student from the teacher's
  minutes at `student_init_step` (None: its last step), where its warm start took it. Train
  rows as lines (the students' on masked positions), validation rows as points."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  teacher = training_curve(teacher_dir)
  init = teacher["steps"][-1] if student_init_step is None else student_init_step
  offset = next((m for s, m in zip(teacher["steps"], teacher["minutes"]) if s >= init),
                teacher["minutes"][-1] if teacher["minutes"] else 0.0)
  figure = Figure(figsize=(7, 5))
  ax = figure.subplots()
  for name, model_dir, start in [("ar_teacher", teacher_dir, 0.0),
                                 *[(f"padir_{n}", d, offset) for n, d in student_dirs.items()]]:
    curve = teacher if model_dir == teacher_dir else training_curve(model_dir)
    line, = ax.plot([start + m for m in curve["minutes"]], curve["accuracy"], label=name)
    if curve["validation_accuracy"]:
      ax.plot([start + m for m in curve["validation_minutes"]], curve["validation_accuracy"],
              "o", color=line.get_color(), label=f"{name} (validation)")
  start_label = "last checkpoint" if student_init_step is None else f"step {init}"
  ax.set_xlabel(f"training minutes (students: from the teacher's {start_label}, where they "
                "start)")
  ax.set_ylabel("token accuracy (train batches; students: masked positions)")
  ax.set_title(f"{title}: learning curves")
  ax.grid(True, alpha=0.3)
  ax.legend()
  figure.tight_layout()
  figure.savefig(path + ".tmp.png", dpi=120)
  os.replace(path + ".tmp.png", path)


# ----------------------------------------------------------------------------------------------
# The job.


def run(workdir: str, size_name: str = "default", command: str = "") -> Dict[str, Any]:
  """Runs (or resumes) the demo in `workdir`; returns the results (as results.json)."""
  size = SIZES[size_name]
  workdir = os.path.abspath(workdir)
  _check_settings(workdir, size_name, size)
  stages = Stages(workdir, size)
  results_path = os.path.join(workdir, RESULTS_JSON)
  if stages.done("evaluate") and os.path.exists(results_path):
    for stage in STAGES:
      stages.reuse(stage)
    return files.read_json(results_path)

  teacher_dir = os.path.join(workdir, "teacher")
  teacher_init_dir = os.path.join(workdir, "teacher_init")
  student_dirs = {"raw": os.path.join(workdir, "student_raw"),
                  "distilled": os.path.join(workdir, "student_distilled")}

  started = stages.start("corpus")
  ar_task, padir_task = prepare_corpus(size)
  stages.finish("corpus", started)

  if stages.done("teacher"):
    stages.reuse("teacher")
  else:
    started = stages.start("teacher")
    train_teacher(teacher_dir, teacher_init_dir, ar_task, size)
    stages.finish("teacher", started, steps=size.teacher_steps,
                  students_start_at=size.student_init_step)

  distill_dir = os.path.join(workdir, "distilled")
  if stages.done("distill"):
    stages.reuse("distill")
  else:
    started = stages.start("distill")
    sources = distill_sources(os.path.join(workdir, DISTILL_SOURCES), ar_task, size)
    distilled = distill(teacher_dir, sources, distill_dir, size)
    stages.finish("distill", started, pairs=distilled.num_examples)

  # Both students start from the teacher's parameters at `student_init_step`. The raw one trains
  # on the corpus's PaDIR task, the distilled one on the task that distillation wrote as a gin
  # file (it registers the task in any process that parses it).
  init = f"trainer.train.init_checkpoint = {teacher_init_dir!r}"
  for data_name, gin_files, bindings in (
      ("raw", ["models/padir_tiny.gin", PADIR_GIN],
       [init, f"MIXTURE_OR_TASK_NAME = {padir_task!r}"]),
      ("distilled", ["models/padir_tiny.gin", PADIR_GIN,
                     os.path.join(distill_dir, distill_lib.TASK_GIN)], [init])):
    stage = f"student_{data_name}"
    if stages.done(stage):
      stages.reuse(stage)
      continue
    started = stages.start(stage)
    train(gin_files, student_dirs[data_name], size.student_steps, size, bindings)
    stages.finish(stage, started)

  started = stages.start("evaluate")

  def add_stages(results):
    stages.finish("evaluate", started)
    results["stages"] = stages.finished

  return evaluate_and_report(
      workdir, teacher_dir, student_dirs, ar_task, "test", command=command,
      title=f"padir demo ({size_name} size)", num_latency_sentences=size.num_latency_sentences,
      length_buckets=LENGTH_BUCKETS, before_writing=add_stages,
      student_init_step=size.student_init_step, extra={"size": size_name, "training": (
          f"AR (teacher): {size.teacher_steps} steps; each student: the teacher's parameters at "
          f"step {size.student_init_step} + {size.student_steps} steps of its own (equal "
          "training)")})


def evaluate_and_report(output_dir: str, teacher_dir: str, student_dirs: Mapping[str, str],
                        task: str, split: str, *, command: str, title: str,
                        num_latency_sentences: int,
                        length_buckets: Optional[Sequence[int]] = None,
                        extra: Optional[Mapping[str, Any]] = None,
                        before_writing: Optional[Callable[[Dict[str, Any]], Any]] = None,
                        student_init_step: Optional[int] = None,
                        padir_decoder_params: Optional[Mapping[str, Any]] = None
                        ) -> Dict[str, Any]:
  """Evaluates every system on `task`/`split` and writes `output_dir`/{results.json, results.md,
  tradeoff.png, learning_curves.png, hypotheses/} (the demo's last stage;
  benchmarks/multi30k.sh's too). `student_init_step`: the teacher's step where the students
  started (None: its last); `padir_decoder_params`: decoding options of every student."""
  sources, references = test_set(task, split)
  load_start = load_average()
  rows = evaluate(sources, references, teacher_dir, student_dirs,
                  hypotheses_dir=os.path.join(output_dir, "hypotheses"),
                  num_latency_sentences=num_latency_sentences, length_buckets=length_buckets,
                  padir_decoder_params=padir_decoder_params)
  results = {
      "title": title, "command": command, **(extra or {}),
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "machine": machine(),
      "load_average": {"evaluate_start": load_start, "evaluate_end": load_average()},
      "test_task": task, "test_split": split, "test_sentences": len(sources),
      "padir_decoder_params": dict(padir_decoder_params or {}),
      "latency_sentences": min(num_latency_sentences, len(sources)), "systems": rows,
      "checks": checks(rows),
  }
  tradeoff_plot(rows, os.path.join(output_dir, TRADEOFF_PNG), title)
  learning_curves_plot(teacher_dir, student_dirs, os.path.join(output_dir, LEARNING_CURVES_PNG),
                       student_init_step, title)
  if before_writing is not None:
    before_writing(results)
  files.write_text(os.path.join(output_dir, RESULTS_MD), results_markdown(results))
  files.write_json(os.path.join(output_dir, RESULTS_JSON), results)
  return results


USAGE = """\
padir demo [--workdir DIR] [--size default|reduced]

The main job on the built-in offline corpus: trains an AR teacher, distills the training set
with it, trains two PaDIR students (raw and distilled data) and evaluates AR greedy, AR beam 4
and each student at 1, 2, 4 and 8 iterations (BLEU, chrF, stutter, batch-1 latency, batch-64
throughput) into DIR/results.json, DIR/results.md and DIR/tradeoff.png. Re-run the same command
to resume; finished stages are reused.
"""


def main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(prog="padir demo", usage=USAGE)
  parser.add_argument("--workdir", default="runs/demo", help="where everything goes")
  parser.add_argument("--size", default="default", choices=sorted(SIZES),
                      help="default: ~22 minutes on 2 CPU cores; reduced: a quick smoke test")
  parser.add_argument("--cpu_devices", type=int, default=2,
                      help="JAX CPU devices, the trainings' data-parallel mesh (JAX_NUM_CPU_DEVICES "
                      "wins; no effect once JAX has started, nor on an accelerator)")
  args = parser.parse_args(argv)
  metrics_lib.log_to_stderr()
  if "JAX_NUM_CPU_DEVICES" not in os.environ:
    try:
      jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    except RuntimeError:  # JAX already runs (e.g. in a test process): keep its devices.
      logger.info("JAX has started: --cpu_devices=%d has no effect", args.cpu_devices)
  if jax.config.jax_compilation_cache_dir is None:  # Both students share compiled programs.
    jax.config.update("jax_compilation_cache_dir", os.path.join(os.path.abspath(args.workdir),
                                                                "jax_cache"))
  command = " ".join(["padir", "demo", *map(shlex.quote, argv)])
  try:
    results = run(args.workdir, args.size, command)
  except (DemoError, gin_utils.GinFlagError, trainer.TrainConfigError,
          checkpoints.CheckpointMismatchError, *translator_lib.USER_ERRORS) as e:
    logger.debug("padir demo failed", exc_info=True)
    print(f"padir demo: error: {e}", file=sys.stderr)
    return 1
  print(results_markdown(results))
  return 0
