"""`BaseModel`, T5X's model interface over a `network.Transformer`, which `ARModel`
(`padir.models.ar`) and `PadirModel` (`padir.models.padir`) implement; the types they share
(`Batch`, `Metrics`, `DecoderParams`) and `shift_right`. The interface: `padir/models/__init__.py`.
"""
import abc
import dataclasses
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from padir import decoding
from padir import losses
from padir import network
from padir.special_tokens import SpecialTokens

Array = jax.Array
PyTree = Any
Batch = Mapping[str, Array]
Metrics = Dict[str, Array]
# A teacher's rescoring callback: (encoder_input_tokens [N, S], tokens [N, T]) -> scores [N],
# higher is better. The model closes it over each candidate's source to give `padir_decode` its
# `decoding.RescoreFn` (tokens -> scores).
SourceRescoreFn = Callable[[Array, Array], Array]
# Decode-time options of a predict call: the model's decode config (`decoding.ARDecodeConfig`,
# `decoding.PadirDecodeConfig`), a mapping of overrides of its fields, or None (its defaults).
DecoderParams = Union[None, Mapping[str, Any], decoding.ARDecodeConfig, decoding.PadirDecodeConfig]


def _float(x) -> Array:
  return jnp.asarray(x, jnp.float32)


def _ratio(numerator, denominator) -> Array:
  return _float(numerator) / jnp.maximum(_float(denominator), 1e-8)


def shift_right(targets: Array, bos_id: int) -> Array:
  """AR decoder inputs: targets shifted one position right, BOS first. [B, T] -> [B, T]."""
  targets = jnp.asarray(targets, jnp.int32)
  return jnp.pad(targets, ((0, 0), (1, 0)), constant_values=bos_id)[:, :-1]


