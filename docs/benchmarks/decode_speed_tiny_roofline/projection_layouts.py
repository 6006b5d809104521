"""The output projection of a PaDIR pass at batch 1, [M, 256] x [256, 32k] (tiny's d_model and
T5's vocabulary), in several layouts: is XLA:CPU's small-M matmul the cost, and does another
layout of the same arithmetic run faster? Run from the repository root on an idle machine:

  python docs/benchmarks/decode_speed_tiny_roofline/projection_layouts.py
"""
import statistics
import sys

sys.path.insert(0, ".")  # run from the repository root
import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
from jax import lax  # pylint: disable=g-import-not-at-top

from padir import reporting  # pylint: disable=g-import-not-at-top

D, V = 256, 32128
rng = np.random.default_rng(0)
w = jnp.asarray(rng.normal(size=(D, V)).astype(np.float32) / 16)  # logits_dense/kernel [D, V]
w_t = jnp.asarray(np.ascontiguousarray(np.asarray(w).T))  # the same, stored [V, D]
CHUNKS = 8
w_chunks = jnp.asarray(np.ascontiguousarray(
    np.asarray(w).reshape(D, CHUNKS, V // CHUNKS).transpose(1, 0, 2)))  # [C, D, V/C]

LAYOUTS = {
    "x @ W (today)": (lambda x, w, w_t, w_c: x @ w),
    "(W^T x^T)^T, W^T stored": (lambda x, w, w_t, w_c: (w_t @ x.T).T),
    "einsum td,vd (W^T stored)": (lambda x, w, w_t, w_c: jnp.einsum("td,vd->tv", x, w_t)),
    f"{CHUNKS} vocabulary chunks (lax.map)": (lambda x, w, w_t, w_c: jnp.concatenate(
        list(lax.map(lambda c: x @ c, w_c)), axis=-1)),
    "one row at a time (lax.map)": (lambda x, w, w_t, w_c: lax.map(lambda r: r @ w, x)),
    "x @ W, fused argmax": (lambda x, w, w_t, w_c: jnp.argmax(x @ w, axis=-1)),
    "x @ W, fused max + logsumexp": (lambda x, w, w_t, w_c: (
        jnp.max(x @ w, axis=-1), jax.nn.logsumexp(x @ w, axis=-1))),
}


def main():
  print(f"load average {reporting.load_average()}; matmul {reporting.matmul_flop_rate() / 1e9:.0f}"
        f" GFLOP/s, read {reporting.memory_bandwidth() / 1e9:.1f} GB/s")
  print(f"weights {D * V * 4 / 1e6:.0f} MB; bound = max(FLOPs / matmul rate, bytes / bandwidth)")
  for rows in (1, 14, 48):
    x = jnp.asarray(rng.normal(size=(rows, D)).astype(np.float32))
    base = None
    for name, fn in LAYOUTS.items():
      f = jax.jit(fn)
      f(x, w, w_t, w_chunks)  # compile
      s = reporting.wall_seconds(lambda: jax.block_until_ready(f(x, w, w_t, w_chunks)), 30)
      ms = 1e3 * statistics.median(s)
      base = base or ms
      print(f"rows {rows:3d}  {name:36s} {ms:7.3f} ms  ({base / ms:4.2f}x today)")


if __name__ == "__main__":
  main()
