"""The T5.1.1 encoder-decoder (Flax linen) with PaDIR's length and rejecter heads.

`Transformer(config)` has the parameter tree of T5X's T5.1.1 network (`token_embedder/embedding`,
`encoder/layers_0/attention/query/kernel`, `encoder/relpos_bias/rel_embedding`,
`decoder/layers_0/encoder_decoder_attention/key/kernel`, `decoder/logits_dense/kernel`, ...), so
a T5X checkpoint maps onto it by name. One decoder serves both models: `decoder_causal=True` is
the AR decoder (causal mask, causal relative-position buckets, KV cache), `False` is PaDIR's
(padding-only mask, bidirectional buckets). Token id 0 is padding everywhere: a position whose
token is 0 is never attended to, except the decoder's first position, where T5 feeds id 0 as
its start token.

Methods (see docs/architecture.md): `encode`, `precompute_cross_kv`, `decode`,
`predict_length`, `accept_logits`, and `__call__`, which runs every configured submodule so
`init` creates every parameter.
"""
import dataclasses
import math
from typing import Any, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from padir import layers

Array = jax.Array
# Per decoder layer, the encoder's cross-attention (key, value), each [batch, src_len, heads, kv].
CrossKV = Tuple[Tuple[Array, Array], ...]

DTYPES = ("float32", "bfloat16")
LENGTH_HEADS = (None, "classifier", "offset", "affine", "fertility")


@dataclasses.dataclass(frozen=True)
class T5Config:
  """Dimensions and switches of the network.

  Attributes:
    vocab_size: model vocabulary (use `SpecialTokens.vocab_size`).
    emb_dim: model width (d_model).
    num_heads: attention heads.
    head_dim: size of each head.
    mlp_dim: MLP hidden size.
    mlp_activations: the MLP's activations, one input matrix each (T5X's names):
      ('gelu', 'linear') T5.1.1's gated GELU, ('relu',) the original T5's ReLU MLP.
    num_encoder_layers: encoder depth.
    num_decoder_layers: decoder depth (independent: deep-encoder/shallow-decoder is one setting).
    dropout_rate: residual, embedding, MLP and attention-weight dropout.
    dtype: activation dtype, 'float32' or 'bfloat16'; parameters and logits stay float32.
    logits_via_embedding: tie the output layer to the token embedding (else a separate float32
      `decoder/logits_dense`).
    relative_attention_num_buckets: relative position buckets.
    relative_attention_max_distance: offsets at or beyond this share the last bucket.
    decoder_causal: True for the AR decoder, False for PaDIR's non-causal decoder.
    length_head: None, 'classifier' (logits over lengths 0..max_target_length read at the
      [LENGTH] token, position 0), 'offset' (logits over target - source length offsets
      -R..R from the mean-pooled encoding and a code of the source length), 'affine'
      (a * source length + b) or 'fertility' (summed per-source-token fertilities).
    max_target_length: longest target; the classifier has max_target_length + 1 classes.
    max_length_offset: R of the 'offset' head (2R + 1 classes).
    rejecter_head: add the learned rejecter (logit that a predicted token is correct).
    attention: 'einsum' (the attention written out), 'xla' or 'cudnn' (one
      `jax.nn.dot_product_attention` call that XLA / cuDNN can fuse, where no attention dropout
      applies: `layers.fused_attention`). Parameters are the same for each.
  """
  vocab_size: int
  emb_dim: int
  num_heads: int
  head_dim: int
  mlp_dim: int
  num_encoder_layers: int
  num_decoder_layers: int
  dropout_rate: float = 0.1
  mlp_activations: Tuple[str, ...] = ("gelu", "linear")
  dtype: str = "float32"
  logits_via_embedding: bool = False
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  decoder_causal: bool = True
  length_head: Optional[str] = None
  max_target_length: int = 256
  max_length_offset: int = 16
  rejecter_head: bool = False
  attention: str = "einsum"

  def __post_init__(self):
    if self.dtype not in DTYPES:
      raise ValueError(f"dtype={self.dtype!r}: expected one of {DTYPES}")
    if self.attention not in layers.ATTENTION_IMPLEMENTATIONS:
      raise ValueError(f"attention={self.attention!r}: expected one of "
                       f"{layers.ATTENTION_IMPLEMENTATIONS}")
    unknown = sorted(set(self.mlp_activations) - set(layers.MLP_ACTIVATIONS))
    if not self.mlp_activations or unknown:
      raise ValueError(f"mlp_activations={tuple(self.mlp_activations)!r}: expected one or more "
                       f"of {sorted(layers.MLP_ACTIVATIONS)}")
    if self.length_head not in LENGTH_HEADS:
      raise ValueError(f"length_head={self.length_head!r}: expected one of {LENGTH_HEADS}")
    if self.num_encoder_layers < 1 or self.num_decoder_layers < 1:
      raise ValueError("the encoder and the decoder need at least one layer each")

  @property
  def activation_dtype(self) -> Any:
    return jnp.dtype(self.dtype)


