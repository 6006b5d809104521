"""Training throughput of `padir train`'s step, and where it stands against this machine.

  python -m benchmarks.train_speed --output docs/benchmarks/train_speed \
      [--setups ar_packed,ar,padir] [--steps 30] \
      [--yardstick ../shared/tools/plain_flax_transformer.py]

Each setup is a `padir train` configuration (gin files + bindings, Multi30k at `tiny` by
default; it needs ../shared/data). Setups run one after the other in this process, on the
batches the run's own SeqIO pipeline gives, with the trainer's own jitted step
(`train_step.make_train_step`):
  data_s_per_batch   host time to produce a batch (the pipeline alone, measured apart; the step
                     must never wait on it)
  s_per_step         steady state: every batch shape is compiled and run once before the clock
                     starts, then `--steps` batches in the pipeline's order (its bucket mix)
  tokens_per_s       real (non-pad) target tokens per second
  flop_per_step      XLA's cost analysis of the compiled step (x the mesh's devices), averaged
                     over the timed batches
  achieved_flop_s    flop_per_step / s_per_step, and its share of
  matmul_flop_s      this run's dense float32 [1024, 1024] x [1024, 1024] rate (the roofline)
With `--yardstick`, a plain Flax Transformer (a separate script, not part of the project) trains
`--yardstick_steps` steps on the same machine right after, and its steady-state target tokens/s
is reported as `x_yardstick` ratios. Measure on an idle machine: the load average is recorded.
Writes OUTPUT/results.json and results.md.
"""
import argparse
import dataclasses
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import flax.linen as nn
import gin
import jax
import numpy as np

from padir import files
from padir import gin_utils
from padir import partitioning
from padir import tables
from padir import timing
from padir import train_step
from padir import trainer


@dataclasses.dataclass(frozen=True)
class Setup:
  """One configuration of `padir train`: its gin files (after runs/train.gin) and bindings."""
  name: str
  what: str
  gin_files: Tuple[str, ...]
  bindings: Tuple[str, ...] = ()
  comparable_to_yardstick: bool = True  # Multi30k at the yardstick's width.


_AR = ("models/ar_tiny.gin", "experiments/multi30k_ar.gin")
_PACKED = ("train/data.get_dataset.pack = True", "BATCH_SIZE = 24",
           "TASK_FEATURE_LENGTHS = {'inputs': 128, 'targets': 128}",
           "train/data.get_dataset.length_buckets = None",
           "train/data.get_dataset.input_length_buckets = None")
_DEMO_AR = ("models/ar_tiny.gin", "experiments/builtin_mini.gin", "experiments/builtin_ar.gin")
_DEMO_PACKED = ("train/data.get_dataset.pack = True", "BATCH_SIZE = 32",
                "TASK_FEATURE_LENGTHS = {'inputs': 64, 'targets': 64}",
                "train/data.get_dataset.length_buckets = None",
                "train/data.get_dataset.input_length_buckets = None")
_GATED_GELU = "network.get_config.mlp_activations = ('gelu', 'linear')"

SETUPS = {s.name: s for s in (
    Setup("ar_packed", "before: 24 packed 128-token rows, gated GELU", _AR,
          (*_PACKED, _GATED_GELU)),
    Setup("ar_packed_rbg", "packed rows, gated GELU, RngBitGenerator dropout bits", _AR,
          (*_PACKED, _GATED_GELU, "trainer.train.dropout_rng_impl = 'rbg'")),
    Setup("ar_buckets", "192 length-bucketed rows, gated GELU", _AR, (_GATED_GELU,)),
    Setup("ar", "experiments/multi30k_ar.gin as it is (buckets, ReLU MLP)", _AR),
    Setup("ar_no_dropout", "the recipe without dropout", _AR, ("DROPOUT_RATE = 0.0",)),
    Setup("ar_untied", "the recipe with T5.1.1's separate output layer, no Adam corrections",
          _AR, ("network.get_config.logits_via_embedding = False",
                "optimizers.adamw.learning_rate_multipliers = None")),
    Setup("padir", "experiments/multi30k_padir.gin as it is (the student's step)",
          ("models/padir_tiny.gin", "experiments/multi30k_padir.gin")),
    # `padir demo`'s network on the built-in corpus (offline; no dropout there).
    Setup("demo_ar_packed", "demo teacher before: 32 packed 64-token rows", _DEMO_AR,
          _DEMO_PACKED, comparable_to_yardstick=False),
    Setup("demo_ar", "experiments/builtin_ar.gin as it is (144 length-bucketed rows)", _DEMO_AR,
          comparable_to_yardstick=False),
    Setup("demo_padir", "experiments/builtin_padir.gin as it is (a demo student's step)",
          ("models/padir_tiny.gin", "experiments/builtin_mini.gin",
           "experiments/builtin_padir.gin"), comparable_to_yardstick=False),
)}
DEFAULT_SETUPS = ("ar_packed", "ar_buckets", "ar", "ar_no_dropout", "padir", "demo_ar_packed",
                  "demo_ar", "demo_padir")
TRAIN_GIN = "runs/train.gin"


