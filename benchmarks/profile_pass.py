"""Where a batch-1 decode's time goes: the compiled translate-path program's per-op times (the JAX
profiler's trace of the XLA thunks), each op attributed to its source through the compiled HLO's
metadata and grouped (encoder, decoder layers, output projection, token choice, rejecter, ...).

  python -m benchmarks.profile_pass --checkpoint runs/demo/student_distilled \\
      --sources sources.txt --iterations 1,2 --output runs/profile/student
  python -m benchmarks.profile_pass --checkpoint runs/demo/teacher --sources sources.txt \\
      --output runs/profile/teacher
  python -m benchmarks.profile_pass --model tiny --iterations 1,5 --output runs/profile/tiny

For each `--iterations` K (a PaDIR or CTC model; `early_exit` off, so K is the exact pass count;
an AR model is profiled once, its whole decode), the sentences of `--sources` that share the
first one's shape bucket are decoded one a call (`--repeats` times each), timed, then again under the
profiler. Per call: the wall time (per sentence the fastest call, then the median), shared out
among the groups by their ops' CPU time (an op's time minus the ops nested in it, so a loop or a
branch counts its own control only; the host's part, dispatch and copies, is spread over the
groups too). With two K, one pass is the difference over K2 - K1 passes and the fixed part is
K1's time minus K1 passes. With `--model`, a preset with random weights is profiled instead
(`benchmarks.decode_speed`'s models, fixed work, its median-length sentence, batch 1), PaDIR at
each K and AR greedy beside it. Out: OUTPUT/profile.json, OUTPUT/profile.md (with the machine
and its load; take it on an idle machine).
"""
import argparse
import collections
import dataclasses
import glob
import gzip
import json
import os
import re
import sys
import tempfile
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import jax

from padir import reporting
from padir import timing
from padir import translator as translator_lib

# (group, pattern searched in an op's source name): the first match names the group. The
# decoding functions name their ops with `jax.named_scope`; the network's come from its modules.
GROUPS = (
    ("output projection", r"logits_dense|/logits/"),
    ("length prediction", r"length_(head|logits|predictor)|length_candidates"),
    ("encoder", r"/encoder/|\.encode/|Transformer\.encode"),
    ("decoder layers", r"/decoder/|Transformer\.decode"),
    ("token choice", r"choose_tokens|keep_visible_tokens"),
    ("rejecter / re-masking", r"/reject/|/remask/|reject\b|remask\b"),
    ("canvas / initial input", r"initial_decoder_inputs|initial_canvas"),
    ("scoring / output", r"score_candidates|ctc_collapse|postprocess"),
    ("loop / branch control", r"^(while|cond|conditional|call)[.\d]*(\.clone)?$"),
)
OTHER = "other"
_INSTRUCTION = re.compile(r'^\s*(?:ROOT )?%([\w.\-]+) = .*?metadata=\{op_name="([^"]*)"', re.M)
_CONTROL = re.compile(r"^\s*(?:ROOT )?%((?:while|cond|conditional|call)[\w.\-]*) = ", re.M)
_CONTROL_NAME = re.compile(r"(while|cond|conditional|call)[\w.\-]*$")
_DOT = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = \w+\[(?:\d+,)*(\d+)\]\S* dot\(", re.M)
_OPERANDS = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = [^(\n]*\(([^)\n]*)\)", re.M)


def op_sources(hlo_text: str, vocab_size: Optional[int] = None) -> Dict[str, str]:
  """Compiled HLO text -> {instruction name: its source (op_name metadata, or the control op's
  own name for loops and branches)}. An instruction that XLA left without metadata (the dots of
  an AR loop body, for one) takes the source of its first user that has one; a dot among them
  whose result ends in `vocab_size` ids (AR greedy's one-row logits) is the output projection."""
  sources = {name: op_name for name, op_name in _INSTRUCTION.findall(hlo_text)}
  for name in _CONTROL.findall(hlo_text):
    sources[name] = name  # Its own time is control: its body's ops are counted by themselves.
  if vocab_size:
    for name, last_dim in _DOT.findall(hlo_text):
      if name not in sources and int(last_dim) == vocab_size:
        sources[name] = f"{name} (no metadata; [..., {vocab_size}]: /logits/)"
  for user, operands in _OPERANDS.findall(hlo_text):
    if user in sources and not _CONTROL_NAME.match(user):
      for operand in re.findall(r"%([\w.\-]+)", operands):
        sources.setdefault(operand, sources[user])
  return sources


def group_of(source: str) -> str:
  for group, pattern in GROUPS:
    if re.search(pattern, source):
      return group
  return OTHER


def self_times(events: Sequence[Dict[str, Any]]) -> Dict[str, float]:
  """Complete trace events ('X': name, tid, ts, dur in µs) -> {name: summed own time}: each
  event's duration less the events nested in it on the same thread."""
  own = collections.Counter()
  by_thread = collections.defaultdict(list)
  for e in events:
    by_thread[(e.get("pid"), e.get("tid"))].append(e)
  for thread in by_thread.values():
    thread.sort(key=lambda e: (e["ts"], -e.get("dur", 0)))
    stack: List[Tuple[float, str]] = []  # (end, name) of the open events.
    for e in thread:
      start, duration = e["ts"], e.get("dur", 0)
      while stack and stack[-1][0] <= start:
        stack.pop()
      if stack:
        own[stack[-1][1]] -= duration
      own[e["name"]] += duration
      stack.append((start + duration, e["name"]))
  return dict(own)


def _trace_events(trace_dir: str) -> List[Dict[str, Any]]:
  paths = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)
  if not paths:
    raise FileNotFoundError(f"the profiler wrote no *.trace.json.gz under {trace_dir}")
  with gzip.open(max(paths, key=os.path.getmtime)) as f:
    trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  return [e for e in events if e.get("ph") == "X" and "ts" in e]


