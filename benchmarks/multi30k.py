"""Multi30k En->De, the whole pipeline on the CPU budget: AR teacher (60 minutes of training) ->
distillation of train -> PaDIR students on distilled and raw data (each started from the
teacher's parameters) -> every system on test_2016_flickr, with speed.

  python -m benchmarks.multi30k [--root runs/multi30k]     # ~3.5 hours on 2 CPU cores

Stages (`padir.pipeline`: ROOT/stages.json records the finished ones, with each one's command):
  teacher            padir train  models/ar_SIZE.gin runs/train.gin experiments/multi30k_ar.gin
  distill            padir distill of the training split (--distill_method greedy: ~5 minutes;
                     beam, 4 beams as the paper, ~4x that)
  student_distilled  padir train  models/padir_SIZE.gin runs/train.gin
                     experiments/multi30k_padir.gin + the distillation's task.gin
  student_raw        the same on the original training data
  student_ctc_distilled  the aligned-canvas (CTC) student: models/ctc_SIZE.gin
                     experiments/multi30k_ctc.gin, on the distilled data (ctc_raw: original)
  (--students picks which; default distilled, raw, ctc_distilled)
  evaluate           python -m benchmarks.multi30k_report (ROOT/results/: results.json,
                     results.md, tradeoff.png)
Each stage is its own process. Re-running resumes: a finished stage is skipped, an interrupted
training resumes from its newest checkpoint with what is left of its wall-time budget
(`trainer.train.max_train_seconds`, summed over resumes), an interrupted distillation from its
finished shards. A ROOT of the earlier shell script (`STAGE.done` markers) is continued: its
markers count as finished stages. Data: ../shared/data/multi30k (or $PADIR_MULTI30K_DIR).

Training runs on a data-parallel mesh over 2 CPU devices (JAX_NUM_CPU_DEVICES, unless set):
XLA's CPU runtime keeps both threads busy for only ~15 % of a step on one device; two devices
train the AR teacher 1.33x faster (docs/benchmarks/log.md, "Training throughput"). The JAX compilation
cache is ROOT/jax_cache unless JAX_COMPILATION_CACHE_DIR is set.
GPU setting: --model_size small --extra_gin experiments/multi30k_gpu.gin --distill_method beam
(6+6 layers, d_model 512, bfloat16, larger batches), with the budgets of your machine.
"""
import argparse
import dataclasses
import os
import shlex
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

from padir import metrics as metrics_lib
from padir import pipeline

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PADIR = [sys.executable, "-m", "padir.cli"]
# Expected wall seconds of the stages besides the trainings' budgets (2 quiet CPU cores).
DISTILL_SECONDS = {"greedy": 300, "beam": 1200}
EVALUATE_SECONDS = 660
STUDENTS = ("distilled", "raw", "ctc_distilled", "ctc_raw")


@dataclasses.dataclass(frozen=True)
class Stage:
  name: str
  command: List[str]
  budget_s: float