def _target_tokens(batch: Mapping[str, np.ndarray]) -> int:
  return int(np.sum(np.asarray(batch["decoder_target_tokens"]) > 0))


def _shape(batch: Mapping[str, np.ndarray]) -> Tuple:
  return tuple(sorted((k, np.shape(v)) for k, v in batch.items()))


def measure_setup(setup: Setup, steps: int, extra_bindings: Sequence[str] = ()) -> Dict[str, Any]:
  """Times one setup's train step (see the module docstring). Replaces the gin config."""
  gin.clear_config()
  gin_utils.parse_gin([setup.gin_files[0], TRAIN_GIN, *setup.gin_files[1:]],
                      ["MODEL_DIR = '/nonexistent'", *setup.bindings, *extra_bindings])
  bound = gin.get_bindings("trainer.train")
  model, batch_size = bound["model"], bound["batch_size"]
  dataset = iter(bound["train_dataset_fn"](batch_size=batch_size, shard_id=0, num_shards=1,
                                           skip_batches=0))
  first = next(dataset)
  start = time.perf_counter()
  batches = [next(dataset) for _ in range(steps)]
  data_s = (time.perf_counter() - start) / steps

  timed = time_train_step(model, batch_size, first, batches, bound.get("dropout_rng_impl"))
  tokens = sum(map(_target_tokens, batches))
  return {
      "name": setup.name, "what": setup.what, "devices": timed["devices"],
      "gin_files": list(setup.gin_files),
      "bindings": list(setup.bindings) + list(extra_bindings), "batch_size": batch_size,
      "batch_shapes": timed["batch_shapes"], "steps": steps,
      "target_tokens_per_step": tokens / steps,
      "data_s_per_batch": data_s, "s_per_step": timed["s_per_step"],
      "tokens_per_s": tokens / timed["seconds"],
      "flop_per_step": timed["flop_per_step"], "achieved_flop_s": timed["achieved_flop_s"],
  }


def time_train_step(model, batch_size: int, first: Mapping[str, np.ndarray],
                    batches: Sequence[Mapping[str, np.ndarray]],
                    dropout_rng_impl: Optional[str] = None) -> Dict[str, Any]:
  """The trainer's own jitted step (`train_step.make_train_step`, state donated) on this process's
  devices: every batch shape of `first` and `batches` compiled and run once off the clock, then
  `batches` timed. Returns devices, batch_shapes, seconds (all of `batches`), s_per_step,
  flop_per_step (XLA's cost analysis x the mesh's devices, averaged over `batches`) and
  achieved_flop_s. Also `benchmarks/device_check.py`'s training part."""
  mesh = train_step.make_train_mesh(None)
  shapes, types = trainer.input_specs(first, batch_size)
  init_key, key = trainer.run_keys(0, dropout_rng_impl)
  with jax.set_mesh(mesh), nn.logical_axis_rules(partitioning.LOGICAL_AXIS_RULES):
    boxed = trainer.abstract_train_state(model, shapes, types)
    shardings = trainer.train_state_shardings(mesh, boxed)
    state = trainer.init_train_state(model, init_key, shapes, types, shardings)
    step = train_step.make_train_step(model, mesh, shardings)
    flops: Dict[Tuple, float] = {}
    compiled: Dict[Tuple, Any] = {}  # One compilation per shape, run as it is.
    for batch in [first, *batches]:  # Compile and run every shape once, off the clock.
      if _shape(batch) not in flops:
        sharded = train_step.shard_batch(batch, mesh, batch_size)
        compiled[_shape(batch)] = step.lower(state, sharded, key).compile()
        cost = compiled[_shape(batch)].cost_analysis()
        # XLA's cost analysis is of one device's program: the mesh runs one on every device.
        flops[_shape(batch)] = mesh.devices.size * float(
            (cost[0] if isinstance(cost, list) else cost)["flops"])
        state, metrics = compiled[_shape(batch)](state, sharded, key)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for batch in batches:
      state, metrics = compiled[_shape(batch)](
          state, train_step.shard_batch(batch, mesh, batch_size), key)
    jax.block_until_ready((state, metrics))
    seconds = time.perf_counter() - start
  steps = len(batches)
  flop_per_step = sum(flops[_shape(b)] for b in batches) / steps
  return {"devices": mesh.devices.size, "batch_shapes": len(flops), "seconds": seconds,
          "s_per_step": seconds / steps, "flop_per_step": flop_per_step,
          "achieved_flop_s": flop_per_step * steps / seconds}


_WINDOW = re.compile(r"step (\d+) .*window_tok/s (\d+) t ([0-9.]+)")


def run_yardstick(script: str, steps: int, log_every: int = 10) -> Dict[str, Any]:
  """The plain Flax Transformer for `steps` steps; steady state = the median log window (it
  compiles each of its 5 batch shapes when first drawn, inside some windows)."""
  with tempfile.TemporaryDirectory() as work_dir:
    command = [sys.executable, script, "--max_steps", str(steps), "--log_every", str(log_every),
               "--no_test", "--work_dir", work_dir]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
  windows = [(int(s), int(t), float(c)) for s, t, c in _WINDOW.findall(out)]
  if len(windows) < 5:
    raise RuntimeError(f"the yardstick printed {len(windows)} log windows; run more steps:\n{out}")
  seconds = [(c1 - c0) / (s1 - s0) for (s0, _, c0), (s1, _, c1) in zip(windows, windows[1:])]
  return {"command": " ".join(map(shlex.quote, command[1:-2])) + " --work_dir DIR",
          "steps": steps, "s_per_step": statistics.median(seconds),
          "tokens_per_s": statistics.median(t for _, t, _ in windows[1:])}


