"""XLA:CPU argmax over a 32k vocabulary against other reductions with the same result (rows x
32128 logits). From the repository root:
python docs/benchmarks/decode_speed_tiny_roofline/argmax_reductions.py"""
import statistics, sys
sys.path.insert(0, ".")
import jax, jax.numpy as jnp, numpy as np
from jax import lax
from padir import reporting
V=32128
rng=np.random.default_rng(0)
bias=jnp.where(jnp.arange(V)%7==0, -jnp.inf, 0.0).astype(jnp.float32)
def am_a(l): return jnp.argmax(l+bias, axis=-1)
def am_b(l):
  x=l+bias; m=jnp.max(x,axis=-1,keepdims=True)
  return jnp.min(jnp.where(x==m, lax.broadcasted_iota(jnp.int32, x.shape, x.ndim-1), V), axis=-1)
def am_c(l): return lax.top_k(l+bias,1)[1][...,0]
def am_d(l):
  x=l+bias; m=jnp.max(x,axis=-1,keepdims=True)
  return jnp.argmax(x==m, axis=-1)
def lse(l):
  x=l+bias; m=jnp.max(x,axis=-1,keepdims=True); return jnp.log(jnp.sum(jnp.exp(x-m),axis=-1))
for rows in (14, 48):
  l=jnp.asarray(rng.normal(size=(rows,V)).astype(np.float32))
  ref=np.asarray(am_a(l))
  for name,f in (("argmax",am_a),("max+min(where iota)",am_b),("top_k 1",am_c),("max+argmax(bool)",am_d),("max+sum exp (lse)",lse)):
    g=jax.jit(f); out=g(l)
    if name!="max+sum exp (lse)": assert (np.asarray(out)==ref).all(), name
    s=reporting.wall_seconds(lambda: g(l), 50)
    print(rows, f"{name:24s} {1e3*statistics.median(s):.3f} ms")
