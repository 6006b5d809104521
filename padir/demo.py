"""`padir demo`: the main job on the built-in offline corpus, end to end, in one command.

  padir demo --workdir runs/demo                    # ~10 minutes on 2 CPU cores
  padir demo --workdir runs/demo_raw --raw_student  # + a student on the raw data (~18 minutes)
  padir demo --workdir /tmp/demo --size reduced     # a smoke test of the pipeline (minutes)

Stages, each timed and logged against its budget (`DemoSize.budgets_s`):
  corpus             the built-in corpus's sentences of at most 10 words, each choice's first
                     variant 4 times in 5 (`padir.parallel_text.register_builtin`)
  teacher            train the AR teacher                 experiments/builtin_ar.gin
                     (`teacher_steps` in all; the parameters at
                     `student_init_step` are kept in `teacher_init/`, where the students start)
  distill            translate `num_distill_sources` fresh sources with it, beam 4
                     (`padir.distill`): sentences of the corpus's language that no split holds,
                     so the teacher translates them by its own rule (on its training split it
                     returns the memorised references, multi-modal as they are)
  student_raw        with `--raw_student` only: the aligned-canvas (CTC) student trained on
                     the original data (models/ctc_tiny.gin, experiments/builtin_ctc.gin), which
                     shows what distillation buys (the default leaves it out: it costs a third
                     of the demo's time, and the demo's point is AR against its distilled student)
  student_distilled  the same student on the distilled data  + the distillation's task.gin
  evaluate           every system on the test split, in this one process
Training runs `padir train`'s gin files in this process (models/*_tiny.gin, runs/train.gin,
experiments/builtin_mini.gin for the network, then the experiment); the students start from
the teacher's parameters at step `student_init_step` (`trainer.train.init_checkpoint`). The AR
baseline is trained to its best (more steps lower its validation BLEU) and stays the fair
baseline; the students get the rest of the demo's time.

Systems and what each gets (BLEU, chrF, stutter, batch-1 latency and its ratio to AR greedy,
batch-64 throughput, through the translate path): `padir.reporting`, shared with the benchmarks.
Sources are padded to one of `LENGTH_BUCKETS` (16 or 32 pieces), so each system compiles four
shapes (two lengths, batch 1 and 64).

Workdir: `demo.json` (the settings), `teacher/`, `teacher_init/`, `distill_sources.txt`,
`distilled/`, `student_distilled/` and with `--raw_student` `student_raw/` (model dirs and the
distillation), `stages.json` (finished stages: wall time, this process's CPU time, budget;
`padir.pipeline`), `hypotheses/SYSTEM.txt`, `results.json`, `results.md`, `tradeoff.png` (BLEU vs
batch-1 latency). Re-running with the same workdir reuses finished stages; an interrupted
training resumes from its newest checkpoint and an interrupted distillation from its finished
shards. A workdir of another size is refused, and so is one made with `--raw_student` when run
without it (one made without it takes the raw-data student later).
"""
import dataclasses
import json
import logging
import os
import shutil
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import gin

from padir import distill as distill_lib
from padir import files
from padir import gin_utils
from padir import pipeline
from padir import reporting
from padir import trainer

logger = logging.getLogger(__name__)

STAGES = ("corpus", "teacher", "distill", "student_raw", "student_distilled", "evaluate")
# The demo corpus: the built-in generator's sentences of at most 10 words (26 pieces with EOS),
# which a small model learns in minutes, each choice's first variant 4 times in 5
# (`DemoSize.dominant_share`).
CORPUS_MAX_WORDS = 10
MAX_TARGET_LENGTH = 32
# Sources padded to 16 or 32 pieces: most test sentences fit 16, where a CTC canvas has 31
# positions instead of 63 (each system compiles 4 shapes: 2 lengths, batch 1 and 64).
LENGTH_BUCKETS = (16, MAX_TARGET_LENGTH)
# Refinement passes each student is evaluated at.
ITERATIONS = (1, 2, 4)
DISTILL_BEAM_SIZE = 4
TRAIN_GIN = "runs/train.gin"
MINI_GIN = "experiments/builtin_mini.gin"
PADIR_GIN = "experiments/builtin_padir.gin"
# The demo's students: the aligned-canvas (CTC) model, the student with the best one-pass BLEU on
# this corpus (docs/benchmarks/log.md); `PADIR_GIN` is the mask-predict student
# (benchmarks/student_ablation.py trains it).
STUDENT_GIN_FILES = ("models/ctc_tiny.gin", "experiments/builtin_ctc.gin")
SETTINGS_FILE = "demo.json"
DISTILL_SOURCES = "distill_sources.txt"


