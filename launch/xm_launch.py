"""Launches a sweep through XManager: one training job per training run, and beside each, one
`padir eval --watch` job per trial that evaluates the run's checkpoints as they appear.

  python -m launch.xm_launch --sweep sweeps/wmt14_ablations.py --platform tpu \
    --root /gcs/BUCKET/padir/sweeps/wmt14_ablations [--train_accelerator tpu_v4=4x4] \
    [--eval_accelerator tpu_v4=2x2x1] [--data_dir /gcs/BUCKET/padir/data] \
    [--tfds_data_dir gs://BUCKET/tfds] [--dry_run] [--gin.NAME=VALUE ...]

The commands are those `launch.local` runs (same sweep expansion, same directories under
--root); --root must be a file system path every job sees, e.g. Vertex AI's Cloud Storage
mount `/gcs/BUCKET/...`. Each job is its own work unit (an evaluator must outlive its training
to evaluate the final checkpoint). TPU training runs `padir train --multihost` (one process per
host, `jax.distributed` finds the others), as does GPU training over several hosts (`replicas`).

`--dry_run` prints every job's command and requirements and contacts no service. Launching
builds one container of this checkout (xmanager's Vertex AI executor: needs `gcloud` auth and a
GCP project). Needs the `xm` extra: pip install -e '.[xm]'.
"""
import argparse
import dataclasses
import os
import posixpath
import shlex
import sys
from importlib import metadata
from typing import Dict, List, Mapping, Optional, Sequence

from launch import sweeps

try:
  from xmanager import xm  # pylint: disable=g-import-not-at-top
except ImportError as _error:
  xm = None
  _XM_IMPORT_ERROR = _error

# platform -> (default training accelerator, default evaluation accelerator, jax extra)
PLATFORMS = {
    "tpu": ("tpu_v4=2x2x2", "tpu_v4=2x2x1", "tpu"),
    "gpu": ("a100=8", "a100=1", "cuda12"),
}
BASE_IMAGE = "python:3.11"
WORKDIR = "/workdir"
WATCH_TIMEOUT = 4 * 3600  # seconds an evaluator waits for its run to start or checkpoint


class LaunchError(ValueError):
  """A launch setting that cannot work; the message names the flag."""


def require_xmanager():
  """The `xmanager.xm` module, or an error naming the extra that installs it."""
  if xm is None:
    raise LaunchError(f"launch.xm_launch needs the xmanager package ({_XM_IMPORT_ERROR}); "
                      "install the `xm` extra: pip install -e '.[xm]'")
  return xm


@dataclasses.dataclass(frozen=True)
class JobSpec:
  """One job: what it runs, on what, for which run or trial."""
  kind: str  # "train" or "eval"
  title: str  # the run's or the trial's name
  args: List[str]  # the container's command line
  requirements: "xm.JobRequirements"
  env: Mapping[str, str]


def requirements(spec: str, platform: str) -> "xm.JobRequirements":
  """`NAME=QUANTITY` (xm.JobRequirements' keyword form, e.g. tpu_v4=2x2x2, a100=8) as
  requirements, checked against the platform."""
  xm_module = require_xmanager()
  name, sep, quantity = spec.partition("=")
  if not sep:
    raise LaunchError(f"accelerator {spec!r}: expected NAME=QUANTITY, e.g. tpu_v4=2x2x2, a100=8")
  try:
    result = xm_module.JobRequirements(**{name.strip(): quantity.strip()})
  except (KeyError, ValueError) as e:
    raise LaunchError(f"accelerator {spec!r}: {e}") from e
  kinds = xm_module.TpuType if platform == "tpu" else xm_module.GpuType
  if result.accelerator not in kinds:
    raise LaunchError(f"accelerator {spec!r} is not a {platform.upper()} "
                      f"(one of {', '.join(t.name.lower() for t in kinds)})")
  return result


def build_jobs(sweep: sweeps.Sweep, root: str, platform: str, train_accelerator: str,
               eval_accelerator: str, env: Mapping[str, str],
               extra_flags: Sequence[str] = ()) -> List[JobSpec]:
  """The jobs of `sweep`: each training run followed by its trials' evaluators."""
  train_req = requirements(train_accelerator, platform)
  eval_req = requirements(eval_accelerator, platform)
  multihost = platform == "tpu" or train_req.replicas > 1
  jobs = []
  for run in sweep.runs():
    model_dir = posixpath.join(root, run.name, "model")
    train_args = sweep.train_args(run, model_dir, extra_flags)
    jobs.append(JobSpec("train", run.name, ["padir", "train", *train_args,
                                            *(["--multihost"] if multihost else [])],
                        train_req, dict(env)))
    for trial in sweep.trials(run):
      output_dir = posixpath.join(root, run.name, "eval", trial.decode_name)
      eval_args = sweep.eval_args(trial, model_dir, output_dir, watch=True)
      # `--watch` waits for the run to start (the evaluator may start first), then evaluates
      # each checkpoint until the final one.
      jobs.append(JobSpec("eval", trial.name,
                          ["padir", "eval", *eval_args, f"--watch_timeout={WATCH_TIMEOUT}"],
                          eval_req, dict(env)))
  return jobs


