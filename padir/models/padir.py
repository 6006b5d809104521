"""`PadirModel`: the non-causal PaDIR student: length predictor (`padir.length`), rejecter,
parallel iterative refinement (`padir.decoding.padir_decode`), and unrolled multi-stage training
built from `padir.decoding`'s pieces (`refinement_step`) so that training and inference choose,
reject and re-mask tokens identically; its `TrainingRecipe` (stages, glancing).
"""
import dataclasses
import functools
import warnings
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import flax
import gin
import jax
import jax.numpy as jnp
import numpy as np

from padir import decoding
from padir import length
from padir import losses
from padir import network
from padir.models.base import (Array, BaseModel, Batch, DecoderParams, Metrics, PyTree,
                               SourceRescoreFn, _float, _ratio)
from padir.special_tokens import SpecialTokens


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


# Registered in gin (`module=`) and written in a run's config.gin (gin writes a configurable
# under its class's `__module__`, set in the class body) under the package's name,
# `models.PadirModel`, as before `padir/models.py` became a package: recorded configs and
# `--gin.models.PadirModel.*` bindings keep resolving (`padir/models/__init__.py`).
@gin.configurable(module="padir.models")
class PadirModel(BaseModel):
  """PaDIR: a non-causal decoder refining all positions in parallel.

  Training: the batch's `decoder_input_tokens` are the noised targets (aligned, no shift) from
  the data pipeline, with [MASK] where the decoder starts from its initial tokens (the model
  puts there what decoding starts from: `decoding.initial_decoder_inputs` of the scheme's
  `decoder_input_scheme`); `decoder_loss_weights` mark stage 1's loss positions; the decoder
  gets the gold length. With `num_train_stages` S > 1 training is unrolled as inference runs: each stage
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
      (`decoding.RefinementScheme`). Its `decoder_input_scheme` also fills the positions the
      data pipeline marked [MASK] in training (`preprocessors.padir_noise`).
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
  __module__ = "padir.models"
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

  def _noised_inputs(self, batch: Batch, initial: Array, glance_rng: Array,
                     logits_fn: Callable[[Array], Array]) -> Tuple[Array, Array]:
    """Stage 1's decoder input and loss weights ([B, T] each), by one of two noise policies per
    row. The data's noise: the batch's noised targets, whose [MASK] marks (`padir_noise`) get
    the initial tokens decoding starts from (`initial`, so the canvas has one definition), and
    its loss weights. Glancing (on the first `glancing_fraction` of the rows, when
    `glancing_ratio` > 0): gold tokens revealed on the initial canvas in proportion to the
    errors of a first pass over it (`logits_fn(tokens) -> logits`, no gradient), the loss on the
    rest."""
    special = self.special_tokens
    targets = jnp.asarray(batch["decoder_target_tokens"], jnp.int32)
    non_pad = _float(targets != special.pad_id)
    inputs = jnp.asarray(batch["decoder_input_tokens"], jnp.int32)
    inputs = jnp.where(inputs == special.mask_id, initial, inputs)
    weights = batch.get("decoder_loss_weights")
    weights = non_pad if weights is None else _float(weights)
    if self.training.glancing_ratio <= 0:
      return inputs, weights
    first_pass = decoding.choose_tokens(jax.lax.stop_gradient(logits_fn(initial)), None,
                                        self.train_config, special, initial)[0]
    glanced, revealed = decoding.glance(targets, first_pass, initial,
                                        self.training.glancing_ratio, glance_rng, special)
    glancing_rows = (jnp.arange(targets.shape[0]) <
                     round(self.training.glancing_fraction * targets.shape[0]))[:, None]
    return (jnp.where(glancing_rows, glanced, inputs),
            jnp.where(glancing_rows, non_pad * _float(~revealed), weights))

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
    inputs, weights = self._noised_inputs(
        batch, initial, glance_rng,
        lambda tokens: self._decode_pass(params, encoder_tokens, cross_kv, tokens)[0])
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
