import jax, jax.numpy as jnp, numpy as np
from padir import timing
def chain(n, distinct):
  def run(x, ws, scale):
    for i in range(n):
      w = ws[i] if distinct else ws[0]
      x = x + scale * jnp.sum(x @ w, axis=-1, keepdims=True)
    return x
  return jax.jit(run)
for d_in, d_out in ((256, 1024), (1024, 256), (256, 256)):
  ws = jax.random.normal(jax.random.PRNGKey(0), (12, d_in, d_out))
  ws_list = [ws[i] for i in range(12)]
  for rows in (1, 14):
    x = jnp.ones((rows, d_in)); s = jnp.zeros(())
    out = {}
    for distinct in (False, True):
      t = [min(timing.wall_seconds(lambda f=f: f(x, ws, s), 30)) for f in (chain(4, distinct), chain(12, distinct))]
      out[distinct] = (t[1] - t[0]) / 8 * 1e6
    # separate parameters (as a network's are: one array per kernel)
    def run(x, wl, scale):
      for i in range(12):
        x = x + scale * jnp.sum(x @ wl[i], axis=-1, keepdims=True)
      return x
    def run4(x, wl, scale):
      for i in range(4):
        x = x + scale * jnp.sum(x @ wl[i], axis=-1, keepdims=True)
      return x
    f12, f4 = jax.jit(run), jax.jit(run4)
    t = [min(timing.wall_seconds(lambda f=f: f(x, ws_list, s), 30)) for f in (f4, f12)]
    sep = (t[1] - t[0]) / 8 * 1e6
    print(f"{d_in}->{d_out} rows {rows}: same W {out[False]:.1f} us, distinct slices {out[True]:.1f} us, separate arrays {sep:.1f} us")
