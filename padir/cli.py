"""`padir` console entry point: one command, subcommands dispatched to their modules.

Each subcommand is `padir/commands/NAME.py`: its flags and `main(argv) -> int` (decorated with
`command`, the one error handler), calling a library module (`padir.trainer`, `padir.evaluation`,
...) that has no command line of its own. Modules are imported only when their subcommand runs,
so `padir --help` is instant and never imports seqio/TensorFlow.
"""
import functools
import importlib
import logging
import signal
import sys
from typing import Callable, Optional, Sequence

from padir import errors
from padir import quiet

SUBCOMMANDS = {
    "train": ("padir.commands.train", "Train a model (T5X-style --gin_file / --gin.NAME=VALUE flags)."),
    "eval": ("padir.commands.eval", "Evaluate checkpoints on a task split (sacreBLEU, chrF, speed)."),
    "infer": ("padir.commands.infer", "Translate a file (or stdin) with a checkpoint."),
    "distill": ("padir.commands.distill", "Distill a training split with an AR teacher into a TSV task."),
    "average": ("padir.commands.average", "Average a run's last checkpoints into one (fairseq's)."),
    "convert": ("padir.commands.convert", "Convert a T5X / Hugging Face T5 checkpoint (params + gin)."),
    "vocab": ("padir.commands.vocab", "Train a joint SentencePiece vocabulary (PAD=0 EOS=1 UNK=2 BOS=3)."),
    "demo": ("padir.commands.demo", "Teacher -> distillation -> PaDIR students -> evaluation, offline."),
    "theory": ("padir.commands.theory", "The paper's theory as synthetic experiments."),
}


# The exception classes live in `padir.errors` (the bottom layer); re-exported here for callers
# that name them `cli.UserError`, `cli.UsageError`, `cli.USER_ERRORS`.
UserError = errors.UserError
UsageError = errors.UsageError
USER_ERRORS = errors.USER_ERRORS


def command(name: str) -> Callable:
  """Decorates a subcommand's `main(argv) -> int`: a user error (`USER_ERRORS`) ends it with
  `padir NAME: error: MESSAGE` on stderr and status 1 (2 for a `UsageError`), the traceback in
  the debug log. The one error handler of every `padir` command."""
  def decorate(main: Callable[[Optional[Sequence[str]]], int]) -> Callable:
    @functools.wraps(main)
    def run(argv: Optional[Sequence[str]] = None) -> int:
      try:
        return main(argv)
      except USER_ERRORS as e:
        logging.getLogger(main.__module__).debug("padir %s failed", name, exc_info=True)
        print(f"padir {name}: error: {e}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1
    return run
  return decorate


def usage() -> str:
  lines = ["usage: padir <command> [flags]", "", "commands:"]
  lines += [f"  {name:<8} {doc}" for name, (_, doc) in SUBCOMMANDS.items()]
  lines += ["", "`padir <command> --help` shows a command's flags."]
  return "\n".join(lines)


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] in ("-h", "--help", "help"):
    print(usage())
    return 0
  name, rest = argv[0], argv[1:]
  if name not in SUBCOMMANDS:
    print(f"padir: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
    return 2
  quiet.install()  # TensorFlow's start-up notices off the command's output (padir/quiet.py).
  module = importlib.import_module(SUBCOMMANDS[name][0])
  try:
    return int(module.main(rest) or 0)
  except KeyboardInterrupt:  # `train` handles SIGINT itself once training has started.
    print(f"padir {name}: interrupted (train, eval and distill resume when run again)",
          file=sys.stderr)
    return 128 + signal.SIGINT


if __name__ == "__main__":
  sys.exit(main())
