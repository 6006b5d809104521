"""The AR and PaDIR models behind T5X's model interface.

Every model has
  `get_initial_variables(rng, input_shapes, input_types=None) -> variables`,
  `loss_fn(params, batch, dropout_rng) -> (loss, metrics)`,
  `predict_batch_with_aux(params, batch, rng=None, decoder_params=None) -> (tokens [B, T], aux)`,
  `score_batch(params, batch) -> [B]`,
all pure functions of their arguments, to be wrapped in `jax.jit` by the caller. Batches use T5X's
feature names (`encoder_input_tokens`, `decoder_target_tokens`, `decoder_input_tokens`,
`decoder_loss_weights`, and for packed AR batches `encoder_segment_ids` / `decoder_segment_ids`).
Metrics are a flat dict of float32 scalars.

- `ARModel`: causal decoder, teacher forcing; greedy / beam / sampling with the KV cache.
- `PadirModel`: non-causal decoder, length predictor (`padir.length`), rejecter, parallel
  iterative refinement, unrolled multi-stage training built from `padir.decoding`'s pieces so
  that training and inference choose, reject and re-mask tokens identically. Its parts are
  objects bound in gin: `losses.LossSettings`, a `length.LengthPredictor`, a
  `decoding.RefinementScheme`, a `TrainingRecipe`.

The model owns the network-config fields that follow from its options and its vocabulary
(`vocab_size`, `max_target_length`, `decoder_causal`, `length_head`, `rejecter_head`): it sets
them on the `module` it is given, so gin only picks the network's size.
"""
import abc
import dataclasses
import functools
import inspect
import warnings
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import flax
import gin
import jax
import jax.numpy as jnp
import numpy as np

from padir import decoding
from padir import layers
from padir import length
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

# The arguments `ARModel` itself gives a `decode_fn` (never options of a predict call).
AR_DECODE_FN_CONTRACT = frozenset({"prompt", "cache", "tokens_to_logits", "num_decodes",
                                   "max_decode_len", "rng", "eos_id", "bos_id", "pad_id"})
NEG_INF = layers.NEG_INF  # Logit of ids the AR decoder may not emit.


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

  def check_train_batch(self, batch: Mapping[str, np.ndarray]) -> None:
    """Raises ValueError when a training batch does not fit the model (nothing to check here)."""

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


@gin.configurable
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


@flax.struct.dataclass
class StageOutput:
  """One stage of PaDIR's unrolled training (B rows, T positions, V ids).

  Attributes:
    decoder_input_tokens: [B, T] this stage's decoder input.
    logits: [B, T, V] float32.
    predictions: [B, T] the chosen tokens (argmax over output pieces; EOS / PAD kept where the
      gold length puts them).
    rejected: [B, T] bool, what the rejecter re-masked (all False on the last stage).
    accept_logits: [B, T] the learned rejecter's logits, or None.
    loss_weights: [B, T] float32 where the stage's token loss is taken: stage 1 the batch's
      `decoder_loss_weights` (default non-pad) or, when glancing, the positions not revealed;
      later stages every non-pad position.
  """
  decoder_input_tokens: Array
  logits: Array
  predictions: Array
  rejected: Array
  accept_logits: Optional[Array]
  loss_weights: Array