def plan(args: argparse.Namespace) -> List[Stage]:
  """The pipeline's stages and their commands (run from the repository root)."""
  root = args.root
  extra = [f"--gin_file={args.extra_gin}"] if args.extra_gin else []

  def train(seconds: float, *flags: str) -> List[str]:
    return [*PADIR, "train", *flags, *extra, f"--gin.trainer.train.max_train_seconds={seconds}"]

  init = f"--gin.trainer.train.init_checkpoint='{os.path.join(root, 'teacher')}'"
  distilled_task = f"--gin_file={os.path.join(root, 'distilled', 'task.gin')}"
  raw_task = "--gin.MIXTURE_OR_TASK_NAME='multi30k_en_de_padir'"
  recipes = {  # name: the student's gin files and task.
      "distilled": (f"--gin_file=models/padir_{args.model_size}.gin",
                    "--gin_file=experiments/multi30k_padir.gin", distilled_task),
      "raw": (f"--gin_file=models/padir_{args.model_size}.gin",
              "--gin_file=experiments/multi30k_padir.gin", raw_task),
      "ctc_distilled": (f"--gin_file=models/ctc_{args.model_size}.gin",
                        "--gin_file=experiments/multi30k_ctc.gin", distilled_task),
      "ctc_raw": (f"--gin_file=models/ctc_{args.model_size}.gin",
                  "--gin_file=experiments/multi30k_ctc.gin", raw_task),
  }
  students = []
  for name in args.students:
    model_gin, experiment, task = recipes[name]
    students.append(Stage(f"student_{name}", train(
        args.student_seconds, model_gin, "--gin_file=runs/train.gin", experiment, init, task,
        f"--model_dir={os.path.join(root, f'student_{name}')}"), args.student_seconds))
  return [
      Stage("teacher", train(
          args.teacher_seconds, f"--gin_file=models/ar_{args.model_size}.gin",
          "--gin_file=runs/train.gin", "--gin_file=experiments/multi30k_ar.gin",
          f"--model_dir={os.path.join(root, 'teacher')}"), args.teacher_seconds),
      Stage("distill", [
          *PADIR, "distill", "--teacher_dir", os.path.join(root, "teacher"),
          "--task", "multi30k_en_de_ar", "--module", "tasks.multi30k", "--split", "train",
          "--output", os.path.join(root, "distilled"), "--decode_method", args.distill_method,
          "--beam_size", "4", "--name", "multi30k_distilled"],
            DISTILL_SECONDS[args.distill_method]),
      # The distilled task's validation split is Multi30k's, with the real references.
      *students,
      Stage("evaluate", [sys.executable, "-m", "benchmarks.multi30k_report", "--root", root,
                         "--students", ",".join(args.students)], EVALUATE_SECONDS),
  ]


def adopt_markers(root: str, stages: pipeline.Stages) -> None:
  """Records the stages that benchmarks/multi30k.sh (the earlier shell script) marked done with
  ROOT/STAGE.done as finished (wall time unknown: 0)."""
  for name in stages.names:
    marker = os.path.join(root, f"{name}.done")
    if not stages.done(name) and os.path.exists(marker):
      started = stages.start(name)
      stages.finish(name, started, marker=marker)


class StageError(RuntimeError):
  """A stage's command failed; its name, command and exit status are in the message."""


def run_stage(stage: Stage, env: Dict[str, str]) -> Dict[str, str]:
  """Runs the stage's command; returns its record (the command line)."""
  line = " ".join(map(shlex.quote, stage.command))
  status = subprocess.call(stage.command, cwd=REPO, env=env)
  if status != 0:
    raise StageError(f"stage {stage.name} failed (exit status {status}): {line}")
  return {"command": line}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.multi30k",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--root", default="runs/multi30k", help="the pipeline's workdir")
  parser.add_argument("--teacher_seconds", type=float, default=3600,
                      help="the teacher's training wall-time budget")
  parser.add_argument("--student_seconds", type=float, default=3600,
                      help="each student's training wall-time budget")
  parser.add_argument("--model_size", default="tiny", help="models/{ar,padir}_SIZE.gin")
  parser.add_argument("--distill_method", choices=sorted(DISTILL_SECONDS), default="greedy")
  parser.add_argument("--students", type=lambda text: text.split(","),
                      default=["distilled", "raw", "ctc_distilled"],
                      help="students to train, comma-separated, of distilled, raw (mask-predict "
                      "on the distilled / original data), ctc_distilled, ctc_raw (the "
                      "aligned-canvas student)")
  parser.add_argument("--extra_gin", default=None, help="a gin file added to every training")
  args = parser.parse_args(argv)
  unknown = sorted(set(args.students) - set(STUDENTS))
  if unknown:
    parser.error(f"--students: unknown {unknown}; expected some of {list(STUDENTS)}")
  args.root = os.path.abspath(args.root)
  return args


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(argv)
  metrics_lib.log_to_stderr()
  stages_plan = plan(args)
  stages = pipeline.Stages(args.root, {s.name: s.budget_s for s in stages_plan})
  adopt_markers(args.root, stages)
  env = dict(os.environ)
  env.setdefault("JAX_NUM_CPU_DEVICES", "2")
  env.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(args.root, "jax_cache"))
  try:
    for stage in stages_plan:
      stages.run(stage.name, lambda stage=stage: run_stage(stage, env))
  except StageError as e:
    print(f"multi30k: error: {e}; run the same command again to resume", file=sys.stderr)
    return 1
  print(f"multi30k: done; results in {os.path.join(args.root, 'results')}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