# T5.1.1 dimensions; `tiny` is the CPU demo size, `test` the unit-test size. The vocabulary size
# is T5's (32128); set it from the PaDIR vocabulary (`SpecialTokens.vocab_size`).
PRESETS = {
    "test": dict(vocab_size=256, emb_dim=32, num_heads=2, head_dim=16, mlp_dim=64,
                 num_encoder_layers=2, num_decoder_layers=2, max_target_length=16),
    "tiny": dict(vocab_size=32128, emb_dim=256, num_heads=4, head_dim=64, mlp_dim=1024,
                 num_encoder_layers=3, num_decoder_layers=3),
    "small": dict(vocab_size=32128, emb_dim=512, num_heads=6, head_dim=64, mlp_dim=1024,
                  num_encoder_layers=8, num_decoder_layers=8),
    "base": dict(vocab_size=32128, emb_dim=768, num_heads=12, head_dim=64, mlp_dim=2048,
                 num_encoder_layers=12, num_decoder_layers=12),
    "large": dict(vocab_size=32128, emb_dim=1024, num_heads=16, head_dim=64, mlp_dim=2816,
                  num_encoder_layers=24, num_decoder_layers=24),
}


def get_config(name: str, **overrides) -> T5Config:
  """The named preset (`test`, `tiny`, `small`, `base`, `large`) with fields overridden."""
  if name not in PRESETS:
    raise ValueError(f"unknown network preset {name!r}; choose from {sorted(PRESETS)}")
  return T5Config(**{**PRESETS[name], **overrides})


def _attention(cfg: T5Config, name: Optional[str] = None) -> layers.MultiHeadDotProductAttention:
  return layers.MultiHeadDotProductAttention(cfg.num_heads, cfg.head_dim, cfg.dropout_rate,
                                             cfg.activation_dtype, cfg.attention, name=name)


def _relpos_bias(cfg: T5Config) -> layers.RelativePositionBiases:
  return layers.RelativePositionBiases(cfg.relative_attention_num_buckets,
                                       cfg.relative_attention_max_distance, cfg.num_heads,
                                       name="relpos_bias")


def _residual_dropout(cfg: T5Config) -> nn.Dropout:
  return nn.Dropout(cfg.dropout_rate, broadcast_dims=layers.BROADCAST_LENGTH)


def _embed_constraint(x: Array) -> Array:
  return nn.with_logical_constraint(x, ("batch", "length", "embed"))


# ----------------------------------------------------------------------------------------------
# Encoder.