def profile(translator: translator_lib.Translator, sources: Sequence[str],
            decoder_params: Dict[str, Any], repeats: int) -> Dict[str, Any]:
  """Per-call wall time and grouped op times (µs) of `translator`'s batch-1 compiled predict."""
  params = {f.name: getattr(translator.decode_config, f.name)
            for f in dataclasses.fields(translator.decode_config)}
  params.update(decoder_params)
  predict = translator._predict_fn(params, with_aux=False)  # pylint: disable=protected-access
  batches = [translator._pad([ids])  # pylint: disable=protected-access
             for ids in translator._encode(sources) if ids is not None]  # pylint: disable=protected-access
  batches = [b for b in batches if b.shape == batches[0].shape]
  rng = translator._rng  # pylint: disable=protected-access
  return {"decoder_params": decoder_params, **profile_program(
      predict, [(translator.params, None, b, rng) for b in batches], repeats,
      batches[0].shape, translator.model.module.config.vocab_size)}


def profile_random(model_name: str, iterations: Sequence[int], repeats: int
                   ) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
  """The same for a `model_name` preset with random weights (`benchmarks.decode_speed`'s models
  and parameters, drawn once; batch 1, its median-length sentence, fixed work): PaDIR at each
  of `iterations`, and AR greedy. Returns (the PaDIR runs, the AR greedy run)."""
  from benchmarks import decode_speed  # pylint: disable=g-import-not-at-top
  args = decode_speed.parse_args(["--model", model_name, "--deep_shallow", "none"])
  setup = decode_speed.setup(args)
  batch = setup.batch_for(1, args)

  def run(system, decoder_params):
    model = setup.model_for(system)
    predict = jax.jit(decode_speed.predict_fn(model, system))
    return {"decoder_params": decoder_params, **profile_program(
        predict, [(setup.params[system.kind, system.variant], batch, setup.rng)], repeats,
        batch["encoder_input_tokens"].shape, model.module.config.vocab_size)}

  runs = [run(decode_speed.System("padir", "padir", "standard", k),
              {"num_decode_iterations": k, "early_exit": False}) for k in iterations]
  return runs, run(decode_speed.System("ar_greedy", "ar", "standard"),
                   {"decode_method": "greedy"})


