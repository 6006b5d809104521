"""The last stage of benchmarks/multi30k.py: every system of a pipeline run on one test split.

  python -m benchmarks.multi30k_report --root runs/multi30k

Reads the AR teacher (ROOT/teacher) and the PaDIR students (ROOT/student_raw,
ROOT/student_distilled) and evaluates them as `padir demo` does
(`padir.reporting.evaluate_and_report`: AR greedy, AR beam 4, each student at 1/2/4/8
iterations; BLEU, chrF, stutter, batch-1 latency and its ratio to AR greedy, batch-64
throughput) into ROOT/results/{results.json, results.md, tradeoff.png, hypotheses/} (or
--output). `--students distilled` evaluates one student;
`--padir_decoder_params` changes how every student decodes, e.g. '{"num_canvas_sizes": 1}'.
"""
import argparse
import importlib
import json
import os
import shlex
import sys
from typing import Sequence


from padir import reporting
from padir import metrics as metrics_lib


def main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.multi30k_report")
  parser.add_argument("--root", default="runs/multi30k", help="benchmarks/multi30k.py's --root")
  parser.add_argument("--task", default="multi30k_en_de_ar")
  parser.add_argument("--module", default="tasks.multi30k", help="module registering --task")
  parser.add_argument("--split", default="test_2016_flickr")
  parser.add_argument("--latency_sentences", type=int, default=100,
                      help="test sentences timed one a call (batch-1 latency)")
  parser.add_argument("--students", default="raw,distilled",
                      help="which of ROOT/student_{NAME} to evaluate, comma-separated")
  parser.add_argument("--padir_decoder_params", type=json.loads, default=None,
                      help="JSON decoding options of every student, e.g. "
                      "'{\"top_k_lengths\": 5}' (RefinementConfig fields)")
  parser.add_argument("--iterations", default=",".join(map(str, reporting.ITERATIONS)),
                      help="the students' numbers of passes, comma-separated")
  parser.add_argument("--output", default=None, help="default: ROOT/results")
  args = parser.parse_args(argv)
  metrics_lib.log_to_stderr()
  importlib.import_module(args.module)
  students = {name: os.path.join(args.root, f"student_{name}")
              for name in args.students.split(",")}
  for model_dir in [os.path.join(args.root, "teacher"), *students.values()]:
    if not os.path.isdir(model_dir):
      print(f"multi30k_report: error: {model_dir} does not exist: run "
            f"`python -m benchmarks.multi30k --root {args.root}` first", file=sys.stderr)
      return 1
  output = args.output or os.path.join(args.root, "results")
  os.makedirs(output, exist_ok=True)
  results = reporting.evaluate_and_report(
      output, os.path.join(args.root, "teacher"), students, args.task, args.split,
      command=" ".join(["python -m benchmarks.multi30k_report", *map(shlex.quote, argv)]),
      title=f"{args.task} {args.split}", num_latency_sentences=args.latency_sentences,
      padir_decoder_params=args.padir_decoder_params,
      iterations=[int(k) for k in args.iterations.split(",")])
  print(reporting.systems_markdown(results))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
