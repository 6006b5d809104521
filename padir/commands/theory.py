"""`padir theory`: the command line of `padir.theory`."""
import argparse
import os
import sys

from padir import cli
from padir import theory


@cli.command("theory")
def main(argv=None) -> int:
  """Entry point of `padir theory`."""
  parser = argparse.ArgumentParser(prog="padir theory",
                                   description=theory.__doc__.split("\n\n")[0])
  parser.add_argument("--experiment", required=True, choices=theory.EXPERIMENTS + ("all",))
  parser.add_argument("--output", required=True, help="directory for the json/png/md files")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--small", action="store_true", help="tiny sizes (seconds; for tests)")
  args = parser.parse_args(argv)
  os.makedirs(args.output, exist_ok=True)
  names = theory.EXPERIMENTS if args.experiment == "all" else (args.experiment,)
  runs = []
  for name in names:
    runs.append(theory.run_experiment(name, args.output, args.seed, args.small))
    print(f"{name} ({runs[-1]['seconds']:.1f} s): {runs[-1]['headline']}", flush=True)
  if args.experiment == "all":
    with open(os.path.join(args.output, "summary.md"), "w") as f:
      f.write(theory.summary(runs, args.seed, args.small))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