def profile_program(predict: Callable, calls: Sequence[Tuple], repeats: int,
                    shape: Sequence[int], vocab_size: Optional[int] = None) -> Dict[str, Any]:
  """Per-call wall time and grouped op times (µs) of the jitted `predict`, called with each
  argument tuple of `calls` (sources of one `shape`) `repeats` times, one call at a time
  (`vocab_size`: see `op_sources`)."""

  def call(args):
    return jax.block_until_ready(predict(*args))

  for args in calls:
    call(args)  # Compiles (one shape) and warms up.
  sources_of = op_sources(predict.lower(*calls[0]).compile().as_text(), vocab_size)
  # The wall time without the profiler: per call the fastest repeat, then the median.
  wall = timing.latency_ms(call, calls, repeats) / 1e3
  num_calls = repeats * len(calls)
  options = jax.profiler.ProfileOptions()
  options.python_tracer_level = 0  # Python frames would cost more than the program.
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True, profiler_options=options):
      for _ in range(repeats):
        for args in calls:
          call(args)
    own = self_times(_trace_events(trace_dir))
  cpu, ops = collections.Counter(), []
  for name, microseconds in own.items():
    op = name.removeprefix("end: ")  # An asynchronous op's completion.
    source = sources_of.get(op) or sources_of.get(op.removesuffix(".clone"))
    if source is None:
      continue  # Host-side events (dispatch, argument handling, the executor's own spans).
    group = group_of(source)
    cpu[group] += microseconds / num_calls
    ops.append({"op": name, "source": source, "group": group, "cpu_us": microseconds / num_calls})
  ops.sort(key=lambda op: -op["cpu_us"])
  total = sum(cpu.values())
  wall_us = 1e6 * wall
  return {"calls": num_calls, "shape": list(shape), "wall_us": wall_us, "op_cpu_us": total,
          # The wall time shared out by each group's share of the ops' CPU time (XLA runs a
          # program's ops on more than one thread, so CPU times add up to more than the wall).
          "groups_us": {g: wall_us * t / total for g, t in cpu.most_common()},
          "top_ops": ops[:12]}


def markdown(report: Dict[str, Any]) -> str:
  runs = report["runs"] + ([report["ar_greedy"]] if "ar_greedy" in report else [])
  names = [json.dumps(r["decoder_params"]) if r["decoder_params"] else "the decode"
           for r in runs]
  groups = sorted({g for r in runs for g in r["groups_us"]},
                  key=lambda g: -max(r["groups_us"].get(g, 0.0) for r in runs))
  lines = [f"# Profile of `{report['checkpoint']}` (batch 1, the compiled predict program)", "",
           f"Command: `{report['command']}`; {report['date']}; "
           f"{report['machine']['processor']}, JAX {report['machine']['jax']} on "
           f"{report['machine']['platform']}; load average {report['load_average']}; "
           f"{runs[0]['calls']} calls of shape {runs[0]['shape']} each.", "",
           "| µs per call | " + " | ".join(names) + " |",
           "|---|" + "---:|" * len(runs)]
  lines.append("| wall | " + " | ".join(f"{r['wall_us']:.0f}" for r in runs) + " |")
  for g in groups:
    lines.append(f"| · {g} | " + " | ".join(f"{r['groups_us'].get(g, 0.0):.0f}"
                                           for r in runs) + " |")
  if "per_pass" in report:
    lines += ["", "| one pass, µs | the fixed part, µs |", "|---:|---:|",
              f"| {report['per_pass']['wall_us']:.0f} | {report['fixed']['wall_us']:.0f} |", "",
              "| group | one pass, µs | fixed part, µs |", "|---|---:|---:|"]
    for g in groups:
      lines.append(f"| {g} | {report['per_pass']['groups_us'].get(g, 0.0):.0f} | "
                   f"{report['fixed']['groups_us'].get(g, 0.0):.0f} |")
  return "\n".join(lines) + "\n"


