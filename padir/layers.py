"""T5.1.1 building blocks in Flax linen: norms, attention, MLP, relative position bias, embedding.

Every parameter is float32 and carries logical axis names (`embed`, `mlp`, `heads`, `kv`,
`joined_kv`, `vocab`, `relpos_buckets`) through `nn.with_logical_partitioning`; key activations
are constrained with `nn.with_logical_constraint`, so `padir.partitioning.LOGICAL_AXIS_RULES`
shards them over a ('data', 'model') mesh. Activations are computed in a configurable `dtype`
(bf16 on accelerators); attention logits and softmax run in float32.

Parameter names and shapes follow T5X's T5.1.1 network, so a T5X checkpoint maps onto ours by
name (attention kernels are stored joined, `[embed, heads * head_dim]`, as T5X stores them).

Masks are boolean, `True` where attention is allowed, shaped to broadcast against
`[batch, heads, q_length, kv_length]`.
"""
import math
from typing import Any, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array
DType = Any

# A logit that is never chosen: where a mask forbids attention (T5X's value), and for ids a
# decoder may not emit. Finite, so a log-softmax over it stays exact.
NEG_INF = -1e10

# T5X's initialisers.
ATTENTION_KERNEL_INIT = nn.initializers.variance_scaling(1.0, "fan_in", "normal")
MLP_KERNEL_INIT = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
EMBEDDING_INIT = nn.initializers.normal(stddev=1.0)
RELPOS_INIT = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")

# Residual and embedding dropout shares its mask along the length axis of `[batch, length, emb]`.
BROADCAST_LENGTH = (-2,)
# The MLP's activations by name (T5X's `mlp_activations`); 'gelu' is the tanh approximation.
MLP_ACTIVATIONS = {"gelu": nn.gelu, "relu": nn.relu, "linear": lambda x: x}


def dense(features: int, axes: Tuple[str, str], dtype: DType, name: str,
          kernel_init=MLP_KERNEL_INIT) -> nn.Dense:
  """A bias-free float32-parameter Dense whose `[in, features]` kernel has logical `axes`."""
  return nn.Dense(features, use_bias=False, dtype=dtype, param_dtype=jnp.float32,
                  kernel_init=nn.with_logical_partitioning(kernel_init, axes), name=name)


# ----------------------------------------------------------------------------------------------
# Masks.


def padding_mask(key_tokens: Array) -> Array:
  """Keys that are real tokens (id != 0): `[batch, kv_length]` -> `[batch, 1, 1, kv_length]`."""
  return (key_tokens != 0)[:, None, None, :]


def decoder_key_mask(decoder_input_tokens: Array,
                     decoder_segment_ids: Optional[Array] = None) -> Array:
  """`padding_mask` of the decoder's keys, where the first position of each example is always a
  key: T5's decoder starts with id 0 (= PAD) and attends to it (T5X builds this mask from the
  targets). With a non-zero start token (PaDIR's BOS) it equals `padding_mask`.

  `[batch, length]` (and segment ids `[batch, length]`, 0 = padding) ->
  `[batch, 1, 1, length]`.
  """
  if decoder_segment_ids is None:
    first = jnp.arange(decoder_input_tokens.shape[1]) == 0
  else:
    previous = jnp.pad(decoder_segment_ids[:, :-1], ((0, 0), (1, 0)))
    first = (decoder_segment_ids != 0) & (decoder_segment_ids != previous)
  return ((decoder_input_tokens != 0) | first)[:, None, None, :]


def causal_mask(length: int) -> Array:
  """Query i sees keys j <= i: `[1, 1, length, length]`."""
  idx = jnp.arange(length)
  return (idx[None, :] <= idx[:, None])[None, None]


def segment_mask(query_segment_ids: Array, key_segment_ids: Array) -> Array:
  """Packed examples see only their own segment.

  `[batch, q_length]`, `[batch, kv_length]` -> `[batch, 1, q_length, kv_length]`.
  """
  return (query_segment_ids[:, :, None] == key_segment_ids[:, None, :])[:, None]


# ----------------------------------------------------------------------------------------------
# Relative position bias.