class EncoderLayer(nn.Module):
  """Pre-norm self-attention + MLP, each with a residual connection."""
  config: T5Config

  @nn.compact
  def __call__(self, x: Array, mask: Array, bias: Array, enable_dropout: bool) -> Array:
    """`[batch, src_len, emb_dim]` -> `[batch, src_len, emb_dim]`."""
    cfg = self.config
    dtype = cfg.activation_dtype
    dropout = _residual_dropout(cfg)
    h = layers.RMSNorm(dtype=dtype, name="pre_attention_layer_norm")(x)
    h = _attention(cfg, "attention")(h, h, mask=mask, bias=bias, enable_dropout=enable_dropout)
    x = x + dropout(h, deterministic=not enable_dropout)
    h = layers.RMSNorm(dtype=dtype, name="pre_mlp_layer_norm")(x)
    h = layers.MlpBlock(cfg.mlp_dim, cfg.dropout_rate, dtype, tuple(cfg.mlp_activations),
                        name="mlp")(h, enable_dropout)
    return _embed_constraint(x + dropout(h, deterministic=not enable_dropout))


class Encoder(nn.Module):
  """Embedding, bidirectional layers sharing one relative position bias, final RMSNorm."""
  config: T5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(self, encoder_input_tokens: Array, encoder_segment_ids: Optional[Array] = None,
               enable_dropout: bool = False) -> Array:
    """Tokens `[batch, src_len]` (0 = padding) -> encoded `[batch, src_len, emb_dim]`."""
    cfg = self.config
    length = encoder_input_tokens.shape[1]
    mask = layers.padding_mask(encoder_input_tokens)
    if encoder_segment_ids is not None:
      mask = mask & layers.segment_mask(encoder_segment_ids, encoder_segment_ids)
    bias = _relpos_bias(cfg)(length, length, bidirectional=True)
    dropout = _residual_dropout(cfg)
    x = dropout(self.shared_embedding(encoder_input_tokens), deterministic=not enable_dropout)
    for i in range(cfg.num_encoder_layers):
      x = EncoderLayer(cfg, name=f"layers_{i}")(x, mask, bias, enable_dropout)
    x = layers.RMSNorm(dtype=cfg.activation_dtype, name="encoder_norm")(x)
    return _embed_constraint(dropout(x, deterministic=not enable_dropout))


# ----------------------------------------------------------------------------------------------
# Decoder.


class DecoderLayer(nn.Module):
  """Pre-norm self-attention, cross-attention to the encoder, and MLP, each residual."""
  config: T5Config

  def setup(self):
    cfg = self.config
    dtype = cfg.activation_dtype
    self.pre_self_attention_layer_norm = layers.RMSNorm(dtype=dtype)
    self.self_attention = _attention(cfg)
    self.pre_cross_attention_layer_norm = layers.RMSNorm(dtype=dtype)
    self.encoder_decoder_attention = _attention(cfg)
    self.pre_mlp_layer_norm = layers.RMSNorm(dtype=dtype)
    self.mlp = layers.MlpBlock(cfg.mlp_dim, cfg.dropout_rate, dtype,
                               tuple(cfg.mlp_activations))
    self.dropout = _residual_dropout(cfg)

  def cross_kv(self, encoded: Array) -> Tuple[Array, Array]:
    """This layer's cross-attention (key, value), each `[batch, src_len, heads, head_dim]`."""
    return self.encoder_decoder_attention.project_kv(encoded)

  def __call__(self, x: Array, cross_kv: Tuple[Array, Array], self_mask: Optional[Array],
               self_bias: Array, cross_mask: Array, enable_dropout: bool = False,
               decode: bool = False) -> Array:
    """`[batch, tgt_len, emb_dim]` -> `[batch, tgt_len, emb_dim]`."""
    deterministic = not enable_dropout
    h = self.pre_self_attention_layer_norm(x)
    h = self.self_attention(h, h, mask=self_mask, bias=self_bias,
                            enable_dropout=enable_dropout, decode=decode)
    x = x + self.dropout(h, deterministic=deterministic)
    h = self.pre_cross_attention_layer_norm(x)
    h = self.encoder_decoder_attention(h, kv=cross_kv, mask=cross_mask,
                                       enable_dropout=enable_dropout)
    x = x + self.dropout(h, deterministic=deterministic)
    h = self.mlp(self.pre_mlp_layer_norm(x), enable_dropout)
    return _embed_constraint(x + self.dropout(h, deterministic=deterministic))


