"""Length candidates pruned after the first pass, timed at batch 1: a PaDIR student at K passes
with one length candidate, with three refined to the end, and with three of which only the best
one or two after pass 1 are refined (`keep_candidates_after_first_pass`), AR greedy beside them.

  python -m benchmarks.prune_speed --student runs/m30k/student_distilled \
      --teacher runs/m30k/teacher --task multi30k_en_de_ar --module tasks.multi30k \
      --split test_2016_flickr --output runs/prune_speed

Protocol: batch 1, the translate path (text -> text); one untimed call of every setting first
(compilation); then for each of the first --sentences sources, each setting translated
--repeats times, the settings interleaved (one call of each, in turn), the fastest call kept;
the median over sentences (`padir.timing.interleaved_latency_ms`). PaDIR runs with `early_exit=False`, so K is the exact pass count.
Writes OUTPUT/prune_speed.json and OUTPUT/prune_speed.md (machine, date, load, command). Time
on an idle machine: the numbers mean nothing under CPU contention.
"""
import argparse
import importlib
import json
import sys
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

from benchmarks import latency
from padir import reporting


def settings(iterations: int, candidates: int, extra: Optional[Mapping[str, Any]] = None
             ) -> Dict[str, Dict[str, Any]]:
  """Name -> PaDIR decoder_params of each timed setting: one candidate, all of `candidates`
  refined to the end, and the best m of them refined after pass 1 for each m below; `extra`
  decoder_params in every one (e.g. {'length_score_weight': 0.1})."""
  fixed = {**(extra or {}), "num_decode_iterations": iterations, "early_exit": False}
  named = {
      f"padir@{iterations}, 1 candidate": {**fixed, "top_k_lengths": 1},
      f"padir@{iterations}, {candidates} candidates": {**fixed, "top_k_lengths": candidates},
  }
  for kept in range(1, candidates):
    named[f"padir@{iterations}, {candidates} candidates, best {kept} after pass 1"] = {
        **fixed, "top_k_lengths": candidates, "keep_candidates_after_first_pass": kept}
  return named


def markdown(report: Mapping[str, Any]) -> str:
  machine = report["machine"]
  lines = ["# Pruning length candidates after the first pass: batch-1 latency", "",
           f"- command: `{report['command']}`",
           f"- date: {report['date']}; machine: {machine['processor']}, "
           f"{machine['cpu_count']} CPU cores; load average at the start "
           f"{report['load_average'][0]}, at the end {report['load_average'][1]}",
           f"- {report['sentences']} test sentences, the fastest of {report['repeats']} "
           "interleaved calls each, then the median", "",
           "| setting | ms (batch 1) | / 1 candidate | speed against AR greedy |",
           "|---|---:|---:|---:|"]
  one = next(r["ms"] for name, r in report["results"].items() if name.endswith("1 candidate"))
  ar = report["results"].get("ar_greedy", {}).get("ms")
  for name, r in report["results"].items():
    against_ar = "" if ar is None else f"{ar / r['ms']:.2f}x"
    lines.append(f"| {name} | {r['ms']:.2f} | {r['ms'] / one:.2f} | {against_ar} |")
  return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.prune_speed",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--student", required=True, help="a PaDIR `padir train` model dir")
  parser.add_argument("--teacher", default=None, help="an AR model dir (AR greedy beside)")
  parser.add_argument("--task", default="multi30k_en_de_ar")
  parser.add_argument("--module", default="tasks.multi30k", help="module registering --task")
  parser.add_argument("--split", default="test_2016_flickr")
  parser.add_argument("--sentences", type=int, default=48)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--iterations", type=int, default=4)
  parser.add_argument("--candidates", type=int, default=3)
  parser.add_argument("--decoder_params", type=json.loads, default=None,
                      help="decoder_params (JSON) of every PaDIR setting, e.g. "
                           "'{\"length_score_weight\": 0.1}'")
  parser.add_argument("--output", default="runs/prune_speed")
  args = parser.parse_args(argv)
  importlib.import_module(args.module)
  sources = [s for s in reporting.task_texts(args.task, args.split)[0] if s.strip()]
  sources = sources[:args.sentences]

  calls: Dict[str, Callable[[str], Any]] = {}
  if args.teacher:
    teacher = latency.one_a_call(args.teacher)
    calls["ar_greedy"] = lambda s: teacher.translate([s], {"decode_method": "greedy"})
  student = latency.one_a_call(args.student)
  for name, params in settings(args.iterations, args.candidates, args.decoder_params).items():
    calls[name] = lambda s, params=params: student.translate([s], params)
  report = latency.interleaved_report("benchmarks.prune_speed", argv, calls, sources,
                                      args.repeats)
  reporting.write_report(args.output, "prune_speed", report, markdown(report))
  return 0


if __name__ == "__main__":
  sys.exit(main())
