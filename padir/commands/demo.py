"""`padir demo`: the command line of `padir.demo`."""
import argparse
import json
import os
import shlex
import sys
from typing import Sequence

import jax

from padir import cli
from padir import demo as demo_lib
from padir import metrics as metrics_lib
from padir import reporting


USAGE = """\
padir demo [--workdir DIR] [--size default|reduced] [--raw_student] [--reevaluate]
           [--padir_decoder_params JSON]

The main job on the built-in offline corpus: trains an AR teacher, distills fresh sources with
it, trains the aligned-canvas (CTC) student on the distilled data (with --raw_student, a second
one on the original data) and evaluates AR greedy, AR beam 4 and each student at 1, 2 and 4
passes (BLEU, chrF, stutter, batch-1 latency, batch-64 throughput) into DIR/results.json,
DIR/results.md and DIR/tradeoff.png. Re-run the same command
to resume; finished stages are reused. --reevaluate evaluates a finished run again (its models
untouched), e.g. after a decoding change or with --padir_decoder_params, options of every
student's decoding (RefinementConfig fields), e.g. '{"rejecter_fraction": 0.3}'.
"""


@cli.command("demo")
def main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(prog="padir demo", usage=USAGE)
  parser.add_argument("--workdir", default="runs/demo", help="where everything goes")
  parser.add_argument("--size", default="default", choices=sorted(demo_lib.SIZES),
                      help="default: ~10 minutes on 2 CPU cores; reduced: a quick smoke test")
  parser.add_argument("--raw_student", action="store_true",
                      help="also train the student on the original (undistilled) data, to see "
                           "what distillation buys (~8 more minutes)")
  parser.add_argument("--reevaluate", action="store_true",
                      help="evaluate a finished run again (the trained models are kept)")
  parser.add_argument("--padir_decoder_params", type=json.loads, default=None,
                      help="JSON decoding options of every student (RefinementConfig fields)")
  args = parser.parse_args(argv)
  metrics_lib.log_to_stderr()
  if jax.config.jax_compilation_cache_dir is None:  # Re-runs share compiled programs.
    jax.config.update("jax_compilation_cache_dir", os.path.join(os.path.abspath(args.workdir),
                                                                "jax_cache"))
  command = " ".join(["padir", "demo", *map(shlex.quote, argv)])
  results = demo_lib.run(args.workdir, args.size, command, reevaluate=args.reevaluate,
                         padir_decoder_params=args.padir_decoder_params,
                         raw_student=args.raw_student)
  print(reporting.systems_markdown(results))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