def relative_position_bucket(relative_position: Array, bidirectional: bool = True,
                             num_buckets: int = 32, max_distance: int = 128) -> Array:
  """T5's bucket of each `key_position - query_position` (int array of any shape).

  Offsets below `max_exact` (half the buckets available to one direction) get a bucket each;
  larger ones share logarithmically wider buckets up to `max_distance`, beyond which everything
  lands in the last bucket. Bidirectional: keys after the query use the upper half of the
  buckets. Causal (unidirectional): every key after the query maps to bucket 0.
  """
  distance = -relative_position  # > 0 for keys before the query.
  bucket = jnp.zeros_like(relative_position)
  if bidirectional:
    num_buckets //= 2
    bucket = bucket + (distance < 0).astype(relative_position.dtype) * num_buckets
    distance = jnp.abs(distance)
  else:
    distance = jnp.maximum(distance, 0)
  max_exact = num_buckets // 2
  log_ratio = (jnp.log(distance.astype(jnp.float32) / max_exact + np.finfo(np.float32).eps)
               / math.log(max_distance / max_exact))
  large = max_exact + (log_ratio * (num_buckets - max_exact)).astype(relative_position.dtype)
  large = jnp.minimum(large, num_buckets - 1)
  return bucket + jnp.where(distance < max_exact, distance, large)


class RelativePositionBiases(nn.Module):
  """T5 bucketed relative position bias, shared by all layers of a stack.

  Attributes:
    num_buckets: number of relative position buckets.
    max_distance: offsets at or beyond this share the last bucket.
    num_heads: attention heads (one scalar bias per head and bucket).
  """
  num_buckets: int
  max_distance: int
  num_heads: int

  @nn.compact
  def __call__(self, q_length: int, k_length: int, bidirectional: bool) -> Array:
    """Float32 bias `[1, heads, q_length, k_length]`, added to the attention logits."""
    rel_embedding = self.param(
        "rel_embedding", nn.with_logical_partitioning(RELPOS_INIT, ("heads", "relpos_buckets")),
        (self.num_heads, self.num_buckets), jnp.float32)
    relative = jnp.arange(k_length)[None, :] - jnp.arange(q_length)[:, None]
    buckets = relative_position_bucket(relative, bidirectional, self.num_buckets,
                                       self.max_distance)
    return jnp.take(rel_embedding, buckets, axis=1)[None]


# ----------------------------------------------------------------------------------------------
# Norm, embedding, MLP.


class RMSNorm(nn.Module):
  """T5 layer norm: scale by the root mean square, no centring, no bias (statistics in f32)."""
  epsilon: float = 1e-6
  dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """`[..., emb_dim]` -> `[..., emb_dim]` in `dtype`."""
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                       (x.shape[-1],), jnp.float32)
    x = jnp.asarray(x, jnp.float32)
    x = x * lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + self.epsilon)
    return x.astype(self.dtype) * scale.astype(self.dtype)


class Embed(nn.Module):
  """Token embedding `[vocab, emb_dim]`, also usable as a tied output layer (`attend`)."""
  num_embeddings: int
  features: int
  dtype: DType = jnp.float32

  def setup(self):
    self.embedding = self.param(
        "embedding", nn.with_logical_partitioning(EMBEDDING_INIT, ("vocab", "embed")),
        (self.num_embeddings, self.features), jnp.float32)

  def __call__(self, ids: Array) -> Array:
    """Ids `[batch, length]` -> `[batch, length, emb_dim]` in `dtype`."""
    x = jnp.take(self.embedding, ids, axis=0).astype(self.dtype)
    return nn.with_logical_constraint(x, ("batch", "length", "embed"))

  def attend(self, query: Array) -> Array:
    """Float32 logits `[batch, length, vocab]` of `[batch, length, emb_dim]` queries."""
    return jnp.dot(query.astype(jnp.float32), self.embedding.T)


