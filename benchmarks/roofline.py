"""What one AR step and one PaDIR pass must cost at this machine's rates: the decoder's FLOPs and
bytes per call, its products' rates at the call's own row count (`benchmarks.row_cost`), and the
roofline of `benchmarks.decode_speed`'s measured points against those bounds."""
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import jax.numpy as jnp

from benchmarks import row_cost
from padir import network


def decoder_flops(config: network.T5Config, rows: int, positions: int, self_keys: int,
                  cross_keys: int) -> float:
  """FLOPs of one decoder call on `rows` x `positions` (multiply-adds count 2): every layer's
  self-attention q/k/v/o and cross-attention q/o projections (cross keys/values are computed
  once per decode), its MLP, the attention over `self_keys` and `cross_keys` keys, and the
  output projection to the vocabulary."""
  d, inner, mlp = config.emb_dim, config.num_heads * config.head_dim, config.mlp_dim
  layer = 2 * (6 * d * inner + (len(config.mlp_activations) + 1) * d * mlp)
  attention = 4 * inner * (self_keys + cross_keys)
  per_position = config.num_decoder_layers * (layer + attention) + 2 * d * config.vocab_size
  return float(rows * positions * per_position)


def decoder_bytes(config: network.T5Config, rows: int, self_keys: int, cross_keys: int,
                  itemsize: int = 4) -> float:
  """Bytes one decoder call must read at least: the decoder's weights (float32) and the
  attention keys/values of every row (a KV cache of `self_keys`, the cross-attention's)."""
  d, inner, mlp = config.emb_dim, config.num_heads * config.head_dim, config.mlp_dim
  layer = 6 * d * inner + (len(config.mlp_activations) + 1) * d * mlp
  weights = 4 * (config.num_decoder_layers * layer + d * config.vocab_size)
  keys_values = itemsize * rows * 2 * inner * config.num_decoder_layers * (self_keys + cross_keys)
  return float(weights + keys_values)


def decoder_products(config: network.T5Config) -> Dict[Tuple[int, int], int]:
  """The decoder's dense products of one position, {(d_in, d_out): how many}: every layer's
  self-attention q/k/v/o and cross-attention q/o projections and MLP, the output projection
  (the FLOPs `decoder_flops` counts, but for the attention over keys)."""
  d, inner, mlp = config.emb_dim, config.num_heads * config.head_dim, config.mlp_dim
  layers, products = config.num_decoder_layers, {}
  for shape, count in (((d, inner), 4 * layers), ((inner, d), 2 * layers),
                       ((d, mlp), len(config.mlp_activations) * layers), ((mlp, d), layers),
                       ((d, config.vocab_size), 1)):
    products[shape] = products.get(shape, 0) + count
  return products


def roofline_row_counts(results: Sequence[Mapping[str, Any]]) -> List[int]:
  """The row counts of the decoder calls `roofline` bounds: B (an AR step, one position a row)
  and B x C x T (a PaDIR pass over C candidates of T positions), ascending."""
  counts = set()
  for r in results:
    if r["variant"] == "standard" and r["system"] == "ar_greedy":
      counts.add(r["batch_size"])
    elif r["variant"] == "standard" and r["system"] == "padir":
      counts.add(r["batch_size"] * r["length_beam"] * r["target_length"])
  return sorted(counts)


def measure_row_rates(config: network.T5Config, row_counts: Sequence[int],
                      repeats: int) -> List[Dict[str, Any]]:
  """This machine's rate of each of the decoder's products at each row count
  (`row_cost.measure`: a jitted `x @ W` in the config's dtype, the fastest of `repeats`)."""
  return row_cost.measure(row_counts, list(decoder_products(config)), repeats,
                          jnp.dtype(config.dtype))


