"""What one CTC pass costs in AR greedy steps on the demo's network and wider ones (random
weights, batch 1, compiled programs only: no host path).

  PYTHONPATH=. python docs/benchmarks/aligned_canvas/demo_dominant/pass_cost_probe.py \
      "" "network.get_config.emb_dim=128;network.get_config.head_dim=32;network.get_config.mlp_dim=512"

Each argument is a `;`-separated list of gin bindings on top of the demo's files (the empty one
is the demo's network). AR greedy is timed at 8 and 24 decode steps (random weights never emit
EOS, so it runs them all): step = the difference / 16, fixed part = the rest; AR at the demo's
typical sentence = fixed + STEPS steps. The CTC student's one-pass decode of a PIECES-piece
source (canvas 2 x the 16-piece bucket - 1 = 31 positions). Each time: the mean of the fastest
third of 300 calls.
"""
import logging
import os
import statistics
import sys
import time

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np

logging.disable(logging.WARNING)
import tasks.builtin  # pylint: disable=g-import-not-at-top,unused-import  (builtin_demo tasks)
from padir import gin_utils  # pylint: disable=g-import-not-at-top

PIECES = int(os.environ.get("PIECES", 12))
STEPS = int(os.environ.get("STEPS", 13))
BUCKET = 16 if PIECES < 16 else 32
FILES = {"ar": ["models/ar_tiny.gin", "experiments/builtin_ar.gin"],
         "ctc": ["models/ctc_tiny.gin", "experiments/builtin_ctc.gin"]}


def build(kind, bindings):
  gin.clear_config()
  first, experiment = FILES[kind]
  gin_utils.parse_gin([first, "runs/train.gin", "experiments/builtin_mini.gin", experiment],
                      ["MODEL_DIR = '/tmp/unused'", *bindings], finalize=False)
  model = gin.query_parameter("trainer.train.model").scoped_configurable_fn()
  shapes = {name: (1, 16) for name in
            ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens")}
  params = nn.meta.unbox(model.get_initial_variables(jax.random.PRNGKey(0), shapes))["params"]
  return model, params


def fastest_ms(fn, *args, calls=300):
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(calls):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return 1e3 * statistics.fmean(sorted(times)[:calls // 3])


def main():
  ids = np.random.RandomState(0).randint(10, 900, PIECES)
  source = jnp.asarray(np.r_[ids, 1, np.zeros(BUCKET - PIECES - 1)][None].astype(np.int32))
  for spec in sys.argv[1:] or [""]:
    bindings = [b for b in spec.split(";") if b]
    ar, ar_params = build("ar", bindings)
    ctc, ctc_params = build("ctc", bindings)

    def ar_greedy(steps):
      decoder = jnp.zeros((1, steps), jnp.int32)
      return jax.jit(lambda p, s: ar.predict_batch_with_aux(
          p, {"encoder_input_tokens": s, "decoder_input_tokens": decoder},
          decoder_params={"decode_method": "greedy"})[0])

    t8, t24 = fastest_ms(ar_greedy(8), ar_params, source), fastest_ms(ar_greedy(24), ar_params,
                                                                      source)
    step = (t24 - t8) / 16
    fixed = t8 - 8 * step
    canvas = jnp.zeros((1, BUCKET), jnp.int32)
    one_pass = fastest_ms(jax.jit(lambda p, s: ctc.predict_batch_with_aux(
        p, {"encoder_input_tokens": s, "decoder_input_tokens": canvas},
        decoder_params={"num_decode_iterations": 1})[0]), ctc_params, source)
    ar_ms = fixed + STEPS * step
    print(f"{spec or 'the demo network'}: AR fixed {fixed:.3f} ms + {step:.3f} ms a step -> "
          f"{STEPS} steps {ar_ms:.3f} ms; CTC one pass {one_pass:.3f} ms = the fixed part + "
          f"{(one_pass - fixed) / step:.1f} AR steps; AR / CTC {ar_ms / one_pass:.2f}x",
          flush=True)


if __name__ == "__main__":
  main()