@dataclasses.dataclass(frozen=True)
class DemoSize:
  """How big a demo run is.

  Attributes:
    corpus: corpus name; its tasks are `{corpus}_ar` / `{corpus}_padir`.
    num_train: training pairs (the teacher's and the raw student's).
    num_validation: validation pairs (the corpus has the split; the demo does not use it).
    num_test: test pairs, all evaluated (a multiple of reporting.EVAL_BATCH_SIZE).
    num_latency_sentences: test sentences timed one a call (batch-1 latency).
    num_distill_sources: fresh source sentences the teacher translates for the distilled
      student (a multiple of the distillation batch, 128, so that every batch has one shape).
    distill_shard_size: sources per distillation shard (the unit of resuming).
    teacher_steps: AR teacher training steps, in all (the AR baseline's training: not past
      its best validation BLEU; on the default corpus 2,000 steps give 70.05 greedy BLEU on
      validation against 75.17 at 1,000, the longer run memorising the training references).
    student_init_step: the teacher's step where the students start (its parameters are kept
      in `teacher_init/`).
    student_steps: training steps of each PaDIR student after its warm start. The AR baseline
      is trained to its best and stays the fair baseline; the students get the time it does
      not need (their steps are dearer: two decoder passes over a canvas twice the source).
    gin_bindings: extra bindings of every training run (after the experiment files).
    dominant_share: the corpus's `padir.corpus.realize_target` choices: each variant's first
      (register 0, the default order) with this probability; None: uniform.
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
  student_init_step: int
  student_steps: int
  gin_bindings: Tuple[str, ...] = ()
  dominant_share: Optional[float] = None

  def __post_init__(self):
    if not 0 < self.student_init_step <= self.teacher_steps or self.student_steps < 1:
      raise ValueError(f"student_init_step={self.student_init_step} must be in (0, "
                       f"teacher_steps={self.teacher_steps}] and student_steps="
                       f"{self.student_steps} >= 1")


SIZES = {
    "default": DemoSize(
        corpus="builtin_demo", num_train=10_240, num_validation=512, num_test=512,
        num_latency_sentences=64, num_distill_sources=10_240, distill_shard_size=2_560,
        # A recorded run's CPU seconds of each stage (README, "The demo").
        budgets_s={"corpus": 20, "teacher": 490, "distill": 75, "student_raw": 790,
                   "student_distilled": 650, "evaluate": 190},
        teacher_steps=1000, student_init_step=1000, student_steps=1500, dominant_share=0.8),
    "reduced": DemoSize(
        corpus="builtin_demo_reduced", num_train=256, num_validation=64, num_test=64,
        num_latency_sentences=4, num_distill_sources=256, distill_shard_size=128,
        budgets_s={"corpus": 20, "teacher": 20, "distill": 15, "student_raw": 20,
                   "student_distilled": 20, "evaluate": 60},
        teacher_steps=20, student_init_step=10, student_steps=10, dominant_share=0.8,
        gin_bindings=("BATCH_SIZE = 8", "optimizers.cosine_schedule.warmup_steps = 2")),
}


class DemoError(ValueError):
  """A workdir that cannot be used (another size), named in the message."""


# ----------------------------------------------------------------------------------------------
# Files of the workdir.


def _check_settings(workdir: str, size_name: str, size: DemoSize, raw_student: bool) -> None:
  """Writes demo.json, or checks that the workdir's has the same size. A workdir made without
  the raw-data student takes it later (`raw_student` is then recorded); one made with it is
  refused without it (its stages and results hold it)."""
  path = os.path.join(workdir, SETTINGS_FILE)
  settings = json.loads(json.dumps({"size": size_name, **dataclasses.asdict(size),
                                    "raw_student": raw_student}))
  settings.pop("budgets_s")  # Budgets are expectations, not settings.
  saved = files.read_json(path)
  if saved is None or (saved == dict(settings, raw_student=False) and raw_student):
    os.makedirs(workdir, exist_ok=True)
    files.write_json(path, settings)
  elif saved != settings:
    raise DemoError(f"--workdir {workdir} holds a demo of other settings (size "
                    f"{saved.get('size')!r}, raw_student {saved.get('raw_student')}, see "
                    f"{path}): use another --workdir")


# ----------------------------------------------------------------------------------------------
# Stages.


def prepare_corpus(size: DemoSize) -> Tuple[str, str]:
  """Registers the demo corpus's tasks and generates it if missing. Returns (AR, PaDIR) tasks."""
  from padir import data  # pylint: disable=g-import-not-at-top  (seqio only when running)
  from padir import parallel_text  # pylint: disable=g-import-not-at-top
  tasks = parallel_text.register_builtin(size.corpus, num_train=size.num_train,
                                         num_validation=size.num_validation,
                                         num_test=size.num_test, max_words=CORPUS_MAX_WORDS,
                                         dominant_share=size.dominant_share,
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
    known = [s for split in ("train", "validation", "test")
             for s in reporting.task_texts(ar_task, split)[0]]
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


# ----------------------------------------------------------------------------------------------
# Reports.


# ----------------------------------------------------------------------------------------------
# The job.


def stages_of(raw_student: bool) -> Tuple[str, ...]:
  """The stages a run has: every one of `STAGES`, `student_raw` only with `raw_student`."""
  return tuple(s for s in STAGES if raw_student or s != "student_raw")


def run(workdir: str, size_name: str = "default", command: str = "", reevaluate: bool = False,
        padir_decoder_params: Optional[Mapping[str, Any]] = None,
        raw_student: bool = False) -> Dict[str, Any]:
  """Runs (or resumes) the demo in `workdir`; returns the results (as results.json). A finished
  run returns its results unless `reevaluate` (then its last stage runs again, with
  `padir_decoder_params` added to every student's decoding options). With `raw_student`, a
  second student is trained on the original data (the distillation's effect)."""
  size = SIZES[size_name]
  workdir = os.path.abspath(workdir)
  _check_settings(workdir, size_name, size, raw_student)
  names = stages_of(raw_student)
  stages = pipeline.Stages(workdir, {stage: size.budgets_s[stage] for stage in names})
  results_path = os.path.join(workdir, reporting.RESULTS_JSON)
  if stages.all_done() and os.path.exists(results_path) and not reevaluate:
    for stage in names:
      stages.reuse(stage)
    return files.read_json(results_path)

  teacher_dir = os.path.join(workdir, "teacher")
  teacher_init_dir = os.path.join(workdir, "teacher_init")
  distill_dir = os.path.join(workdir, "distilled")
  student_dirs = {data_name: os.path.join(workdir, f"student_{data_name}")
                  for data_name in ("raw", "distilled") if f"student_{data_name}" in names}

  started = stages.start("corpus")  # Every run: it registers the tasks (generated once).
  ar_task, padir_task = prepare_corpus(size)
  stages.finish("corpus", started)

  def teacher():
    train_teacher(teacher_dir, teacher_init_dir, ar_task, size)
    return {"steps": size.teacher_steps, "students_start_at": size.student_init_step}

  stages.run("teacher", teacher)
  stages.run("distill", lambda: {"pairs": distill(
      teacher_dir, distill_sources(os.path.join(workdir, DISTILL_SOURCES), ar_task, size),
      distill_dir, size).num_examples})
  # The students start from the teacher's parameters at `student_init_step`. The raw one trains
  # on the corpus's PaDIR task, the distilled one on the task that distillation wrote as a gin
  # file (it registers the task in any process that parses it).
  init = f"trainer.train.init_checkpoint = {teacher_init_dir!r}"
  for data_name, gin_files, bindings in (
      ("raw", [*STUDENT_GIN_FILES], [init, f"MIXTURE_OR_TASK_NAME = {padir_task!r}"]),
      ("distilled", [*STUDENT_GIN_FILES, os.path.join(distill_dir, distill_lib.TASK_GIN)],
       [init])):
    if data_name not in student_dirs:
      continue
    stages.run(f"student_{data_name}", lambda g=gin_files, d=data_name, b=bindings: train(
        g, student_dirs[d], size.student_steps, size, b))

  started = stages.start("evaluate")

  def add_stages(results):
    stages.finish("evaluate", started)
    results["stages"] = stages.finished

  return reporting.evaluate_and_report(
      workdir, teacher_dir, student_dirs, ar_task, "test", command=command,
      title=f"padir demo ({size_name} size)", num_latency_sentences=size.num_latency_sentences,
      length_buckets=LENGTH_BUCKETS, before_writing=add_stages,
      student_init_step=size.student_init_step, padir_decoder_params=padir_decoder_params,
      iterations=ITERATIONS,
      extra={"size": size_name, "training": (
          f"AR (teacher): {size.teacher_steps} steps; each student: the teacher's parameters at "
          f"step {size.student_init_step} + {size.student_steps} steps of its own")})