class MlpBlock(nn.Module):
  """T5X's feed-forward block: `wo(prod_i act_i(wi_i(x)))`, one `wi_i` per activation.

  ('gelu', 'linear') is T5.1.1's gated GELU (`wi_0`, `wi_1`); ('relu',) is the original T5's
  single-matrix ReLU MLP (`wi`), a third fewer FLOPs and a cheaper backward pass.
  """
  mlp_dim: int
  dropout_rate: float = 0.0
  dtype: DType = jnp.float32
  activations: Tuple[str, ...] = ("gelu", "linear")

  @nn.compact
  def __call__(self, x: Array, enable_dropout: bool = False) -> Array:
    """`[batch, length, emb_dim]` -> `[batch, length, emb_dim]`."""
    names = ["wi"] if len(self.activations) == 1 else [f"wi_{i}" for i in range(len(
        self.activations))]
    h = None
    for name, activation in zip(names, self.activations):
      a = MLP_ACTIVATIONS[activation](dense(self.mlp_dim, ("embed", "mlp"), self.dtype, name)(x))
      h = a if h is None else h * a
    h = nn.Dropout(self.dropout_rate, broadcast_dims=BROADCAST_LENGTH)(
        h, deterministic=not enable_dropout)
    h = nn.with_logical_constraint(h, ("batch", "length", "mlp"))
    out = dense(x.shape[-1], ("mlp", "embed"), self.dtype, "wo")(h)
    return nn.with_logical_constraint(out, ("batch", "length", "embed"))


# ----------------------------------------------------------------------------------------------
# Attention.


def _query_init(head_dim: int):
  """T5X folds the 1/sqrt(head_dim) attention scaling into the query kernel's initialiser."""
  def init(key, shape, dtype=jnp.float32):
    return ATTENTION_KERNEL_INIT(key, shape, dtype) / math.sqrt(head_dim)
  return init


ATTENTION_IMPLEMENTATIONS = ("einsum", "xla", "cudnn")


def fused_attention(query: Array, key: Array, value: Array, mask: Optional[Array],
                    bias: Optional[Array], implementation: str) -> Array:
  """T5's attention as one `jax.nn.dot_product_attention` call: no scaling (T5 folds it into
  the query kernel), the relative-position bias added to the logits, the boolean mask, the
  softmax in float32. `query` `[batch, q, heads, head_dim]`, `key`/`value` `[batch, kv, heads,
  head_dim]`, mask/bias broadcastable to `[batch, heads, q, kv]` (4-D) -> `[batch, q, heads,
  head_dim]`. 'xla': XLA's implementation (the arithmetic of the einsum path); 'cudnn':
  cuDNN's fused kernel (NVIDIA GPUs, bfloat16/float16; the bias in the activation dtype)."""
  if implementation not in ("xla", "cudnn"):
    raise ValueError(f"fused attention implementation {implementation!r}: 'xla' or 'cudnn'")
  dtype = query.dtype
  if bias is not None and implementation == "cudnn":
    bias = bias.astype(dtype)
  return jax.nn.dot_product_attention(
      query, key.astype(dtype), value.astype(dtype), bias=bias, mask=mask, scale=1.0,
      implementation=None if implementation == "xla" else implementation)