class Decoder(nn.Module):
  """Embedding, layers sharing one relative position bias, final RMSNorm, float32 logits."""
  config: T5Config
  shared_embedding: nn.Module

  def setup(self):
    cfg = self.config
    self.relpos_bias = _relpos_bias(cfg)
    self.layers = [DecoderLayer(cfg) for _ in range(cfg.num_decoder_layers)]
    self.decoder_norm = layers.RMSNorm(dtype=cfg.activation_dtype)
    self.dropout = _residual_dropout(cfg)
    if not cfg.logits_via_embedding:
      self.logits_dense = layers.dense(cfg.vocab_size, ("embed", "vocab"), jnp.float32,
                                       "logits_dense")

  def precompute_cross_kv(self, encoded: Array) -> CrossKV:
    """Every layer's cross-attention (key, value) of `encoded` `[batch, src_len, emb_dim]`."""
    return tuple(layer.cross_kv(encoded) for layer in self.layers)

  def _self_attention_mask(self, decoder_input_tokens: Array,
                           decoder_segment_ids: Optional[Array]) -> Array:
    """Padding-only (PaDIR) or causal & padding mask, broadcastable to `[batch, 1, T, T]`."""
    mask = layers.decoder_key_mask(decoder_input_tokens, decoder_segment_ids)
    if self.config.decoder_causal:
      mask = mask & layers.causal_mask(decoder_input_tokens.shape[1])
    if decoder_segment_ids is not None:
      mask = mask & layers.segment_mask(decoder_segment_ids, decoder_segment_ids)
    return mask

  def __call__(self, encoded: Optional[Array], encoder_input_tokens: Array,
               decoder_input_tokens: Array, *, cross_kv: Optional[CrossKV] = None,
               encoder_segment_ids: Optional[Array] = None,
               decoder_segment_ids: Optional[Array] = None, enable_dropout: bool = False,
               decode: bool = False,
               max_decode_length: Optional[int] = None,
               logits_positions: Optional[Array] = None) -> Tuple[Array, Array]:
    """Float32 logits `[batch, tgt_len, vocab]` and hidden states `[batch, tgt_len, emb_dim]`.

    See `Transformer.decode` for the arguments.
    """
    cfg = self.config
    length = decoder_input_tokens.shape[1]
    packed = encoder_segment_ids is not None or decoder_segment_ids is not None
    if packed and (encoder_segment_ids is None or decoder_segment_ids is None):
      raise ValueError("packed decoding needs both encoder and decoder segment ids")
    if decode:
      if not cfg.decoder_causal:
        raise ValueError("decode=True (KV cache) needs a causal decoder")
      if max_decode_length is None:
        raise ValueError("decode=True needs max_decode_length")
      if packed:
        raise ValueError("decode=True does not take segment ids")
      self_mask = None  # The cache decides which positions each step sees.
      bias_length = max_decode_length
    else:
      self_mask = self._self_attention_mask(decoder_input_tokens, decoder_segment_ids)
      bias_length = length
    self_bias = self.relpos_bias(bias_length, bias_length, bidirectional=not cfg.decoder_causal)
    cross_mask = layers.padding_mask(encoder_input_tokens)
    if packed:
      cross_mask = cross_mask & layers.segment_mask(decoder_segment_ids, encoder_segment_ids)
    if cross_kv is None:
      if encoded is None:
        raise ValueError("decode needs `encoded` or precomputed `cross_kv`")
      cross_kv = self.precompute_cross_kv(encoded)
    if len(cross_kv) != cfg.num_decoder_layers:
      raise ValueError(f"cross_kv has {len(cross_kv)} layers, the decoder "
                       f"{cfg.num_decoder_layers}")

    deterministic = not enable_dropout
    x = self.dropout(self.shared_embedding(decoder_input_tokens), deterministic=deterministic)
    for layer, layer_kv in zip(self.layers, cross_kv):
      x = layer(x, layer_kv, self_mask, self_bias, cross_mask, enable_dropout, decode)
    hidden = self.dropout(self.decoder_norm(x), deterministic=deterministic)
    projected = hidden if logits_positions is None else jnp.take_along_axis(
        hidden, logits_positions[..., None], axis=1)
    if cfg.logits_via_embedding:
      # T5X scales tied logits by 1/sqrt(emb_dim).
      logits = self.shared_embedding.attend(projected) / math.sqrt(cfg.emb_dim)
    else:
      logits = self.logits_dense(projected)
    logits = nn.with_logical_constraint(logits, ("batch", "length", "vocab"))
    return logits, hidden


