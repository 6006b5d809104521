"""A PaDIR pass at batch 1 (tiny, random weights, T = 14): its decoder layers, the whole pass, and
its output projection inside and outside the pass. From the repository root:
python docs/benchmarks/decode_speed_tiny_roofline/pass_vs_projection.py"""
import sys, statistics; sys.path.insert(0, ".")
import jax, jax.numpy as jnp
from benchmarks import decode_speed as ds
from padir import models, network, reporting
from padir.special_tokens import SpecialTokens
st = SpecialTokens.create(num_pieces=32000, max_target_length=256)
cfg = network.get_config("tiny", vocab_size=st.vocab_size, max_target_length=256)
padir = models.PadirModel(network.Transformer(cfg), special_tokens=st)
batch = ds.make_batch([(15, 14)] * 1, 32000, 0)
params = ds.random_params(padir, batch, 0)
enc = padir._encoder_inputs(jnp.asarray(batch["encoder_input_tokens"]))
encoded = jax.jit(lambda p: padir._encode(p, enc))(params)
cross = jax.jit(lambda p, e: padir._cross_kv(p, e))(params, encoded)
dec = jnp.asarray(batch["decoder_target_tokens"])
def hid(p,c,t): return padir._apply(p, padir.module.decode, None, enc, t, cross_kv=c, return_hidden=True)[1]
fns = {
 "hidden": jax.jit(hid),
 "logits (network)": jax.jit(lambda p,c,t: padir._decode_pass(p, enc, c, t)[0]),
 "hidden @ kernel (by hand)": jax.jit(lambda p,c,t: hid(p,c,t) @ p["decoder"]["logits_dense"]["kernel"]),
 "hidden @ kernel, [0,0] only": jax.jit(lambda p,c,t: (hid(p,c,t) @ p["decoder"]["logits_dense"]["kernel"])[0,0,0]),
}
h = fns["hidden"](params, cross, dec)
k = params["decoder"]["logits_dense"]["kernel"]
fns2 = {"standalone h @ kernel": (jax.jit(lambda h,k: h@k), (h,k))}
for name,f in fns.items():
  s=reporting.wall_seconds(lambda: f(params,cross,dec), 40); print(f"{name:30s} {1e3*statistics.median(s):.2f} ms")
for name,(f,a) in fns2.items():
  s=reporting.wall_seconds(lambda: f(*a), 40); print(f"{name:30s} {1e3*statistics.median(s):.2f} ms")
print(type(k), k.shape, getattr(k,'dtype',None))