def split_pass(runs: Sequence[Dict[str, Any]], iterations: Sequence[int]) -> Dict[str, Any]:
  """One pass (the difference of two runs over their pass counts) and the fixed part (the first
  run less its passes), in wall time and by group."""
  (k1, r1), (k2, r2) = (iterations[0], runs[0]), (iterations[-1], runs[-1])
  keys = set(r1["groups_us"]) | set(r2["groups_us"])
  per_pass = {"wall_us": (r2["wall_us"] - r1["wall_us"]) / (k2 - k1),
              "groups_us": {g: (r2["groups_us"].get(g, 0.0) - r1["groups_us"].get(g, 0.0))
                            / (k2 - k1) for g in keys}}
  fixed = {"wall_us": r1["wall_us"] - k1 * per_pass["wall_us"],
           "groups_us": {g: r1["groups_us"].get(g, 0.0) - k1 * per_pass["groups_us"][g]
                         for g in keys}}
  return {"per_pass": per_pass, "fixed": fixed}


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_pass",
                                   description=__doc__.split("\n\n")[0])
  which = parser.add_mutually_exclusive_group(required=True)
  which.add_argument("--checkpoint", help="a `padir train` model dir (with --sources)")
  which.add_argument("--model", choices=("test", "tiny", "small", "base"),
                     help="a preset with random weights (benchmarks.decode_speed's models and "
                          "median sentence): PaDIR at each K and AR greedy")
  parser.add_argument("--sources", help="source sentences, one a line (with --checkpoint)")
  parser.add_argument("--num_sentences", type=int, default=48)
  parser.add_argument("--iterations", default="1,2",
                      type=lambda text: [int(x) for x in text.split(",")],
                      help="pass counts K of a PaDIR / CTC model (ignored for an AR model)")
  parser.add_argument("--decoder_params", type=json.loads, default={},
                      help='decoding options of every run (JSON), e.g. \'{"decode_method": '
                           '"greedy"}\' for an AR checkpoint whose run decodes with beam search')
  parser.add_argument("--repeats", type=int, default=20)
  parser.add_argument("--output", default="runs/profile")
  args = parser.parse_args(argv)
  load = timing.load_average()
  extra = {}
  if args.model:
    iterations = sorted(set(args.iterations))
    runs, extra["ar_greedy"] = profile_random(args.model, iterations, args.repeats)
  else:
    if not args.sources or not os.path.exists(args.sources):
      parser.error(f"--sources {args.sources}: no such file (--checkpoint needs one)")
    translator = translator_lib.Translator.from_checkpoint(
        args.checkpoint, gin_bindings=["TranslatorOptions.batch_size = 1"])
    sources = translator_lib.read_lines(args.sources)[:args.num_sentences]
    refining = hasattr(translator.decode_config, "num_decode_iterations")
    iterations = sorted(set(args.iterations)) if refining else [None]
    runs = [profile(translator, sources, {**args.decoder_params, **({} if k is None else {
        "num_decode_iterations": k, "early_exit": False})}, args.repeats) for k in iterations]
  report = {"command": " ".join(["python -m benchmarks.profile_pass", *(argv or sys.argv[1:])]),
            "checkpoint": args.checkpoint or f"{args.model}, random weights",
            "date": timing.now(), "machine": timing.machine(),
            "load_average": [load, timing.load_average()], "runs": runs, **extra}
  if len(iterations) > 1:
    report.update(split_pass(runs, iterations))
  reporting.write_report(args.output, "profile", report, markdown(report))
  return 0


if __name__ == "__main__":
  sys.exit(main())
