"""`padir average`: the command line of `padir.average`."""
import argparse
import sys
from typing import Optional, Sequence

from padir import average as average_lib
from padir import cli


@cli.command("average")
def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="padir average",
                                   description=average_lib.__doc__.split("\n\n")[0])
  parser.add_argument("--model_dir", required=True, help="a `padir train` --model_dir")
  parser.add_argument("--output", required=True, metavar="DIR", help="a new directory")
  which = parser.add_mutually_exclusive_group()
  which.add_argument("--last", type=int, default=None, help="average the newest N checkpoints")
  which.add_argument("--steps", default=None,
                     help="comma-separated steps to average, e.g. 1250,1500,1578")
  args = parser.parse_args(argv)
  if args.steps is None and args.last is None:
    parser.error("give --last N or --steps S1,S2,...")
  steps = [int(s) for s in args.steps.split(",")] if args.steps else None
  chosen = average_lib.average(args.model_dir, args.output, args.last, steps)
  print(f"wrote {args.output}: the mean of steps {chosen} of {args.model_dir}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