# ----------------------------------------------------------------------------------------------
# PaDIR heads.


def _linear_params(module: nn.Module, in_dim: int, out_dim: int, out_axis: Optional[str],
                   kernel_init) -> Tuple[Array, Array]:
  """Float32 `kernel [in_dim, out_dim]` (axes ('embed', out_axis)) and `bias [out_dim]`."""
  kernel = module.param("kernel", nn.with_logical_partitioning(kernel_init, ("embed", out_axis)),
                        (in_dim, out_dim), jnp.float32)
  bias = module.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, (out_axis,)),
                      (out_dim,), jnp.float32)
  return kernel, bias


def _source_lengths(encoder_input_tokens: Array) -> Array:
  """Non-pad count per row, float32 `[batch]`."""
  return jnp.sum(encoder_input_tokens != 0, axis=-1).astype(jnp.float32)


class LengthClassifier(nn.Module):
  """Logits over target lengths 0..max_target_length from the encoding at position 0."""
  max_target_length: int

  @nn.compact
  def __call__(self, encoded: Array, encoder_input_tokens: Array) -> Array:
    """`[batch, src_len, emb_dim]` -> float32 logits `[batch, max_target_length + 1]`."""
    del encoder_input_tokens  # The [LENGTH] token is at position 0.
    kernel, bias = _linear_params(self, encoded.shape[-1], self.max_target_length + 1,
                                  "length_classes", layers.MLP_KERNEL_INIT)
    return encoded[:, 0].astype(jnp.float32) @ kernel + bias


def length_code(lengths: Array, dim: int) -> Array:
  """Sinusoidal code of (real-valued) lengths, as Transformer positions: `[batch]` ->
  float32 `[batch, dim]`, unit-scale entries; nearby lengths get nearby codes."""
  half = -(-dim // 2)
  frequencies = 1.0 / (1e4 ** (jnp.arange(half, dtype=jnp.float32) / half))
  angles = jnp.asarray(lengths, jnp.float32)[:, None] * frequencies
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)[:, :dim]


class OffsetLength(nn.Module):
  """Logits over length offsets (target length - source length) -R..R, fairseq's
  `--pred-length-offset`: from the mean-pooled encoding and a sinusoidal code of the source
  length, so the head can count (T5's relative positions cannot)."""
  max_offset: int

  @nn.compact
  def __call__(self, encoded: Array, encoder_input_tokens: Array) -> Array:
    """`[batch, src_len, emb_dim]` -> float32 logits `[batch, 2R + 1]`, class j = offset j - R."""
    real = (encoder_input_tokens != 0).astype(jnp.float32)[..., None]
    pooled = (jnp.sum(encoded.astype(jnp.float32) * real, axis=1) /
              jnp.maximum(jnp.sum(real, axis=1), 1.0))
    features = jnp.concatenate(
        [pooled, length_code(_source_lengths(encoder_input_tokens), encoded.shape[-1])], axis=-1)
    kernel, bias = _linear_params(self, features.shape[-1], 2 * self.max_offset + 1,
                                  "length_classes", layers.MLP_KERNEL_INIT)
    return features @ kernel + bias