@dataclasses.dataclass(frozen=True)
class TrainingRecipe:
  """How a PaDIR model is trained beyond its loss (gin: `models.PadirModel.training =
  @models.TrainingRecipe()`, `models.TrainingRecipe.num_train_stages = 2`). Frozen.

  Attributes:
    num_train_stages: S, unrolled training stages (the linear rejecter follows an S-step
      schedule during training).
    glancing_ratio: > 0 trains by glancing (GLAT, Qian et al. 2021) instead of the data
      pipeline's noise: a no-gradient pass from the all-initial canvas of the gold length
      counts each row's wrong tokens, `glancing_ratio` x that many gold tokens (at random
      positions) are revealed in the canvas, and the loss is taken on the others. The revealed
      share thus falls as the model improves. One training stage only.
    glancing_fraction: the share of each batch's rows trained by glancing (the first rows);
      the others keep the data pipeline's noise, so that the partly masked canvases of later
      refinement iterations are trained on too.
  """
  num_train_stages: int = 1
  glancing_ratio: float = 0.0
  glancing_fraction: float = 1.0

  def __post_init__(self):
    if self.num_train_stages < 1:
      raise ValueError(f"num_train_stages={self.num_train_stages} must be >= 1")
    if not 0.0 <= self.glancing_ratio <= 1.0 or (self.glancing_ratio and
                                                 self.num_train_stages > 1):
      raise ValueError(f"glancing_ratio={self.glancing_ratio} must be in [0, 1], and glancing "
                       f"trains one stage (num_train_stages={self.num_train_stages})")
    if not 0.0 < self.glancing_fraction <= 1.0:
      raise ValueError(f"glancing_fraction={self.glancing_fraction} must be in (0, 1]")


# The arguments `PadirModel` took before they were grouped, by the part that now holds each
# (configs recorded by earlier runs bind them: `MODEL/models.PadirModel.rejecter = 'linear'`).
LEGACY_ARGUMENTS = {
    "loss": ("label_smoothing", "z_loss", "loss_normalizing_factor", "length_loss_weight",
             "rejecter_loss_weight"),
    "training": ("num_train_stages", "glancing_ratio", "glancing_fraction"),
    "scheme": ("decoder_input_scheme", "rejecter", "rejecter_k", "rejecter_fraction",
               "rejecter_threshold", "remasking_scheme", "stutter_remasking", "keep_visible"),
    "length_predictor": tuple(length.LEGACY_OFFSET_ARGUMENTS),
}


def _with_legacy_arguments(parts: Dict[str, Any], legacy: Mapping[str, Any]) -> Dict[str, Any]:
  """`parts` (loss, training, scheme, length_predictor) with the legacy arguments `legacy`
  applied: each replaces the field of its part (warning once that the form is deprecated).
  Raises TypeError on a name that is no legacy argument."""
  legacy = dict(legacy)
  # A decode-time argument of configs older than the decode configs, None in them (the canvas
  # length is the batch's); `translator.upgrade_config` moves the others.
  if legacy.pop("max_decode_length", None) is not None:
    raise ValueError("PadirModel.max_decode_length: the canvas length is the batch's decoder "
                     "length, or a predict call's decoder_params['max_decode_length']")
  known = {name: part for part, names in LEGACY_ARGUMENTS.items() for name in names}
  unknown = sorted(set(legacy) - set(known))
  if unknown:
    raise TypeError(f"PadirModel got unexpected arguments {unknown}")
  if not legacy:
    return parts
  warnings.warn(f"PadirModel arguments {sorted(legacy)} are deprecated: bind them on "
                "PadirModel's loss (losses.LossSettings), training (models.TrainingRecipe), "
                "scheme (decoding.RefinementScheme) or length_predictor (length.Offset)",
                DeprecationWarning, stacklevel=3)
  parts = dict(parts)
  for part in ("loss", "training", "scheme"):
    fields = {k: v for k, v in legacy.items() if known[k] == part}
    if fields:
      parts[part] = dataclasses.replace(parts[part], **fields)
  offset_options = {k: v for k, v in legacy.items() if known[k] == "length_predictor"}
  if isinstance(parts["length_predictor"], str):
    parts["length_predictor"] = length.get(parts["length_predictor"], offset_options)
  elif offset_options and isinstance(parts["length_predictor"], length.Offset):
    parts["length_predictor"] = dataclasses.replace(
        parts["length_predictor"], **{length.LEGACY_OFFSET_ARGUMENTS[k]: v
                                      for k, v in offset_options.items()})
  return parts