def run(setups: Sequence[Setup], steps: int, *, command: str,
        yardstick: Optional[str] = None, yardstick_steps: int = 200,
        extra_bindings: Sequence[str] = ()) -> Dict[str, Any]:
  """Every setup, then the yardstick; the results dict of results.json."""
  load_start = timing.load_average()
  rate = timing.matmul_flop_rate()
  rows = []
  for setup in setups:
    row = measure_setup(setup, steps, extra_bindings)
    row["share_of_matmul_rate"] = row["achieved_flop_s"] / rate
    print(f"{row['name']:24s} {row['s_per_step']:.3f} s/step  {row['tokens_per_s']:7.0f} tok/s  "
          f"{row['achieved_flop_s'] / 1e9:6.1f} GFLOP/s ({100 * row['share_of_matmul_rate']:.0f} % "
          f"of matmul)", file=sys.stderr, flush=True)
    rows.append(row)
  results = {"command": command,
             "date": timing.now(),
             "machine": timing.machine(), "matmul_flop_s": rate, "setups": rows}
  if yardstick:
    results["yardstick"] = run_yardstick(yardstick, yardstick_steps)
    for setup, row in zip(setups, rows):
      if setup.comparable_to_yardstick:
        row["x_yardstick"] = row["tokens_per_s"] / results["yardstick"]["tokens_per_s"]
  results["load_average"] = {"start": load_start, "end": timing.load_average()}
  return results


def train_speed_markdown(results: Mapping[str, Any]) -> str:
  """results.md: how it was measured, a row per setup, the yardstick."""
  m = results["machine"]
  lines = [
      f"- command: `{results['command']}`",
      f"- date: {results['date']}; machine: {m['cpu_count']} CPU cores ({m['processor']}), "
      f"JAX {m['jax']} on {m['platform']}; load average at the start "
      f"{results['load_average']['start']}, at the end {results['load_average']['end']}",
      f"- dense float32 matmul rate of this run: {results['matmul_flop_s'] / 1e9:.1f} GFLOP/s",
      "",
      *tables.markdown_table(
          ("setup", "what", "batch", "s / step", "target tokens / step", "target tokens / s",
           "data s / batch", "GFLOP / step", "GFLOP/s", "of matmul rate", "x yardstick"),
          [(r["name"], r["what"], r["batch_size"], f"{r['s_per_step']:.3f}",
            f"{r['target_tokens_per_step']:.0f}", f"{r['tokens_per_s']:.0f}",
            f"{r['data_s_per_batch']:.3f}", f"{r['flop_per_step'] / 1e9:.2f}",
            f"{r['achieved_flop_s'] / 1e9:.1f}", f"{100 * r['share_of_matmul_rate']:.0f} %",
            f"{r['x_yardstick']:.2f}x" if "x_yardstick" in r else "")
           for r in results["setups"]], "llrrrrrrrrr"),
  ]
  if "yardstick" in results:
    y = results["yardstick"]
    lines += ["", f"Yardstick (`{y['command']}`, {y['steps']} steps, not part of the project): "
              f"{y['s_per_step']:.3f} s/step, {y['tokens_per_s']:.0f} target tokens/s "
              "(median log window of 10 steps)."]
  return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.train_speed")
  parser.add_argument("--output", required=True, help="directory for results.json/results.md")
  parser.add_argument("--setups", default=",".join(DEFAULT_SETUPS),
                      help=f"comma-separated, of {', '.join(SETUPS)}")
  parser.add_argument("--steps", type=int, default=30, help="timed steps per setup")
  parser.add_argument("--yardstick", default=None,
                      help="path of ../shared/tools/plain_flax_transformer.py to run alongside")
  parser.add_argument("--yardstick_steps", type=int, default=200)
  parser.add_argument("--gin", action="append", default=[], metavar="BINDING",
                      help="an extra gin binding for every setup (repeatable)")
  args = parser.parse_args(argv)
  unknown = [n for n in args.setups.split(",") if n not in SETUPS]
  if unknown:
    parser.error(f"--setups: unknown {', '.join(unknown)}; choose from {', '.join(SETUPS)}")
  command = " ".join(["python -m benchmarks.train_speed", *map(shlex.quote, argv)])
  results = run([SETUPS[n] for n in args.setups.split(",")], args.steps, command=command,
                yardstick=args.yardstick, yardstick_steps=args.yardstick_steps,
                extra_bindings=args.gin)
  os.makedirs(args.output, exist_ok=True)
  files.write_json(os.path.join(args.output, "results.json"), results)
  files.write_text(os.path.join(args.output, "results.md"), train_speed_markdown(results))
  print(train_speed_markdown(results))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
