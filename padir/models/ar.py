"""`ARModel`: the autoregressive encoder-decoder (the baseline and the distillation teacher), on
`padir.decoding`'s AR search (`temperature_sample`, `beam_search`).
"""
import inspect
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import gin
import jax
import jax.numpy as jnp

from padir import decoding
from padir import layers
from padir import losses
from padir import network
from padir.models.base import (Array, BaseModel, Batch, DecoderParams, Metrics, PyTree,
                               SourceRescoreFn, _float, _ratio, shift_right)
from padir.special_tokens import SpecialTokens

# The arguments `ARModel` itself gives a `decode_fn` (never options of a predict call).
AR_DECODE_FN_CONTRACT = frozenset({"prompt", "cache", "tokens_to_logits", "num_decodes",
                                   "max_decode_len", "rng", "eos_id", "bos_id", "pad_id"})
NEG_INF = layers.NEG_INF  # Logit of ids the AR decoder may not emit.


# Registered in gin (`module=`) and written in a run's config.gin (gin writes a configurable
# under its class's `__module__`, set in the class body) under the package's name,
# `models.ARModel`, as before `padir/models.py` became a package: recorded configs and
# `--gin.models.ARModel.*` bindings keep resolving (`padir/models/__init__.py`).
@gin.configurable(module="padir.models")
class ARModel(BaseModel):
  """Autoregressive encoder-decoder (the baseline and the distillation teacher).

  `decoder_input_tokens` are the targets shifted right with BOS; teacher-forced training with
  label-smoothed cross-entropy and z-loss; decoding with the KV cache.

  Args (beyond `BaseModel`'s):
    decode_fn: a decoding method of T5X's kind that replaces the built-in ones (None: the
      `decoding.ARDecodeConfig.decode_method`s), e.g. `ARModel.decode_fn =
      @decoding.temperature_sample` in gin. Called as `decode_fn(prompt [B, 0], cache,
      tokens_to_logits, num_decodes=N, max_decode_len=T, rng=key, eos_id=, bos_id=, pad_id=,
      **options)` and returns tokens [B, N, T] and scores [B, N], best first
      (`padir.decoding`'s AR contract); N is the config's `num_decodes`, the options are a
      `decoder_params` mapping's entries that are no `ARDecodeConfig` field, passed through as
      they are (T5X's `decoder_params`); or bind them on the function in gin.
  """
  __module__ = "padir.models"
  decode_config_class = decoding.ARDecodeConfig

  def __init__(self,
               module: network.Transformer,
               optimizer_def: Any = None,
               special_tokens: Optional[SpecialTokens] = None,
               vocabulary: Any = None,
               label_smoothing: float = 0.0,
               z_loss: float = 0.0,
               loss_normalizing_factor: losses.LossNormalizingFactor = "NUM_REAL_TARGET_TOKENS",
               decode_fn: Optional[Callable[..., Tuple[Array, Array]]] = None):
    super().__init__(module, optimizer_def, special_tokens, vocabulary, label_smoothing, z_loss,
                     loss_normalizing_factor)
    self.decode_fn = decode_fn

  def _network_overrides(self) -> Dict[str, Any]:
    return dict(decoder_causal=True, length_head=None, rejecter_head=False)

  def _call_options(self, decoder_params: DecoderParams) -> Dict[str, Any]:
    """A `decoder_params` mapping's entries that are no `ARDecodeConfig` field: the options of a
    method bound as `decode_fn` (none without one). Raises ValueError on a name its signature
    does not take (or one of the contract's own arguments)."""
    if self.decode_fn is None or not isinstance(decoder_params, Mapping):
      return {}
    names = decoding.field_names(decoding.ARDecodeConfig)
    options = {k: v for k, v in decoder_params.items() if k not in names}
    accepted = set(inspect.signature(self.decode_fn).parameters) - AR_DECODE_FN_CONTRACT
    unknown = sorted(set(options) - accepted)
    if unknown:
      raise ValueError(f"decoder_params {unknown} unknown to ARModel and its decode_fn; it "
                       f"accepts {sorted(set(names) | accepted)}")
    return options

  def _decode_method(self, config: decoding.ARDecodeConfig, decoder_params: DecoderParams
                     ) -> Tuple[Callable[..., Tuple[Array, Array]], int, Dict[str, Any]]:
    """(decode_fn, rows per example, its options) of a predict call's `config`."""
    if self.decode_fn is not None:
      return self.decode_fn, config.num_decodes, self._call_options(decoder_params)
    if config.decode_method == "beam":
      return decoding.beam_search, config.beam_size, {"alpha": config.alpha}
    if config.decode_method == "greedy":
      return decoding.temperature_sample, 1, {"temperature": 0.0}
    return decoding.temperature_sample, config.num_decodes, {
        "temperature": config.temperature, "top_k": config.top_k, "top_p": config.top_p}

  def _output_logits(self, logits: Array) -> Array:
    """Logits [..., V] with every id but the real pieces at NEG_INF: the decoder emits only
    real pieces, never [MASK], [LENGTH] or the vocabulary's padding ids."""
    output_ids = self.special_tokens.is_real_piece(jnp.arange(logits.shape[-1]))
    return jnp.where(output_ids, logits, NEG_INF)

  def _packing(self, batch: Batch) -> Dict[str, Array]:
    return {name: batch[name] for name in ("encoder_segment_ids", "decoder_segment_ids")
            if name in batch}

  def _logits(self, params: PyTree, batch: Batch, dropout_rng: Optional[Array]) -> Array:
    """Teacher-forced logits [B, T, V]."""
    packing = self._packing(batch)
    encoder_tokens = self._encoder_inputs(batch["encoder_input_tokens"])
    encoded = self._encode(params, encoder_tokens, dropout_rng,
                           encoder_segment_ids=packing.get("encoder_segment_ids"))
    return self._apply(params, self.module.decode, encoded, encoder_tokens,
                       jnp.asarray(batch["decoder_input_tokens"], jnp.int32),
                       enable_dropout=dropout_rng is not None, dropout_rng=dropout_rng,
                       **packing)

  def loss_fn(self, params: PyTree, batch: Batch,
              dropout_rng: Optional[Array]) -> Tuple[Array, Metrics]:
    """Teacher-forced cross-entropy (+ z-loss), normalised by `loss_normalizing_factor`.

    Metrics: loss, cross_ent_loss (without z-loss), z_loss, accuracy (over weighted tokens).
    """
    targets = jnp.asarray(batch["decoder_target_tokens"], jnp.int32)
    weights = batch.get("decoder_loss_weights")
    if weights is None:
      weights = _float(targets > 0)
    logits = self._logits(params, batch, dropout_rng)
    loss, z_loss, _ = self._token_loss(logits, targets, _float(weights), batch)
    correct, counted = losses.weighted_accuracy(logits, targets, _float(weights))
    return loss, {"loss": loss, "cross_ent_loss": loss - z_loss, "z_loss": z_loss,
                  "accuracy": _ratio(correct, counted)}

  def score_batch(self, params: PyTree, batch: Batch) -> Array:
    """Summed log-probability of each target under teacher forcing, [B].

    The distribution is decoding's (over real pieces), so a greedy or beam (alpha 0) output
    scores here what decoding reported. Positions count by `decoder_loss_weights` (default:
    target != 0). `decoder_input_tokens` defaults to the targets shifted right.
    """
    targets = jnp.asarray(batch["decoder_target_tokens"], jnp.int32)
    if "decoder_input_tokens" not in batch:
      batch = {**batch, "decoder_input_tokens": shift_right(targets, self.special_tokens.bos_id)}
    weights = batch.get("decoder_loss_weights")
    weights = _float(targets > 0) if weights is None else _float(weights)
    log_probs = jax.nn.log_softmax(self._output_logits(self._logits(params, batch, None)))
    token_log_probs = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    return jnp.sum(token_log_probs * weights, axis=-1)

  def make_rescore_fn(self, params: PyTree, length_normalize: bool = True) -> SourceRescoreFn:
    """A teacher-rescoring callback for `PadirModel.predict_batch_with_aux`.

    Returns `(encoder_input_tokens [N, S], tokens [N, T]) -> [N]`: the log-probability of each
    candidate (cut at its first EOS) under this model, divided by its length when
    `length_normalize`.
    """

    def rescore(encoder_input_tokens: Array, tokens: Array) -> Array:
      tokens = decoding.cut_at_eos(jnp.asarray(tokens, jnp.int32), self.special_tokens.eos_id,
                                   self.special_tokens.pad_id)
      scores = self.score_batch(params, {"encoder_input_tokens": encoder_input_tokens,
                                         "decoder_target_tokens": tokens})
      if length_normalize:
        scores = scores / jnp.maximum(jnp.sum(tokens != self.special_tokens.pad_id, -1), 1)
      return scores

    return rescore

  def predict_batch_with_aux(self, params: PyTree, batch: Batch, rng: Optional[Array] = None,
                             decoder_params: DecoderParams = None,
                             return_all_decodes: bool = False) -> Tuple[Array, Dict[str, Array]]:
    """Decodes with the KV cache: the encoder and its cross-attention keys/values run once.

    Args:
      params: model parameters.
      batch: `encoder_input_tokens` [B, S]; the decode length T is the config's
        `max_decode_length`, else the batch's `decoder_input_tokens` / `decoder_target_tokens`
        length, else the vocabulary's max_target_length.
      rng: PRNG key for 'sample' (default: key 0).
      decoder_params: a `decoding.ARDecodeConfig` or overrides of its defaults (python values,
        static under jit), e.g. {'decode_method': 'greedy'}.
      return_all_decodes: return every beam / sample.

    Returns:
      tokens [B, T] int32 (PAD after EOS), or [B, K, T] best first with `return_all_decodes`;
      aux: 'scores' [B] (or [B, K]): summed log-probs ('greedy', 'sample') or brevity-penalised
      log-probs ('beam').
    """
    config = self.decode_config(decoder_params)
    decode_fn, num_rows, options = self._decode_method(config, decoder_params)
    encoder_tokens = self._encoder_inputs(batch["encoder_input_tokens"])
    batch_size = encoder_tokens.shape[0]
    length = self._decode_length(batch, config.max_decode_length)
    encoded = self._encode(params, encoder_tokens)
    cross_kv = jax.tree_util.tree_map(lambda x: jnp.repeat(x, num_rows, axis=0),
                                      self._cross_kv(params, encoded))
    encoder_rows = jnp.repeat(encoder_tokens, num_rows, axis=0)

    def create_cache(p, e):  # Only its shapes are used: the cache starts at zero.
      return self.module.apply(
          {"params": p}, None, encoder_tokens, jnp.ones((batch_size, length), jnp.int32),
          cross_kv=self._cross_kv(p, e), decode=True, max_decode_length=length,
          mutable=["cache"], method=self.module.decode)[1]["cache"]

    cache = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype),
                                   jax.eval_shape(create_cache, params, encoded))

    def tokens_to_logits(ids: Array, step_cache: PyTree) -> Tuple[Array, PyTree]:
      logits, variables = self.module.apply(
          {"params": params, "cache": step_cache}, None, encoder_rows, ids, cross_kv=cross_kv,
          decode=True, max_decode_length=length, mutable=["cache"], method=self.module.decode)
      return self._output_logits(logits[:, 0]), variables["cache"]

    tokens, scores = decode_fn(
        jnp.zeros((batch_size, 0), jnp.int32), cache, tokens_to_logits, num_decodes=num_rows,
        max_decode_len=length, rng=jax.random.PRNGKey(0) if rng is None else rng,
        eos_id=self.special_tokens.eos_id, bos_id=self.special_tokens.bos_id,
        pad_id=self.special_tokens.pad_id, **options)
    if return_all_decodes:
      return tokens, {"scores": scores}
    return tokens[:, 0], {"scores": scores[:, 0]}
