"""What a product over R rows costs against one row, on this machine: the roofline of a decoder
pass at the row counts actually used (1 for an AR step, T for a mask-predict pass, ~2T for an
aligned CTC canvas, 3T for three length candidates).

  python -m benchmarks.row_cost --rows 1,14,28,42 --shapes 256x1024,1024x256,256x8064 \
      --output runs/row_cost

For each shape [d_in -> d_out] and row count R, `x @ W` ([R, d_in] x [d_in, d_out], float32) is
timed inside one compiled program, as a decoder's products run: a chain of CHAIN_LONG products
and one of CHAIN_SHORT (each product's input depends on the last product's output, so none is
hoisted; each product has its own weight array, as each of a network's kernels is read once a
pass: one W reused along the chain stays in cache and measured a 14-row 256 -> 1,024 product at
half its cost), each program the fastest of `--repeats` calls, the two programs called in turn
(`padir.timing.time_compiled_interleaved`), one product the difference over CHAIN_LONG -
CHAIN_SHORT (below 0.1 µs it is lost in the jitter, and has no one-row unit). A lone jitted
`x @ W` would add the call's dispatch (~10-15 µs on a CPU), more than a one-row product of a
small network costs. The report gives the time, the FLOP rate and the cost in one-row products,
with the machine and its load, into OUTPUT/row_cost.json and OUTPUT/row_cost.md.
"""
import argparse
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp

from padir import reporting
from padir import timing


def _shape(text: str) -> Tuple[int, int]:
  d_in, d_out = text.lower().split("x")
  return int(d_in), int(d_out)


CHAIN_SHORT, CHAIN_LONG = 4, 12
RESOLUTION = 1e-7  # seconds


def _chain(length: int):
  """jit of `length` products x @ W_i in a row (W_i the i-th of a list of weight arrays), each
  input x plus a multiple (`scale`, 0 at run time) of the last output's row sums:
  [R, d_in] -> [R, d_in]."""
  def run(x, weights, scale):
    for w in weights[:length]:
      x = x + scale * jnp.sum(x @ w, axis=-1, keepdims=True)
    return x
  return jax.jit(run)


def measure(rows: Sequence[int], shapes: Sequence[Tuple[int, int]],
            repeats: int, dtype: Any = jnp.float32) -> List[Dict[str, Any]]:
  """One result per (shape, rows): seconds (one product inside a compiled program, the module
  docstring), flop_rate, one_row_products; the operands of `dtype`."""
  results = []
  short, long = _chain(CHAIN_SHORT), _chain(CHAIN_LONG)
  scale = jnp.zeros((), dtype)
  for d_in, d_out in shapes:
    weights = [jax.random.normal(key, (d_in, d_out), dtype)
               for key in jax.random.split(jax.random.PRNGKey(0), CHAIN_LONG)]
    one_row = None
    for r in rows:
      x = jnp.ones((r, d_in), dtype)
      # Both chains get every weight array (the short one reads 4): the same call overhead;
      # their calls alternate, so that the machine's drift reaches both alike.
      fastest = [t["latency_ms_min"] / 1e3 for t in timing.time_compiled_interleaved(
          [(short, (x, weights, scale)), (long, (x, weights, scale))], repeats, repeats,
          float("inf"))]
      seconds = max(fastest[1] - fastest[0], 0.0) / (CHAIN_LONG - CHAIN_SHORT) + 1e-12
      one_row = seconds if r == 1 else one_row
      # Below RESOLUTION a product is lost in the calls' jitter (or fused away): no unit.
      unit = one_row if one_row is not None and one_row >= RESOLUTION else None
      results.append({"d_in": d_in, "d_out": d_out, "rows": r, "seconds": seconds,
                      "flop_rate": 2 * r * d_in * d_out / seconds,
                      "one_row_products": None if unit is None else seconds / unit})
  return results


def markdown(report: Dict[str, Any]) -> str:
  lines = [f"# Row cost of `x @ W` — {report['machine']['processor']}, {report['date']}", "",
           f"Command: `{report['command']}`; load average {report['load_average']}; one "
           f"product inside a compiled program: chains of {CHAIN_LONG} and {CHAIN_SHORT} "
           f"products, the fastest of {report['repeats']} calls each, the difference over "
           f"{CHAIN_LONG - CHAIN_SHORT}.", "",
           "| d_in → d_out | rows | µs | GFLOP/s | one-row products |", "|---|---:|---:|---:|---:|"]
  for r in report["results"]:
    cost = "" if r["one_row_products"] is None else f"{r['one_row_products']:.2f}"
    if r["seconds"] < RESOLUTION:
      time_rate = "< 0.1 | —"
    else:
      time_rate = f"{1e6 * r['seconds']:.1f} | {r['flop_rate'] / 1e9:.1f}"
    lines.append(f"| {r['d_in']} → {r['d_out']} | {r['rows']} | {time_rate} | {cost} |")
  return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.row_cost",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--rows", default="1,14,28,42",
                      type=lambda text: [int(x) for x in text.split(",")])
  parser.add_argument("--shapes", default="256x1024,1024x256,256x8064",
                      type=lambda text: [_shape(x) for x in text.split(",")])
  parser.add_argument("--repeats", type=int, default=200)
  parser.add_argument("--output", default="runs/row_cost")
  args = parser.parse_args(argv)
  if 1 not in args.rows:
    parser.error("--rows must include 1 (the one-row product is the unit)")
  load = timing.load_average()
  results = measure(sorted(args.rows), args.shapes, args.repeats)
  report = {"command": " ".join(["python -m benchmarks.row_cost", *(argv or sys.argv[1:])]),
            "date": timing.now(), "machine": timing.machine(),
            "load_average": [load, timing.load_average()], "repeats": args.repeats,
            "results": results}
  reporting.write_report(args.output, "row_cost", report, markdown(report))
  return 0


if __name__ == "__main__":
  sys.exit(main())
