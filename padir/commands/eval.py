"""`padir eval`: the command line of `padir.evaluation`."""
import argparse
import sys
from typing import Sequence

from padir import cli
from padir import evaluation
from padir import gin_utils
from padir import metrics as metrics_lib


USAGE = """\
padir eval --checkpoint_dir DIR --task NAME --split SPLIT --output DIR
           [--checkpoint_step N|latest|all] [--watch] [--gin_file F ...] [--gin.NAME=VALUE ...]

Decodes a task split with checkpoints of a `padir train` run and writes results.json, results.md
and the hypotheses into --output. Re-running resumes: evaluated steps are skipped.
"""


@cli.command("eval")
def main(argv: Sequence[str]) -> int:
  gin_files, gin_bindings, rest = gin_utils.parse_gin_flags(argv)
  parser = argparse.ArgumentParser(prog="padir eval", usage=USAGE)
  parser.add_argument("--checkpoint_dir", required=True, help="a `padir train` --model_dir")
  parser.add_argument("--checkpoint_step", default="latest", help="N, latest or all")
  parser.add_argument("--task", required=True, help="a registered seqio task, e.g. builtin_padir")
  parser.add_argument("--split", default="test")
  parser.add_argument("--output", required=True, help="results directory")
  parser.add_argument("--module", action="append", default=None,
                      help="module registering the task (repeatable; default tasks.builtin)")
  parser.add_argument("--max_examples", type=int, default=None)
  parser.add_argument("--watch", action="store_true",
                      help="evaluate each new checkpoint until training has finished")
  parser.add_argument("--poll_seconds", type=float, default=60.0)
  parser.add_argument("--watch_timeout", type=float, default=3600.0,
                      help="with --watch: give up after this long without a new checkpoint")
  args = parser.parse_args(rest)
  metrics_lib.log_to_stderr()
  if args.watch:  # A missing run is a TimeoutError, an OSError.
    evaluation.wait_for_run(args.checkpoint_dir, args.poll_seconds, args.watch_timeout)
  job = evaluation.EvalJob(args.checkpoint_dir, args.task, args.split, args.output, gin_files,
                gin_bindings, args.module or ["tasks.builtin"], args.max_examples,
                command=" ".join(["padir", "eval", *argv]), progress=True)
  if args.watch:
    summary = job.watch(args.poll_seconds, args.watch_timeout)
  else:
    summary = job.run(args.checkpoint_step)
  print(evaluation.eval_markdown(summary))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
