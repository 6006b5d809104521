"""Batch-1 latency of trained systems side by side: each `--system NAME=MODEL_DIR` (optionally
`NAME=MODEL_DIR=JSON`, the decoder params of its calls), the calls interleaved.

  python -m benchmarks.latency --task multi30k_en_de_ar --module tasks.multi30k \
      --split test_2016_flickr --system 'ar_greedy=runs/m30k/teacher={"decode_method": "greedy"}' \
      --system 'ctc@1=runs/m30k/student_ctc750={"num_decode_iterations": 1, "blank_penalty": 2.0}'

Protocol (`padir.timing.interleaved_latency_ms`): batch 1, the translate path (text -> text);
one untimed call of every system first; then for each of the first --sentences sources, every
system translated --repeats times in turn, the fastest call kept; the median over sentences.
The speed column is the first system's latency over each one's. Writes OUTPUT/latency.json and
OUTPUT/latency.md (machine, date, load, command). Time on an idle machine.
"""
import argparse
import importlib
import json
import sys
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

from padir import reporting
from padir import timing
from padir import translator as translator_lib


def one_a_call(model_dir: str) -> translator_lib.Translator:
  """The run's translator at batch 1 (one sentence a call)."""
  return reporting.one_a_call(translator_lib.Translator.from_checkpoint(model_dir))


def interleaved_report(prog: str, argv: Optional[Sequence[str]],
                       calls: Mapping[str, Callable[[str], Any]], sources: Sequence[str],
                       repeats: int) -> Dict[str, Any]:
  """`timing.interleaved_latency_ms` of `calls` over `sources`, as a report: command, date,
  machine, load average before and after, sentences, repeats, results."""
  load = timing.load_average()
  results = timing.interleaved_latency_ms(calls, sources, repeats)
  return {"command": " ".join([f"python -m {prog}", *(sys.argv[1:] if argv is None else argv)]),
          "date": timing.now(), "machine": timing.machine(),
          "load_average": [load, timing.load_average()], "sentences": len(sources),
          "repeats": repeats, "results": results}


def parse_system(flag: str) -> tuple:
  """'NAME=MODEL_DIR[=JSON]' -> (name, model_dir, decoder params or None)."""
  parts = flag.split("=", 2)
  if len(parts) < 2 or not parts[0] or not parts[1]:
    raise SystemExit(f"--system {flag!r}: expected NAME=MODEL_DIR or NAME=MODEL_DIR=JSON")
  try:
    params = json.loads(parts[2]) if len(parts) == 3 else None
  except json.JSONDecodeError as e:
    raise SystemExit(f"--system {flag!r}: its decoder params are not JSON ({e})") from e
  return parts[0], parts[1], params


def markdown(report: Mapping[str, Any]) -> str:
  machine, results = report["machine"], report["results"]
  first = next(iter(results.values()))["ms"]
  lines = ["# Batch-1 latency, interleaved", "", f"- command: `{report['command']}`",
           f"- date: {report['date']}; machine: {machine['processor']}, "
           f"{machine['cpu_count']} CPU cores; load average at the start "
           f"{report['load_average'][0]}, at the end {report['load_average'][1]}",
           f"- {report['sentences']} sentences, the fastest of {report['repeats']} interleaved "
           "calls each, then the median", "",
           "| system | ms (batch 1) | speed against the first |", "|---|---:|---:|"]
  lines += [f"| {name} | {r['ms']:.2f} | {first / r['ms']:.2f}x |" for name, r in results.items()]
  return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.latency",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--system", action="append", required=True,
                      help="NAME=MODEL_DIR or NAME=MODEL_DIR=JSON (repeat; the first is the "
                      "baseline)")
  parser.add_argument("--task", default="multi30k_en_de_ar")
  parser.add_argument("--module", default="tasks.multi30k", help="module registering --task")
  parser.add_argument("--split", default="test_2016_flickr")
  parser.add_argument("--sentences", type=int, default=100)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--output", default="runs/latency")
  args = parser.parse_args(argv)
  systems = [parse_system(flag) for flag in args.system]
  importlib.import_module(args.module)
  sources = [s for s in reporting.task_texts(args.task, args.split)[0] if s.strip()]
  sources = sources[:args.sentences]
  translators = {d: one_a_call(d) for d in {d for _, d, _ in systems}}
  calls: Dict[str, Callable[[str], Any]] = {
      name: (lambda s, t=translators[d], p=params: t.translate([s], p))
      for name, d, params in systems}
  report = interleaved_report("benchmarks.latency", argv, calls, sources, args.repeats)
  reporting.write_report(args.output, "latency", report, markdown(report))
  print(markdown(report))
  return 0


if __name__ == "__main__":
  sys.exit(main())