class BaseModel(abc.ABC):
  """T5X's model interface over a `network.Transformer`.

  Decode-time options are not the model's: each predict call takes them (`decoder_params`, an
  instance of the model's `decode_config_class` or overrides of its fields), and the entry
  points build them from gin (`translator.checkpoint_decode_config`).

  Args:
    module: the network; the model sets the config fields it owns (module docstring).
    optimizer_def: the optimizer (`padir.optimizers.Optimizer` or any optax transformation);
      kept for the trainer, unused by the model.
    special_tokens: the id layout; taken from `vocabulary.special_tokens` when omitted.
    vocabulary: optional vocabulary with `.special_tokens` (e.g. `padir.vocab.PadirVocabulary`),
      exposed as `input_vocabulary` / `output_vocabulary` for text decoding by callers.
    label_smoothing: token cross-entropy label smoothing.
    z_loss: z-loss coefficient.
    loss_normalizing_factor: as T5X's: None (summed loss), a number, or one of
      'NUM_REAL_TARGET_TOKENS' (per token), 'NUM_TOTAL_TARGET_TOKENS', 'AVERAGE_PER_SEQUENCE'.
  """
  decode_config_class: type  # decoding.ARDecodeConfig or decoding.PadirDecodeConfig

  def __init__(self,
               module: network.Transformer,
               optimizer_def: Any = None,
               special_tokens: Optional[SpecialTokens] = None,
               vocabulary: Any = None,
               label_smoothing: float = 0.0,
               z_loss: float = 0.0,
               loss_normalizing_factor: losses.LossNormalizingFactor = "NUM_REAL_TARGET_TOKENS"):
    if special_tokens is None:
      if vocabulary is None:
        raise ValueError("a model needs special_tokens or a vocabulary with .special_tokens")
      special_tokens = vocabulary.special_tokens
    elif vocabulary is not None and vocabulary.special_tokens != special_tokens:
      raise ValueError(f"special_tokens {special_tokens} differ from the vocabulary's "
                       f"{vocabulary.special_tokens}")
    if not 0.0 <= label_smoothing < 1.0:
      raise ValueError(f"label_smoothing={label_smoothing} must be in [0, 1)")
    if isinstance(loss_normalizing_factor, str):
      losses.special_loss_normalizing_factor(loss_normalizing_factor)  # Fails early if unknown.
    self.special_tokens = special_tokens
    self.vocabulary = vocabulary
    self.optimizer_def = optimizer_def
    self.label_smoothing = label_smoothing
    self.z_loss = z_loss
    self.loss_normalizing_factor = loss_normalizing_factor
    config = dataclasses.replace(module.config, vocab_size=special_tokens.vocab_size,
                                 max_target_length=special_tokens.max_target_length,
                                 **self._network_overrides())
    self.module = module.clone(config=config)

  @property
  def input_vocabulary(self):
    return self.vocabulary

  @property
  def output_vocabulary(self):
    return self.vocabulary

  @abc.abstractmethod
  def _network_overrides(self) -> Dict[str, Any]:
    """Network config fields that follow from the model's options."""

  def _call_options(self, decoder_params: DecoderParams) -> Dict[str, Any]:
    """The entries of a `decoder_params` mapping that are no decode config field but that the
    model takes for one call (none here)."""
    del decoder_params
    return {}

  def decode_config(self, decoder_params: DecoderParams = None) -> Any:
    """The decode-time options of a predict call: `decoder_params` itself if it is a
    `decode_config_class` instance, else those defaults (the class's, not gin's) with the
    mapping's overrides (less `_call_options`). Raises ValueError on an unknown option or a
    bad value."""
    if isinstance(decoder_params, self.decode_config_class):
      return decoder_params
    extra = self._call_options(decoder_params)
    params = {k: v for k, v in (decoder_params or {}).items() if k not in extra}
    names = decoding.field_names(self.decode_config_class)
    unknown = sorted(set(params) - set(names))
    if unknown:
      raise ValueError(f"decoder_params {unknown} unknown to {type(self).__name__}; it accepts "
                       f"{sorted(names)} (`{self.decode_config_class.__name__}`'s fields)")
    return self.decode_config_class(**params)

  def check_decoder_params(self, decoder_params: DecoderParams) -> None:
    """Raises ValueError naming an unknown or bad decoding option: what a predict call with
    `decoder_params` would raise while tracing, checked before."""
    self.decode_config(decoder_params)

  def _decode_length(self, batch: Batch, max_decode_length: Optional[int]) -> int:
    """T at inference: `max_decode_length`, else the batch's decoder length, else the
    vocabulary's max_target_length."""
    if max_decode_length is not None:
      return max_decode_length
    for name in ("decoder_input_tokens", "decoder_target_tokens"):
      if name in batch:
        return batch[name].shape[1]
    return self.special_tokens.max_target_length

  def _encoder_inputs(self, encoder_input_tokens: Array) -> Array:
    """The encoder input the network sees, [B, S] -> [B, S'] (identity here)."""
    return jnp.asarray(encoder_input_tokens, jnp.int32)

  def _apply(self, params: PyTree, method: Callable, *args, dropout_rng: Optional[Array] = None,
             **kwargs):
    rngs = None if dropout_rng is None else {"dropout": dropout_rng}
    return self.module.apply({"params": params}, *args, method=method, rngs=rngs, **kwargs)

  def _encode(self, params: PyTree, encoder_input_tokens: Array,
              dropout_rng: Optional[Array] = None, **kwargs) -> Array:
    """[B, S'] network-ready tokens -> encoded [B, S', D]."""
    return self._apply(params, self.module.encode, encoder_input_tokens,
                       dropout_rng is not None, dropout_rng=dropout_rng, **kwargs)

  def _cross_kv(self, params: PyTree, encoded: Array) -> network.CrossKV:
    return self._apply(params, self.module.precompute_cross_kv, encoded)

  def _token_loss(self, logits: Array, targets: Array, weights: Optional[Array],
                  batch: Batch) -> Tuple[Array, Array, Array]:
    """(loss, z_loss, number of weighted tokens) of one [B, T, V] logits tensor."""
    factor, weights = losses.get_loss_normalizing_factor_and_weights(
        self.loss_normalizing_factor, {**batch, "decoder_loss_weights": weights})
    return losses.compute_weighted_cross_entropy(
        logits, targets, weights, label_smoothing=self.label_smoothing, z_loss=self.z_loss,
        loss_normalizing_factor=factor)

  def get_initial_variables(self, rng: Array, input_shapes: Mapping[str, Tuple[int, ...]],
                            input_types: Optional[Mapping[str, Any]] = None) -> PyTree:
    """Initial variables (`{'params': ...}`, leaves boxed with logical axis names: use
    `flax.linen.meta.unbox` for plain arrays, `padir.partitioning.tree_shardings` for shardings).

    Args:
      rng: PRNG key.
      input_shapes: at least `encoder_input_tokens` and `decoder_input_tokens` (or
        `decoder_target_tokens`) shapes.
      input_types: optional dtypes of the same features (default int32).
    """
    input_types = {} if input_types is None else input_types
    decoder_name = ("decoder_input_tokens" if "decoder_input_tokens" in input_shapes
                    else "decoder_target_tokens")
    encoder_tokens = jnp.ones(input_shapes["encoder_input_tokens"],
                              input_types.get("encoder_input_tokens", jnp.int32))
    decoder_tokens = jnp.ones(input_shapes[decoder_name], input_types.get(decoder_name, jnp.int32))
    return self.module.init(rng, self._encoder_inputs(encoder_tokens), decoder_tokens,
                            enable_dropout=False)

  def initialize_from_data(self, params: PyTree,
                           batches: Iterable[Mapping[str, np.ndarray]]) -> PyTree:
    """Parameters fitted to training batches before the first step (none here)."""
    del batches
    return params

  @abc.abstractmethod
  def loss_fn(self, params: PyTree, batch: Batch,
              dropout_rng: Optional[Array]) -> Tuple[Array, Metrics]:
    """(scalar loss, metrics); `dropout_rng=None` means no dropout (evaluation)."""

  @abc.abstractmethod
  def predict_batch_with_aux(self, params: PyTree, batch: Batch, rng: Optional[Array] = None,
                             decoder_params: DecoderParams = None
                             ) -> Tuple[Array, Dict[str, Array]]:
    """(tokens [B, T], aux) decoded from `batch['encoder_input_tokens']` with the decode-time
    options `decoder_params` (see `decode_config`)."""

  def predict_batch(self, params: PyTree, batch: Batch, rng: Optional[Array] = None) -> Array:
    """The tokens of `predict_batch_with_aux`, [B, T]."""
    return self.predict_batch_with_aux(params, batch, rng)[0]

  @abc.abstractmethod
  def score_batch(self, params: PyTree, batch: Batch) -> Array:
    """Log-likelihood scores of `batch['decoder_target_tokens']`, [B]."""