class MultiHeadDotProductAttention(nn.Module):
  """Multi-head dot-product attention, T5 style (no biases, no explicit query scaling).

  Two ways to avoid recomputing keys/values:
  - `kv=(key, value)`: precomputed projections of the attended sequence (`project_kv`), e.g.
    the encoder's cross-attention keys/values reused by every decoder call on one source;
  - `decode=True`: T5X's single-step KV cache in the `cache` collection (`cached_key`,
    `cached_value`, `cache_index`). The first call, with the full `[batch, max_length, ...]`
    input, only creates the zero cache; later calls take one query position each, append its
    key/value at `cache_index` and attend to positions `<= cache_index`.

  Attributes:
    num_heads: attention heads.
    head_dim: size of each head.
    dropout_rate: dropout on the attention weights.
    dtype: activation dtype.
    implementation: 'einsum' (two einsums around a float32 softmax, written out here), or
      `fused_attention`'s 'xla' / 'cudnn' (one `jax.nn.dot_product_attention` call, which XLA
      or cuDNN can fuse; the same arithmetic) where no attention dropout applies.
  """
  num_heads: int
  head_dim: int
  dropout_rate: float = 0.0
  dtype: DType = jnp.float32
  implementation: str = "einsum"

  def setup(self):
    joined = self.num_heads * self.head_dim
    self.query = dense(joined, ("embed", "joined_kv"), self.dtype, "query",
                       kernel_init=_query_init(self.head_dim))
    self.key = dense(joined, ("embed", "joined_kv"), self.dtype, "key",
                     kernel_init=ATTENTION_KERNEL_INIT)
    self.value = dense(joined, ("embed", "joined_kv"), self.dtype, "value",
                       kernel_init=ATTENTION_KERNEL_INIT)
    self.attention_dropout = nn.Dropout(self.dropout_rate)

  def _split_heads(self, x: Array) -> Array:
    """`[batch, length, heads * head_dim]` -> `[batch, length, heads, head_dim]`."""
    x = x.reshape(x.shape[:-1] + (self.num_heads, self.head_dim))
    return nn.with_logical_constraint(x, ("batch", "length", "heads", "kv"))

  def project_kv(self, inputs_kv: Array) -> Tuple[Array, Array]:
    """Keys and values `[batch, kv_length, heads, head_dim]` of `[batch, kv_length, emb_dim]`."""
    return self._split_heads(self.key(inputs_kv)), self._split_heads(self.value(inputs_kv))

  def _use_cache(self, key: Array, value: Array, mask: Optional[Array],
                 bias: Optional[Array]):
    """Decode mode: read/write the KV cache; returns the key, value, mask and bias to use."""
    is_initialized = self.has_variable("cache", "cached_key")
    cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
    cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
    cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
    if not is_initialized:
      return key, value, mask, bias
    if key.shape[1] != 1:
      raise ValueError(f"decode=True with an initialised cache takes one position at a time, "
                       f"got length {key.shape[1]}")
    index = cache_index.value
    max_length = cached_key.value.shape[1]
    cached_key.value = lax.dynamic_update_slice_in_dim(cached_key.value, key, index, axis=1)
    cached_value.value = lax.dynamic_update_slice_in_dim(cached_value.value, value, index,
                                                         axis=1)
    cache_index.value = index + 1
    step_mask = (jnp.arange(max_length) <= index)[None, None, None, :]
    if bias is not None:
      bias = lax.dynamic_slice_in_dim(bias, index, 1, axis=2)
    return cached_key.value, cached_value.value, step_mask, bias

  @nn.compact
  def __call__(self, inputs_q: Array, inputs_kv: Optional[Array] = None, *,
               kv: Optional[Tuple[Array, Array]] = None, mask: Optional[Array] = None,
               bias: Optional[Array] = None, enable_dropout: bool = False,
               decode: bool = False) -> Array:
    """Attend from `inputs_q` to `inputs_kv` (or to precomputed `kv`).

    Args:
      inputs_q: queries' inputs `[batch, q_length, emb_dim]`.
      inputs_kv: attended inputs `[batch, kv_length, emb_dim]`; ignored when `kv` is given.
      kv: precomputed `(key, value)`, each `[batch, kv_length, heads, head_dim]`.
      mask: boolean, broadcastable to `[batch, heads, q_length, kv_length]`; ignored in decode
        mode once the cache exists (the cache position decides then).
      bias: added to the logits, broadcastable to `[batch, heads, q_length, kv_length]`; in
        decode mode `[1, heads, max_length, max_length]`, its row `cache_index` is used.
      enable_dropout: apply attention dropout.
      decode: single-step KV-cache mode (self-attention only).

    Returns:
      `[batch, q_length, emb_dim]` in `dtype`.
    """
    if kv is not None and decode:
      raise ValueError("precomputed kv and the decode cache are exclusive")
    query = self._split_heads(self.query(inputs_q))
    key, value = kv if kv is not None else self.project_kv(inputs_kv)
    if decode:
      key, value, mask, bias = self._use_cache(key, value, mask, bias)
    if self.implementation != "einsum" and not (enable_dropout and self.dropout_rate > 0):
      x = fused_attention(query, key, value, mask, bias, self.implementation)
    else:
      logits = jnp.einsum("bqhd,bkhd->bhqk", query, key.astype(query.dtype),
                          preferred_element_type=jnp.float32)
      if bias is not None:
        logits = logits + bias
      if mask is not None:
        logits = jnp.where(mask, logits, NEG_INF)
      weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
      weights = self.attention_dropout(weights, deterministic=not enable_dropout)
      x = jnp.einsum("bhqk,bkhd->bqhd", weights, value.astype(self.dtype))
    x = nn.with_logical_constraint(x, ("batch", "length", "heads", "kv"))
    x = x.reshape(x.shape[:2] + (self.num_heads * self.head_dim,))
    out = dense(inputs_q.shape[-1], ("joined_kv", "embed"), self.dtype, "out",
                kernel_init=ATTENTION_KERNEL_INIT)(x)
    return nn.with_logical_constraint(out, ("batch", "length", "embed"))