@gin.configurable
class PadirModel(BaseModel):
  """PaDIR: a non-causal decoder refining all positions in parallel.

  Training: the batch's `decoder_input_tokens` are the noised targets (aligned, no shift) from
  the data pipeline, `decoder_loss_weights` mark stage 1's loss positions; the decoder gets the
  gold length. With `num_train_stages` S > 1 training is unrolled as inference runs: each stage
  is inference's step (`decoding.refinement_step`), so stage i's predictions, after rejection
  and re-masking, are stage i+1's input, and stages after the first weight every non-pad position. The encoder runs once per
  step; every stage has its own dropout key (the stage index folded in); predictions at padding
  are PAD; the replacements of rejected tokens are what inference would use — the scheme's
  initial tokens of the gold length (fresh [MASK] / [MASK_i] / random pieces), the previous
  stage's output (for stage 1: the initial tokens, never the partially gold input) or the argmax
  of the summed logits.

  Args:
    module, optimizer_def, special_tokens, vocabulary: as `BaseModel`'s.
    loss: `losses.LossSettings`: label smoothing, z-loss, normalising factor and the weights of
      the length and learned rejecter losses.
    length_predictor: a `length.LengthPredictor` (`length.Classifier()`, `length.Offset()`,
      `length.Affine()`, `length.Fertility()`, `length.Oracle()`); the name of one ('offset')
      is the deprecated form that earlier configs recorded.
    scheme: how the model refines, in its unrolled training stages and at inference alike
      (`decoding.RefinementScheme`). Its `decoder_input_scheme` must match the data pipeline's
      noise scheme (gin shares the macro DECODER_INPUT_SCHEME).
    training: the training recipe (`TrainingRecipe`: unrolled stages, glancing).
    decode_fn: the decoding method (T5X's `decode_fn`), `decoding.padir_decode` by default;
      another is bound in gin (`PadirModel.decode_fn = @decoding.my_method`). Called as
      `decode_fn(logits_fn, length_predictions, rng, config, special_tokens, max_decode_len,
      rescore_fn)` with the arguments `padir_decode` documents (`config` a
      `decoding.RefinementConfig`: this scheme and the call's `decoding.PadirDecodeConfig`), it
      returns tokens [B, T] and an aux dict (with 'scores' [B, C] and 'best' [B] the chosen
      candidate's score is reported).
    **legacy_arguments: the arguments this class took before they were grouped into `loss`,
      `training`, `scheme` and `length_predictor` (`LEGACY_ARGUMENTS`): deprecated, accepted so
      that configs recorded by earlier runs still build the same model; each replaces its field.
  """
  decode_config_class = decoding.PadirDecodeConfig

  def __init__(self,
               module: network.Transformer,
               optimizer_def: Any = None,
               special_tokens: Optional[SpecialTokens] = None,
               vocabulary: Any = None,
               loss: losses.LossSettings = losses.LossSettings(),
               length_predictor: Union[str, length.LengthPredictor] = length.Classifier(),
               scheme: decoding.RefinementScheme = decoding.RefinementScheme(),
               training: TrainingRecipe = TrainingRecipe(),
               decode_fn: Callable[..., Tuple[Array, Dict[str, Array]]] = decoding.padir_decode,
               **legacy_arguments):
    parts = _with_legacy_arguments(dict(loss=loss, training=training, scheme=scheme,
                                        length_predictor=length_predictor), legacy_arguments)
    self.loss_settings = parts["loss"]
    self.training = parts["training"]
    self.scheme = parts["scheme"]
    self.length_predictor = length.get(parts["length_predictor"])
    self.decode_fn = decode_fn
    # Training's unrolled stages: the scheme's loop over S iterations, choosing by argmax.
    self.train_config = decoding.RefinementConfig.of(
        self.scheme, decoding.PadirDecodeConfig(
            num_decode_iterations=self.training.num_train_stages))
    super().__init__(module, optimizer_def, special_tokens, vocabulary,
                     self.loss_settings.label_smoothing, self.loss_settings.z_loss,
                     self.loss_settings.loss_normalizing_factor)
    self.length_predictor = self.length_predictor.bind(self.special_tokens)

  def _call_options(self, decoder_params: DecoderParams) -> Dict[str, Any]:
    """A `decoder_params` mapping's entries that are no `PadirDecodeConfig` field: its
    `RefinementScheme` fields (an ablation of the trained scheme, `refinement_config`) and
    'max_decode_length' (the canvas length T of this call)."""
    if not isinstance(decoder_params, Mapping):
      return {}
    names = set(decoding.field_names(decoding.RefinementScheme)) | {"max_decode_length"}
    return {k: v for k, v in decoder_params.items() if k in names}

  def refinement_config(self, decoder_params: DecoderParams = None) -> decoding.RefinementConfig:
    """What the refinement loop of a predict call reads: the model's scheme and the call's
    `decode_config`. A `decoder_params` mapping that names scheme fields decodes with the
    trained scheme ablated (`decoding.ablate_scheme`, the one place where decode-time options
    change it); a `PadirDecodeConfig` (what gin builds for infer / eval) never does."""
    overrides = self._call_options(decoder_params)
    overrides.pop("max_decode_length", None)
    return decoding.RefinementConfig(decoding.ablate_scheme(self.scheme, overrides),
                                     self.decode_config(decoder_params))

  def check_decoder_params(self, decoder_params: DecoderParams) -> None:
    self.refinement_config(decoder_params)

  def _network_overrides(self) -> Dict[str, Any]:
    return dict(decoder_causal=False, rejecter_head=self.scheme.rejecter == "learned",
                **self.length_predictor.network_overrides())

  def _encoder_inputs(self, encoder_input_tokens: Array) -> Array:
    """The length predictor's encoder input ([LENGTH] prepended for the classifier):
    [B, S] -> [B, S']."""
    return self.length_predictor.encoder_inputs(jnp.asarray(encoder_input_tokens, jnp.int32))

  def _lengths(self, tokens: Array) -> Array:
    """[B, L] -> [B] int32 non-pad tokens (EOS included), of targets or sources."""
    return jnp.sum(tokens != self.special_tokens.pad_id, axis=-1).astype(jnp.int32)

  def _length_predictions(self, params: PyTree, encoded: Array, encoder_tokens: Array,
                          batch: Batch) -> Array:
    """What the length head gives (`LengthPredictor.outputs`): logits [B, C] or real-valued
    lengths [B]."""
    return self.length_predictor.outputs(
        lambda: self._apply(params, self.module.predict_length, encoded, encoder_tokens), batch)

  def _length_scores(self, predictions: Array, encoder_tokens: Array) -> Array:
    """The length predictions as decoding takes them (`decoding.length_candidates`,
    `LengthPredictor.predict`)."""
    return self.length_predictor.predict(predictions, self._lengths(encoder_tokens))

  def _length_loss_and_metrics(self, predictions: Array, gold: Array,
                               encoder_tokens: Array) -> Tuple[Array, Metrics]:
    """Length loss and metrics: length_accuracy (exact), length_within_1, length_within_2
    (none for a predictor without a loss)."""
    result = self.length_predictor.loss(predictions, gold, self._lengths(encoder_tokens),
                                        self.loss_settings)
    if result is None:
      return jnp.zeros([], jnp.float32), {}
    loss, predicted = result
    error = jnp.abs(predicted - gold)
    return loss, {"length_loss": loss, "length_accuracy": jnp.mean(_float(error == 0)),
                  "length_within_1": jnp.mean(_float(error <= 1)),
                  "length_within_2": jnp.mean(_float(error <= 2))}

  def check_train_batch(self, batch: Mapping[str, np.ndarray]) -> None:
    """Raises ValueError when the batch's decoder inputs were noised with another scheme than
    the model's `decoder_input_scheme` (the data pipeline's `padir_noise.init_scheme`), which
    would train on one canvas and decode from another. Glancing makes its own inputs."""
    if self.training.glancing_ratio > 0 and self.training.glancing_fraction == 1.0:
      return
    special = self.special_tokens
    inputs = np.asarray(batch["decoder_input_tokens"])
    found = {"mask": np.any(inputs == special.mask_id),
             "mask_range": np.any((inputs >= special.mask_range_start)
                                  & (inputs < special.mask_range_end))}
    seen = [name for name, present in found.items() if present]
    scheme = self.scheme.decoder_input_scheme
    expected = [] if scheme == "random" else [scheme]
    noised = int(np.sum(inputs != np.asarray(batch["decoder_target_tokens"])))
    if seen != expected and (seen or noised >= 32):
      raise ValueError(
          f"the training batch's decoder inputs hold {' and '.join(seen) or 'no mask'} tokens, "
          f"but the model's decoder_input_scheme is {scheme!r}: the data noise "
          "(preprocessors.padir_noise.init_scheme) and the model must use one scheme; bind both "
          "to %DECODER_INPUT_SCHEME (models/padir.gin does)")

  def initialize_from_data(self, params: PyTree,
                           batches: Iterable[Mapping[str, np.ndarray]]) -> PyTree:
    """The length head fitted to the training data before training (`LengthPredictor.fit`:
    'offset' and 'classifier' biases = the log of the (add-0.5 smoothed) offset / length
    frequencies, so the first step already predicts the data's distribution; 'affine' = the
    least-squares line of target length on source length; the others unchanged)."""
    if "length_head" not in params:
      return params
    source, gold = [], []
    for batch in batches:
      source.append(np.sum(np.asarray(batch["encoder_input_tokens"]) != 0, axis=-1))
      gold.append(np.sum(np.asarray(batch["decoder_target_tokens"]) != 0, axis=-1))
    source, gold = np.concatenate(source), np.concatenate(gold)
    head = self.length_predictor.fit(dict(params["length_head"]), source, gold)
    return params if head is None else {**params, "length_head": head}

  def _decode_pass(self, params: PyTree, encoder_tokens: Array, cross_kv: network.CrossKV,
                   decoder_input_tokens: Array, dropout_rng: Optional[Array] = None,
                   positions: Optional[Array] = None) -> Tuple[Array, Optional[Array]]:
    """One full non-causal pass: logits [N, T, V] ([N, M, V] at `positions` [N, M]) and accept
    logits [N, T] (learned rejecter)."""
    learned = self.scheme.rejecter == "learned"
    out = self._apply(params, self.module.decode, None, encoder_tokens, decoder_input_tokens,
                      cross_kv=cross_kv, enable_dropout=dropout_rng is not None,
                      return_hidden=learned, dropout_rng=dropout_rng,
                      logits_positions=positions)
    if not learned:
      return out, None
    logits, hidden = out
    return logits, self._apply(params, self.module.accept_logits, hidden)

  def unrolled_stages(self, params: PyTree, batch: Batch,
                      dropout_rng: Optional[Array]) -> Tuple[Array, List[StageOutput]]:
    """Runs the S training stages (no losses). Public for analysis and tests.

    Args:
      params: model parameters.
      batch: encoder_input_tokens [B, S_src], decoder_input_tokens [B, T] (noised targets),
        decoder_target_tokens [B, T].
      dropout_rng: PRNG key, or None for no dropout (evaluation; the 'random' scheme's tokens
        then come from key 0).

    Returns:
      (length predictions: classifier logits [B, C] or lengths [B]; a list of S `StageOutput`).
    """
    special = self.special_tokens
    config = self.train_config
    targets = jnp.asarray(batch["decoder_target_tokens"], jnp.int32)
    if dropout_rng is None:
      encoder_rng, stage_rng = None, None
      init_rng, glance_rng = jax.random.split(jax.random.PRNGKey(0))
    else:
      encoder_rng, stage_rng, init_rng, glance_rng = jax.random.split(dropout_rng, 4)
    encoder_tokens = self._encoder_inputs(batch["encoder_input_tokens"])
    encoded = self._encode(params, encoder_tokens, encoder_rng)
    length_predictions = self._length_predictions(params, encoded, encoder_tokens, batch)
    cross_kv = self._cross_kv(params, encoded)
    # What inference would start from at the gold length: EOS at length - 1, PAD after.
    initial = decoding.initial_decoder_inputs(self._lengths(targets), targets.shape[1],
                                              config.scheme.decoder_input_scheme, special, init_rng)
    non_pad = _float(targets != special.pad_id)
    inputs = jnp.asarray(batch["decoder_input_tokens"], jnp.int32)
    weights = batch.get("decoder_loss_weights")
    weights = non_pad if weights is None else _float(weights)
    if self.training.glancing_ratio > 0:
      logits, _ = self._decode_pass(params, encoder_tokens, cross_kv, initial)
      first_pass = decoding.choose_tokens(jax.lax.stop_gradient(logits), None, config, special,
                                          initial)[0]
      glanced, revealed = decoding.glance(targets, first_pass, initial,
                                          self.training.glancing_ratio, glance_rng, special)
      glancing_rows = (jnp.arange(targets.shape[0]) <
                       round(self.training.glancing_fraction * targets.shape[0]))[:, None]
      inputs = jnp.where(glancing_rows, glanced, inputs)
      weights = jnp.where(glancing_rows, non_pad * _float(~revealed), weights)
    previous = initial  # Stage 1's "previous tokens": inference's, never the noised gold input.
    input_log_probs = jnp.zeros(targets.shape, jnp.float32)  # Visible gold: certain.
    logits_sum = None
    stages = []
    for i in range(self.training.num_train_stages):
      rng_i = None if stage_rng is None else jax.random.fold_in(stage_rng, i)
      last = i == self.training.num_train_stages - 1
      step = decoding.refinement_step(
          lambda tokens, rng_i=rng_i: self._decode_pass(params, encoder_tokens, cross_kv, tokens,
                                                        rng_i),
          inputs, input_log_probs, jnp.asarray(i), config, special, initial_tokens=initial,
          previous_tokens=previous, logits_sum=logits_sum, remask_next=not last)
      stages.append(StageOutput(inputs, step.logits, step.tokens, step.rejected,
                                step.accept_logits, weights if i == 0 else non_pad))
      input_log_probs, logits_sum = step.token_log_probs, step.logits_sum
      previous = inputs = step.next_inputs
    return length_predictions, stages

  def loss_fn(self, params: PyTree, batch: Batch,
              dropout_rng: Optional[Array]) -> Tuple[Array, Metrics]:
    """Sum over stages of the token loss, + length loss, + learned rejecter loss.

    Stage 1 weights `decoder_loss_weights` (default: non-pad; when glancing, the positions not
    revealed), later stages every non-pad position; each stage's loss is normalised by
    `loss_normalizing_factor` over its weights.

    Metrics: loss, cross_ent_loss, z_loss, accuracy (stage 1, over its weighted positions),
    stage_{i}/loss and stage_{i}/accuracy for i = 1..S, length_loss and length_accuracy (not for
    'oracle'), rejecter_loss and rejecter_accuracy ('learned'), and when glancing
    glancing_revealed (the share of real target tokens given to the decoder: it falls as the
    first pass improves).
    """
    special = self.special_tokens
    targets = jnp.asarray(batch["decoder_target_tokens"], jnp.int32)
    real = _float(targets != special.pad_id) * _float(targets != special.eos_id)
    length_predictions, stages = self.unrolled_stages(params, batch, dropout_rng)
    total = jnp.zeros([], jnp.float32)
    total_z = jnp.zeros([], jnp.float32)
    metrics = {}
    rejecter_loss, rejecter_correct = jnp.zeros([], jnp.float32), jnp.zeros([], jnp.float32)
    for i, stage in enumerate(stages):
      stage_weights = stage.loss_weights
      loss_i, z_i, _ = self._token_loss(stage.logits, targets, stage_weights, batch)
      correct = _float(stage.predictions == targets) * _float(stage_weights > 0)
      metrics[f"stage_{i + 1}/loss"] = loss_i
      metrics[f"stage_{i + 1}/accuracy"] = _ratio(jnp.sum(correct),
                                                  jnp.sum(_float(stage_weights > 0)))
      total, total_z = total + loss_i, total_z + z_i
      if stage.accept_logits is not None:
        labels = _float(stage.predictions == targets)
        loss_sum, count = losses.binary_cross_entropy_with_logits(stage.accept_logits, labels,
                                                                  real)
        rejecter_loss += _ratio(loss_sum, count)
        rejecter_correct += _ratio(
            jnp.sum(_float((stage.accept_logits > 0) == (labels > 0)) * real), jnp.sum(real))
    metrics["cross_ent_loss"] = total - total_z
    metrics["z_loss"] = total_z
    metrics["accuracy"] = metrics["stage_1/accuracy"]
    if self.training.glancing_ratio > 0:
      rows = round(self.training.glancing_fraction * targets.shape[0])
      metrics["glancing_revealed"] = 1.0 - _ratio(
          jnp.sum(stages[0].loss_weights[:rows] * real[:rows]), jnp.sum(real[:rows]))
    length_loss, length_metrics = self._length_loss_and_metrics(
        length_predictions, self._lengths(targets), self._encoder_inputs(
            batch["encoder_input_tokens"]))
    metrics.update(length_metrics)
    total += self.loss_settings.length_loss_weight * length_loss
    if stages[0].accept_logits is not None:
      metrics["rejecter_loss"] = rejecter_loss
      metrics["rejecter_accuracy"] = rejecter_correct / len(stages)
      total += self.loss_settings.rejecter_loss_weight * rejecter_loss
    metrics["loss"] = total
    return total, metrics

  def predict_batch_with_aux(self, params: PyTree, batch: Batch, rng: Optional[Array] = None,
                             decoder_params: DecoderParams = None,
                             rescore_fn: Optional[SourceRescoreFn] = None
                             ) -> Tuple[Array, Dict[str, Array]]:
    """Parallel iterative refinement (`padir.decoding.padir_decode`).

    The encoder runs once, the cross-attention keys/values are computed once and reused by
    every candidate and iteration, the lengths are predicted, and `logits_fn` runs the decoder
    on the C candidates of each example (rows example-major).

    Args:
      params: model parameters.
      batch: `encoder_input_tokens` [B, S] (and `decoder_target_tokens` for 'oracle'); T is
        `decoder_params['max_decode_length']`, else the batch's decoder length, else the
        vocabulary's max_target_length.
      rng: PRNG key for random initial inputs and sampling (default: key 0).
      decoder_params: a `decoding.PadirDecodeConfig` or overrides of its defaults (python
        values, static under jit), e.g. {'num_decode_iterations': 8, 'length_beam': 3}; a
        mapping may also give 'max_decode_length' and, as an ablation, replace fields of the
        model's `scheme` for this call (`refinement_config`).
      rescore_fn: optional `(encoder_input_tokens [B*C, S], tokens [B*C, T]) -> [B*C]` scores
        that rank the candidates instead of their own, e.g. `ARModel.make_rescore_fn(params)`.

    Returns:
      tokens [B, T] int32 (EOS-terminated, PAD after) and aux: 'scores' [B] the chosen
      candidate's ranking score, 'candidate_scores' [B, C], 'lengths' [B], 'iterations' [B]
      (decoder passes used), 'candidate_lengths', 'candidate_valid', 'best', and on request
      'candidates' [B, C, T] and 'history' [B, I, T] (see `padir_decode`).
    """
    config = self.refinement_config(decoder_params)
    raw_encoder_tokens = jnp.asarray(batch["encoder_input_tokens"], jnp.int32)
    encoder_tokens = self._encoder_inputs(raw_encoder_tokens)
    length = self._decode_length(batch, self._call_options(decoder_params).get(
        "max_decode_length"))
    num_candidates = config.num_candidates
    encoded = self._encode(params, encoder_tokens)
    length_predictions = self._length_scores(
        self._length_predictions(params, encoded, encoder_tokens, batch), encoder_tokens)
    cross_kv = jax.tree_util.tree_map(lambda x: jnp.repeat(x, num_candidates, axis=0),
                                      self._cross_kv(params, encoded))
    encoder_rows = jnp.repeat(encoder_tokens, num_candidates, axis=0)

    def logits_fn(decoder_input_tokens: Array, positions: Optional[Array] = None,
                  rows: Optional[Array] = None) -> Tuple[Array, Optional[Array]]:
      if rows is None:
        return self._decode_pass(params, encoder_rows, cross_kv, decoder_input_tokens,
                                 positions=positions)
      # The candidates kept after the first pass (loop-invariant: XLA hoists these gathers).
      return self._decode_pass(params, encoder_rows[rows],
                               jax.tree_util.tree_map(lambda x: x[rows], cross_kv),
                               decoder_input_tokens, positions=positions)

    candidate_rescore = None
    if rescore_fn is not None:
      raw_rows = jnp.repeat(raw_encoder_tokens, num_candidates, axis=0)
      candidate_rescore = functools.partial(rescore_fn, raw_rows)
    tokens, aux = self.decode_fn(
        logits_fn, length_predictions, jax.random.PRNGKey(0) if rng is None else rng, config,
        self.special_tokens, length, candidate_rescore)
    aux = dict(aux)
    if "scores" in aux and "best" in aux:
      aux["candidate_scores"] = aux["scores"]
      aux["scores"] = aux["scores"][jnp.arange(tokens.shape[0]), aux["best"]]
    return tokens, aux

  def score_batch(self, params: PyTree, batch: Batch) -> Array:
    """Log-likelihood of each target under one parallel pass, plus its length log-probability.

    The decoder input is the scheme's initial input of the gold length (what refinement starts
    from: [MASK] / [MASK_i] / random pieces from key 0, EOS at length - 1); the score is the
    summed log-softmax of the target tokens at the non-pad positions (EOS included), plus, for
    the classifier and offset length predictors, the log-probability of the gold length (the other
    predictors define no distribution and add 0). A single-pass lower-fidelity proxy of the
    iterative model's likelihood, comparable between PaDIR models, not with AR scores.

    Returns:
      [B] float32.
    """
    special = self.special_tokens
    targets = jnp.asarray(batch["decoder_target_tokens"], jnp.int32)
    gold = self._lengths(targets)
    encoder_tokens = self._encoder_inputs(batch["encoder_input_tokens"])
    encoded = self._encode(params, encoder_tokens)
    initial = decoding.initial_decoder_inputs(gold, targets.shape[1],
                                              self.scheme.decoder_input_scheme, special,
                                              jax.random.PRNGKey(0))
    logits, _ = self._decode_pass(params, encoder_tokens, self._cross_kv(params, encoded), initial)
    token_log_probs = jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None],
                                          axis=-1)[..., 0]
    scores = jnp.sum(token_log_probs * _float(targets != special.pad_id), axis=-1)
    if self.length_predictor.has_distribution:
      length_scores = self._length_scores(
          self._length_predictions(params, encoded, encoder_tokens, batch), encoder_tokens)
      scores += self.length_predictor.gold_log_prob(length_scores, gold)
    return scores