def row_flop_bound_ms(config: network.T5Config, rows: int, self_keys: int, cross_keys: int,
                      row_rates: Sequence[Mapping[str, Any]]) -> float:
  """The FLOP bound of one decoder call over `rows` positions in all from the rates at that row
  count: each product's FLOPs at its own measured rate, the attention over `self_keys` +
  `cross_keys` keys (products without weights) at the q projection's."""
  rate = {(r["d_in"], r["d_out"]): r["flop_rate"] for r in row_rates if r["rows"] == rows}
  d, inner = config.emb_dim, config.num_heads * config.head_dim
  seconds = sum(count * 2 * rows * d_in * d_out / rate[(d_in, d_out)]
                for (d_in, d_out), count in decoder_products(config).items())
  attention = rows * config.num_decoder_layers * 4 * inner * (self_keys + cross_keys)
  return 1e3 * (seconds + attention / rate[(d, inner)])


def bound_ms(point: Mapping[str, float]) -> float:
  return max(point["flop_bound_ms"], point["byte_bound_ms"])


def roofline(results: Sequence[Mapping[str, Any]], config: network.T5Config, matmul_rate: float,
             bandwidth: float, itemsize: int,
             row_rates: Optional[Sequence[Mapping[str, Any]]] = None) -> List[Dict[str, Any]]:
  """Per batch size and length beam: the AR greedy step and the PaDIR pass, measured and bound.

  A PaDIR pass is (latency at the most iterations - at 1) / (their difference): the fixed work
  (encoder, lengths, scoring) cancels. An AR step is the greedy latency / T, an upper bound (the
  encoder is in it). Both from each point's fastest call, the statistic of the row rates the
  bound comes from (`row_cost` keeps each product's fastest call): a median against a fastest
  would charge the pass this machine's call-to-call noise. Each bound is max(FLOPs / the dense
  matmul rate, bytes / the memory bandwidth), both measured in this run; with `row_rates`
  (`measure_row_rates` at `roofline_row_counts`) the FLOP bound is `row_flop_bound_ms` at the
  call's own row count. The ceiling of PaDIR at K (the most iterations timed) against AR greedy
  is T steps at their bound over K passes at theirs (the encoder, in both, left out).
  """
  def bound(flops, nbytes, rows, self_keys, cross_keys):
    flop_ms = (1e3 * flops / matmul_rate if row_rates is None else
               row_flop_bound_ms(config, rows, self_keys, cross_keys, row_rates))
    return {"flops": flops, "bytes": nbytes, "rows": rows, "flop_bound_ms": flop_ms,
            "byte_bound_ms": 1e3 * nbytes / bandwidth}

  rows = []
  standard = [r for r in results if r["variant"] == "standard"]
  for ar in (r for r in standard if r["system"] == "ar_greedy"):
    batch, length, source = ar["batch_size"], ar["target_length"], ar["source_length"]
    step = {"measured_ms": ar["latency_ms_min"] / length,
            **bound(decoder_flops(config, batch, 1, length, source),
                    decoder_bytes(config, batch, length, source, itemsize), batch, length,
                    source)}
    for beam in sorted({r["length_beam"] for r in standard if r["system"] == "padir"}):
      padir = {r["iterations"]: r["latency_ms_min"] for r in standard
               if r["system"] == "padir" and r["batch_size"] == batch
               and r["length_beam"] == beam}
      if 1 not in padir or max(padir) == 1:
        continue
      most = max(padir)
      candidates = batch * beam
      pass_ = {"measured_ms": (padir[most] - padir[1]) / (most - 1),
               **bound(decoder_flops(config, candidates, length, length, source),
                       decoder_bytes(config, candidates, 0, source, itemsize),
                       candidates * length, length, source)}
      ceiling = length * bound_ms(step) / (most * bound_ms(pass_))
      speedup = ar["latency_ms_min"] / padir[most]
      rows.append({"batch_size": batch, "length_beam": beam, "target_length": length,
                   "source_length": source, "ar_step": step, "padir_pass": pass_,
                   "pass_over_step": pass_["measured_ms"] / step["measured_ms"],
                   "iterations": most, "speedup_fastest": speedup, "ceiling": ceiling,
                   "share_of_ceiling": speedup / ceiling})
  return rows