def format_jobs(sweep: sweeps.Sweep, jobs: Sequence[JobSpec]) -> str:
  """The dry run's listing: every job's requirements, environment and command line."""
  runs = sum(job.kind == "train" for job in jobs)
  lines = [f"sweep {sweep.name}: {len(jobs)} jobs ({runs} train, {len(jobs) - runs} eval)"]
  for i, job in enumerate(jobs, start=1):
    lines += [f"[{i}] {job.kind} {job.title}",
              f"  requirements: {job.requirements!r}",
              *([f"  env: {' '.join(f'{k}={v}' for k, v in job.env.items())}"]
                if job.env else []),
              f"  command: {shlex.join(job.args)}"]
  return "\n".join(lines)


def docker_instructions(platform: str, checkout: str) -> List[str]:
  """Copies this checkout into the image and installs it from the lock, with JAX for the
  platform at the installed version."""
  extra = PLATFORMS[platform][2]
  return [f"COPY {os.path.basename(checkout)}/ {WORKDIR}",
          f"WORKDIR {WORKDIR}",
          "RUN python -m pip install -r requirements.lock -e . "
          f"'jax[{extra}]=={metadata.version('jax')}'"]


def add_jobs(experiment, executable, jobs: Sequence[JobSpec], make_executor) -> None:
  """Adds each job to `experiment` as its own work unit (`make_executor(requirements)` makes
  the executor, e.g. `xm_local.Vertex`)."""
  xm_module = require_xmanager()
  for job in jobs:
    experiment.add(xm_module.Job(executable=executable,
                                 executor=make_executor(job.requirements),
                                 name=job.kind, args=job.args, env_vars=dict(job.env)))


def launch(sweep: sweeps.Sweep, jobs: Sequence[JobSpec], platform: str, base_image: str,
           checkout: str) -> None:
  """Packages `checkout` into one container and launches `jobs` on Vertex AI."""
  xm_module = require_xmanager()
  from xmanager import xm_local  # pylint: disable=g-import-not-at-top  (cloud clients)
  with xm_local.create_experiment(experiment_title=sweep.name) as experiment:
    [executable] = experiment.package([xm_module.python_container(
        executor_spec=xm_local.Vertex.Spec(), path=checkout, base_image=base_image,
        docker_instructions=docker_instructions(platform, checkout),
        entrypoint=xm_module.CommandList(['exec "$@"']))])
    add_jobs(experiment, executable, jobs,
             lambda requirements: xm_local.Vertex(requirements=requirements))


def _env(data_dir: Optional[str], tfds_data_dir: Optional[str]) -> Dict[str, str]:
  env = {}
  if data_dir:
    env["PADIR_DATA_DIR"] = data_dir
  if tfds_data_dir:
    env["TFDS_DATA_DIR"] = tfds_data_dir
  return env


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m launch.xm_launch", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--sweep", required=True, help="a sweep file (as given or under gin/)")
  parser.add_argument("--platform", required=True, choices=sorted(PLATFORMS))
  parser.add_argument("--root", required=True,
                      help="the sweep's directory, seen by every job (e.g. /gcs/BUCKET/...)")
  parser.add_argument("--train_accelerator", help="NAME=QUANTITY of each training job "
                      "(default: tpu_v4=2x2x2 on tpu, a100=8 on gpu)")
  parser.add_argument("--eval_accelerator", help="NAME=QUANTITY of each evaluation job "
                      "(default: tpu_v4=2x2x1 on tpu, a100=1 on gpu)")
  parser.add_argument("--data_dir", help="$PADIR_DATA_DIR of the jobs (vocabularies, corpora)")
  parser.add_argument("--tfds_data_dir", help="$TFDS_DATA_DIR of the jobs")
  parser.add_argument("--base_image", default=BASE_IMAGE)
  parser.add_argument("--dry_run", action="store_true",
                      help="print the jobs and their requirements; contact no service")
  args, extra = sweeps.parse_args_and_gin_flags(parser, argv)
  train_default, eval_default, _ = PLATFORMS[args.platform]
  try:
    sweep = sweeps.load(args.sweep)
    jobs = build_jobs(sweep, args.root, args.platform, args.train_accelerator or train_default,
                      args.eval_accelerator or eval_default,
                      _env(args.data_dir, args.tfds_data_dir), extra)
  except (sweeps.SweepError, LaunchError) as e:
    print(f"launch.xm_launch: error: {e}", file=sys.stderr)
    return 2
  print(format_jobs(sweep, jobs))
  if not args.dry_run:
    launch(sweep, jobs, args.platform, args.base_image, sweeps.REPO)
  return 0


if __name__ == "__main__":
  sys.exit(main())
