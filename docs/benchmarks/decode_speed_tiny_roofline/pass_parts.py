"""Where a PaDIR pass's time goes at batch 1 (tiny, random weights, T = 14, vocab 32k)."""
import statistics, sys
sys.path.insert(0, ".")  # run from the repository root
import jax, jax.numpy as jnp, numpy as np
from benchmarks import decode_speed as ds
from padir import models, network, decoding, reporting
from padir.special_tokens import SpecialTokens

st = SpecialTokens.create(num_pieces=32000, max_target_length=256)
cfg = network.get_config("tiny", vocab_size=st.vocab_size, max_target_length=256)
padir = models.PadirModel(network.Transformer(cfg), special_tokens=st)
ar = models.ARModel(network.Transformer(cfg), special_tokens=st)
for rows in (1, 3):
  batch = ds.make_batch([(15, 14)] * rows, 32000, 0)
  params = ds.random_params(padir, batch, 0)
  enc = padir._encoder_inputs(jnp.asarray(batch["encoder_input_tokens"]))
  encoded = jax.jit(lambda p: padir._encode(p, enc))(params)
  cross = jax.jit(lambda p, e: padir._cross_kv(p, e))(params, encoded)
  dec = jnp.asarray(batch["decoder_target_tokens"])
  cfgr = decoding.RefinementConfig.of(padir.scheme, decoding.PadirDecodeConfig())
  fns = {
    "hidden (decoder layers)": jax.jit(lambda p, c, t: padir._apply(
        p, padir.module.decode, None, enc, t, cross_kv=c, return_hidden=True)[1]),
    "logits (layers + projection)": jax.jit(lambda p, c, t: padir._decode_pass(p, enc, c, t)[0]),
    "logits + choose_tokens": jax.jit(lambda p, c, t: decoding.choose_tokens(
        padir._decode_pass(p, enc, c, t)[0], None, cfgr, st, t)),
  }
  for name, f in fns.items():
    s = reporting.wall_seconds(lambda: f(params, cross, dec), 30)
    print(f"rows {rows}: {name:32s} median {1e3 * statistics.median(s):7.2f} ms  min {1e3 * min(s):7.2f}")
  logits = fns["logits (layers + projection)"](params, cross, dec)
  f = jax.jit(lambda l: decoding.choose_tokens(l, None, cfgr, st, dec))
  s = reporting.wall_seconds(lambda: f(logits), 30)
  print(f"rows {rows}: {'choose_tokens alone':32s} median {1e3 * statistics.median(s):7.2f} ms")
  # Whole decodes: PaDIR K = 1 and 4 (fixed work), AR greedy T = 14 steps (EOS unreachable as in decode_speed).
  for k in (1, 4):
    over = {"num_decode_iterations": k, "early_exit": False, "num_canvas_sizes": 1}
    f = jax.jit(lambda p, b: padir.predict_batch_with_aux(p, b, jax.random.PRNGKey(0), decoder_params=over)[0])
    b = jax.device_put(batch)
    s = reporting.wall_seconds(lambda: f(params, b), 20)
    print(f"rows {rows}: padir K={k} whole decode            median {1e3 * statistics.median(s):7.2f} ms")
print("matmul GFLOP/s", reporting.matmul_flop_rate() / 1e9, "read GB/s", reporting.memory_bandwidth() / 1e9)