class AffineLength(nn.Module):
  """Predicted length `a * source_length + b`, source length = non-pad source tokens."""

  @nn.compact
  def __call__(self, encoded: Array, encoder_input_tokens: Array) -> Array:
    """Float32 `[batch]`; starts at a=1, b=0 (target length = source length)."""
    del encoded
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ()), (),
                       jnp.float32)
    bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, ()), (),
                      jnp.float32)
    return scale * _source_lengths(encoder_input_tokens) + bias


class FertilityLength(nn.Module):
  """Predicted length = sum over source tokens of their fertility `1 + offset`.

  Offsets are a linear function of the stop-gradient encoder states, so the length loss never
  shapes the encoder. Zero-initialised: it starts by predicting the source length.
  """

  @nn.compact
  def __call__(self, encoded: Array, encoder_input_tokens: Array) -> Array:
    """`[batch, src_len, emb_dim]` -> float32 `[batch]`."""
    kernel, bias = _linear_params(self, encoded.shape[-1], 1, None, nn.initializers.zeros)
    states = jax.lax.stop_gradient(encoded).astype(jnp.float32)
    offsets = (states @ kernel + bias)[..., 0]
    return jnp.sum(jnp.where(encoder_input_tokens != 0, 1.0 + offsets, 0.0), axis=-1)


class RejecterHead(nn.Module):
  """Logit that the argmax token at each position is correct, on stop-gradient states."""

  @nn.compact
  def __call__(self, hidden: Array) -> Array:
    """`[batch, tgt_len, emb_dim]` -> float32 `[batch, tgt_len]`."""
    kernel, bias = _linear_params(self, hidden.shape[-1], 1, None, layers.MLP_KERNEL_INIT)
    states = jax.lax.stop_gradient(hidden).astype(jnp.float32)
    return (states @ kernel + bias)[..., 0]


# ----------------------------------------------------------------------------------------------
# The model.


