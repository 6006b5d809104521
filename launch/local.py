"""Runs a sweep on this machine: every training run, every trial's evaluation, one summary.

  python -m launch.local --sweep sweeps/builtin_decoding.py --root runs/sweeps/decoding \
    [--parallel N] [--dry_run] [--gin.NAME=VALUE ...]

Layout under --root (absolute paths in every command, so each can be re-run by hand):
  RUN/model/                  `padir train --model_dir` of one training point (RUN = its name)
  RUN/train.log               its output
  RUN/run.json                its `padir train` arguments (a re-run with others is refused)
  RUN/eval/DECODE/            `padir eval --output` of one trial, with eval.log and trial.json
                              (metrics, speed, settings, commands)
  summary.md, summary.csv     one row per trial; plots/PARAMETER.png, one per swept parameter

Re-running the same command skips the trials whose trial.json exists and resumes the others
(training resumes from its newest checkpoint). `--parallel N` runs N training runs at once, each
in a worker process that then evaluates its trials (decode speeds are then measured on a shared
machine: use 1 for speed comparisons). `--gin.NAME=VALUE` flags are added to every training
command. Exit status 1 when a trial failed (its row says where its log is).
"""
import argparse
import concurrent.futures
import dataclasses
import multiprocessing
import os
import shlex
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence

from launch import summary as summary_lib
from launch import sweeps
from launch import trial as trial_lib
from padir import files


def build_plans(sweep: sweeps.Sweep, root: str, extra_flags: Sequence[str] = ()
                ) -> List[trial_lib.RunPlan]:
  """One RunPlan per training run of `sweep`, with all its trials."""
  plans = []
  for run in sweep.runs():
    model_dir = os.path.join(root, run.name, "model")
    train_args = sweep.train_args(run, model_dir, extra_flags)
    evals = []
    for trial in sweep.trials(run):
      output_dir = os.path.join(root, run.name, "eval", trial.decode_name)
      eval_args = sweep.eval_args(trial, model_dir, output_dir)
      evals.append(trial_lib.EvalPlan(
          name=trial.name, output_dir=output_dir, eval_args=eval_args,
          gin_bindings=[f"{s.name} = {s.gin_value()}" for s in sweep.eval_settings(trial)],
          record={"trial": trial.name, "run": run.name,
                  "settings": sweeps.describe(trial.settings),
                  "commands": {"train": shlex.join(["padir", "train", *train_args]),
                               "eval": shlex.join(["padir", "eval", *eval_args])}}))
    plans.append(trial_lib.RunPlan(
        name=run.name, model_dir=model_dir, train_args=train_args, evals=evals,
        eval_task=sweep.eval_task, eval_split=sweep.eval_split,
        task_modules=list(sweep.task_modules)))
  return plans


def check_runs(plans: Sequence[trial_lib.RunPlan]) -> None:
  """Refuses a root whose runs were started with other `padir train` arguments."""
  for plan in plans:
    path = os.path.join(os.path.dirname(plan.model_dir), trial_lib.RUN_FILE)
    if os.path.exists(path):
      recorded = files.read_json(path).get("train_args")
      if recorded != plan.train_args:
        raise ValueError(f"{path}: run {plan.name} was started with other arguments "
                         f"({shlex.join(recorded or [])}); use another --root")


def pending(plans: Sequence[trial_lib.RunPlan]) -> List[trial_lib.RunPlan]:
  """The plans with at least one unfinished trial, keeping only those trials."""
  out = []
  for plan in plans:
    todo = [t for t in plan.evals if not trial_lib.is_done(t)]
    if todo:
      out.append(dataclasses.replace(plan, evals=todo))
  return out


def execute(todo: Sequence[trial_lib.RunPlan], parallel: int,
            run_fn: Callable[[trial_lib.RunPlan], List[Dict[str, Any]]] = trial_lib.run_group
            ) -> Dict[str, Dict[str, Any]]:
  """Runs `run_fn(plan)` for each plan in `parallel` worker processes; returns the records by
  trial."""
  results = {}
  context = multiprocessing.get_context("spawn")
  with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, min(parallel, len(todo))),
                                              mp_context=context) as pool:
    futures = {}
    for plan in todo:
      futures[pool.submit(run_fn, plan)] = plan
      print(f"queued {plan.name}: {len(plan.evals)} trial(s), log "
            f"{os.path.join(os.path.dirname(plan.model_dir), trial_lib.TRAIN_LOG)}", flush=True)
    try:
      for future in concurrent.futures.as_completed(futures):
        plan = futures[future]
        try:
          records = future.result()
        except Exception as e:  # pylint: disable=broad-except  (a worker died: report, go on)
          print(f"{plan.name}: the worker died: {e!r}", flush=True)
          records = [trial_lib.failure(t, f"worker died: {e!r}") for t in plan.evals]
        results.update({r["trial"]: r for r in records})
    except KeyboardInterrupt:
      pool.shutdown(wait=True, cancel_futures=True)
      raise
  return results


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m launch.local", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--sweep", required=True, help="a sweep file (as given or under gin/)")
  parser.add_argument("--root", required=True, help="the sweep's directory")
  parser.add_argument("--parallel", type=int, default=1, help="training runs at once")
  parser.add_argument("--dry_run", action="store_true",
                      help="print the commands of the unfinished trials and stop")
  args, extra = sweeps.parse_args_and_gin_flags(parser, argv)
  root = os.path.abspath(args.root)
  try:
    sweep = sweeps.load(args.sweep)
    plans = build_plans(sweep, root, extra)
    check_runs(plans)
    todo = pending(plans)
  except (sweeps.SweepError, ValueError, OSError) as e:
    print(f"launch.local: error: {e}", file=sys.stderr)
    return 2
  trials = sum(len(p.evals) for p in plans)
  print(f"sweep {sweep.name}: {trials} trial(s) over {len(plans)} training run(s); "
        f"{sum(len(p.evals) for p in todo)} to run", flush=True)
  if args.dry_run:
    for plan in todo:
      for t in plan.evals:
        print(f"{t.name}\n  {t.record['commands']['train']}\n  {t.record['commands']['eval']}")
    return 0
  ran = execute(todo, args.parallel) if todo else {}
  records = [trial_lib.load_record(t) if trial_lib.is_done(t)
             else ran.get(t.name, trial_lib.failure(t, "not run"))
             for p in plans for t in p.evals]
  command = shlex.join(["python", "-m", "launch.local", *(argv if argv is not None
                                                           else sys.argv[1:])])
  paths = summary_lib.write(root, sweep, records, command)
  print(f"summary: {', '.join(paths)}")
  return 0 if all(r.get("status") == "done" for r in records) else 1


if __name__ == "__main__":
  sys.exit(main())