class Transformer(nn.Module):
  """T5.1.1 encoder-decoder with optional PaDIR length and rejecter heads."""
  config: T5Config

  def setup(self):
    cfg = self.config
    self.token_embedder = layers.Embed(cfg.vocab_size, cfg.emb_dim, cfg.activation_dtype)
    self.encoder = Encoder(cfg, self.token_embedder)
    self.decoder = Decoder(cfg, self.token_embedder)
    if cfg.length_head == "classifier":
      self.length_head = LengthClassifier(cfg.max_target_length)
    elif cfg.length_head == "offset":
      self.length_head = OffsetLength(cfg.max_length_offset)
    elif cfg.length_head == "affine":
      self.length_head = AffineLength()
    elif cfg.length_head == "fertility":
      self.length_head = FertilityLength()
    if cfg.rejecter_head:
      self.rejecter_head = RejecterHead()

  def encode(self, encoder_input_tokens: Array, enable_dropout: bool = False, *,
             encoder_segment_ids: Optional[Array] = None) -> Array:
    """Tokens `[batch, src_len]` (0 = padding) -> encoded `[batch, src_len, emb_dim]`.

    `encoder_segment_ids` `[batch, src_len]` keeps packed examples apart.
    """
    return self.encoder(encoder_input_tokens, encoder_segment_ids, enable_dropout)

  def precompute_cross_kv(self, encoded: Array) -> CrossKV:
    """The decoder's cross-attention keys/values of one source, reusable by every `decode`.

    Returns a tuple over decoder layers of (key, value), each `[batch, src_len, heads,
    head_dim]`.
    """
    return self.decoder.precompute_cross_kv(encoded)

  def decode(self, encoded: Optional[Array], encoder_input_tokens: Array,
             decoder_input_tokens: Array, *, cross_kv: Optional[CrossKV] = None,
             enable_dropout: bool = False, decode: bool = False,
             max_decode_length: Optional[int] = None, return_hidden: bool = False,
             encoder_segment_ids: Optional[Array] = None,
             decoder_segment_ids: Optional[Array] = None,
             logits_positions: Optional[Array] = None):
    """Decoder logits for `decoder_input_tokens`.

    Args:
      encoded: `[batch, src_len, emb_dim]` from `encode`; may be None when `cross_kv` is given.
      encoder_input_tokens: `[batch, src_len]`; its padding (id 0) is masked in cross-attention.
      decoder_input_tokens: `[batch, tgt_len]` (0 = padding); `[batch, 1]` per cached step.
      cross_kv: `precompute_cross_kv(encoded)`, to skip recomputing the cross keys/values.
      enable_dropout: apply dropout (needs a 'dropout' rng).
      decode: T5X's single-step KV-cache mode (causal decoder only), with a mutable `cache`
        collection. Create the cache with one call on `[batch, max_decode_length]` tokens (its
        outputs are not meaningful), then feed one token per call.
      max_decode_length: the cache length; required with `decode=True`.
      return_hidden: also return the final hidden states.
      encoder_segment_ids: `[batch, src_len]` segment ids of packed examples (with
        `decoder_segment_ids`).
      decoder_segment_ids: `[batch, tgt_len]` segment ids of packed examples.
      logits_positions: `[batch, M]` int32: project only these positions' hidden states to the
      vocabulary (the layers still run on every position).

    Returns:
      logits `[batch, tgt_len, vocab]` float32 (`[batch, M, vocab]` with `logits_positions`),
      and hidden `[batch, tgt_len, emb_dim]` when `return_hidden`.
    """
    logits, hidden = self.decoder(
        encoded, encoder_input_tokens, decoder_input_tokens, cross_kv=cross_kv,
        encoder_segment_ids=encoder_segment_ids, decoder_segment_ids=decoder_segment_ids,
        enable_dropout=enable_dropout, decode=decode, max_decode_length=max_decode_length,
        logits_positions=logits_positions)
    return (logits, hidden) if return_hidden else logits

  def predict_length(self, encoded: Array, encoder_input_tokens: Array) -> Array:
    """Classifier: logits `[batch, max_target_length + 1]`; offset: logits `[batch, 2R + 1]`;
    affine/fertility: `[batch]` float."""
    if self.config.length_head is None:
      raise ValueError("this network has no length head (config.length_head is None)")
    return self.length_head(encoded, encoder_input_tokens)

  def accept_logits(self, hidden: Array) -> Array:
    """Learned rejecter: `[batch, tgt_len, emb_dim]` -> logits `[batch, tgt_len]`."""
    if not self.config.rejecter_head:
      raise ValueError("this network has no rejecter head (config.rejecter_head is False)")
    return self.rejecter_head(hidden)

  def __call__(self, encoder_input_tokens: Array, decoder_input_tokens: Array,
               enable_dropout: bool = False, *, encoder_segment_ids: Optional[Array] = None,
               decoder_segment_ids: Optional[Array] = None) -> Array:
    """Teacher-forced logits `[batch, tgt_len, vocab]`; runs every head so `init` builds all."""
    encoded = self.encode(encoder_input_tokens, enable_dropout,
                          encoder_segment_ids=encoder_segment_ids)
    logits, hidden = self.decode(
        encoded, encoder_input_tokens, decoder_input_tokens, enable_dropout=enable_dropout,
        return_hidden=True, encoder_segment_ids=encoder_segment_ids,
        decoder_segment_ids=decoder_segment_ids)
    if self.config.length_head is not None:
      self.predict_length(encoded, encoder_input_tokens)
    if self.config.rejecter_head:
      self.accept_logits(hidden)
    return logits
