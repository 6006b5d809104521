"""PaDIR's length predictors: one small class per length head.

A `models.PadirModel` takes one of these objects (gin: `models.PadirModel.length_predictor =
@length.Offset()`, its options bound on the class, e.g. `length.Offset.max_offset = 8`). Each
says which network head it needs and what the model does with that head's output:

  `network_overrides()`       the `network.T5Config` fields of its head (`length_head`, ...).
  `encoder_inputs(tokens)`    the encoder input the network sees (the classifier prepends
                              [LENGTH]); [B, S] -> [B, S'].
  `outputs(apply_head, batch)` the head's raw output: logits [B, C] or lengths [B].
  `predict(outputs, source_lengths)`  what `decoding.length_candidates` ranks: scores over
                              lengths 0..max_target_length [B, C], or real-valued lengths [B].
  `loss(outputs, gold, source_lengths, settings)`  (scalar loss, the predicted lengths [B]),
                              or None (the oracle: no loss, no length metrics).
  `gold_log_prob(scores, gold)`  log p(gold length) [B], for a predictor whose
                              `has_distribution` (`PadirModel.score_batch` adds it).
  `fit(head_params, source, gold)`  the head's parameters fitted to the training data's lengths
                              before step 1 (`PadirModel.initialize_from_data`), or None (as
                              they are).

Adding a predictor: a subclass here and a gin binding (`models.PadirModel.length_predictor =
@length.MyPredictor()`). It reuses a network head by its `network_overrides` (the heads' Flax
modules are in `network.py`, selected by `T5Config.length_head`; a new head is one more there).
`name` is the head's name and, for the predictors in `PREDICTORS`, the string that configs
recorded before the predictors were objects select it by.

The lengths count the real tokens and the EOS; `source_lengths` are the non-pad tokens of the
encoder input the network sees.
"""
import dataclasses
import warnings
from typing import Any, Callable, ClassVar, Dict, Mapping, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from padir import losses
from padir.special_tokens import SpecialTokens

Array = jax.Array
NEG_INF = -jnp.inf


def _lengths(tokens: Array, pad_id: int) -> Array:
  """[B, L] -> [B] int32 non-pad tokens."""
  return jnp.sum(tokens != pad_id, axis=-1).astype(jnp.int32)


def _log_frequencies(classes: np.ndarray, num_classes: int) -> np.ndarray:
  """Centred log of the add-0.5 smoothed class frequencies: a classifier bias that predicts the
  data's distribution."""
  counts = np.bincount(classes, minlength=num_classes) + 0.5
  log_freq = np.log(counts / counts.sum())
  return (log_freq - log_freq.mean()).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class LengthPredictor:
  """The interface (module docstring). Frozen and hashable; `special_tokens` is set by the model
  (`bind`), not in gin.

  Attributes:
    special_tokens: the model's id layout (its pad / [LENGTH] ids and max_target_length).
  """
  name: ClassVar[str] = ""
  has_distribution: ClassVar[bool] = False  # Its `predict` scores are logits over lengths.
  special_tokens: Optional[SpecialTokens] = None

  def bind(self, special_tokens: SpecialTokens) -> "LengthPredictor":
    """This predictor for a model's `special_tokens`."""
    return dataclasses.replace(self, special_tokens=special_tokens)

  @property
  def _special(self) -> SpecialTokens:
    if self.special_tokens is None:
      raise ValueError(f"{type(self).__name__} is not bound to a model's special tokens")
    return self.special_tokens

  def network_overrides(self) -> Dict[str, Any]:
    return {"length_head": self.name}

  def encoder_inputs(self, tokens: Array) -> Array:
    return tokens

  def outputs(self, apply_head: Callable[[], Array], batch: Mapping[str, Array]) -> Array:
    del batch
    return apply_head()

  def predict(self, outputs: Array, source_lengths: Array) -> Array:
    del source_lengths
    return outputs

  def loss(self, outputs: Array, gold: Array, source_lengths: Array,
           settings: losses.LossSettings) -> Optional[Tuple[Array, Array]]:
    """(scalar loss, predicted lengths [B] int), or None for a predictor without a loss."""
    raise NotImplementedError

  def gold_log_prob(self, scores: Array, gold: Array) -> Array:
    """log_softmax(scores) at the gold lengths: [B, C], [B] -> [B]."""
    gold_class = jnp.clip(gold, 0, scores.shape[-1] - 1)
    return jnp.take_along_axis(jax.nn.log_softmax(scores), gold_class[:, None], axis=-1)[:, 0]

  def fit(self, head: Dict[str, Any], source: np.ndarray,
          gold: np.ndarray) -> Optional[Dict[str, Any]]:
    del head, source, gold
    return None


@dataclasses.dataclass(frozen=True)
class Classifier(LengthPredictor):
  """The [LENGTH] token, prepended to the encoder input, is classified over lengths
  0..max_target_length (class 0 never chosen); decoding keeps the top-k lengths."""
  name: ClassVar[str] = "classifier"
  has_distribution: ClassVar[bool] = True

  def encoder_inputs(self, tokens: Array) -> Array:
    """[B, S] -> [B, S + 1], [LENGTH] first."""
    column = jnp.full((tokens.shape[0], 1), self._special.length_id, jnp.int32)
    return jnp.concatenate([column, tokens], axis=1)

  def loss(self, outputs, gold, source_lengths, settings):
    del source_lengths
    loss = losses.length_classifier_loss(outputs, gold, settings.label_smoothing,
                                         settings.z_loss)
    return loss, jnp.argmax(outputs.at[:, 0].set(-jnp.inf), axis=-1)

  def fit(self, head, source, gold):
    """The bias: the log of the lengths' frequencies."""
    del source
    classes = np.clip(gold, 0, self._special.max_target_length)
    return {**head, "bias": _log_frequencies(classes, np.shape(head["bias"])[0])}


@dataclasses.dataclass(frozen=True)
class Offset(LengthPredictor):
  """Target length - source length classified over -R..R from the mean-pooled encoding and the
  source length (fairseq's length offset); decoding keeps the top-k lengths.

  Attributes:
    max_offset: R; gold offsets beyond it are clipped.
    label_sigma: the loss's ordinal targets are a Gaussian of this width (in tokens) around the
      gold offset (0: one-hot).
  """
  name: ClassVar[str] = "offset"
  has_distribution: ClassVar[bool] = True
  max_offset: int = 16
  label_sigma: float = 1.0

  def __post_init__(self):
    if self.max_offset < 1 or self.label_sigma < 0:
      raise ValueError(f"max_offset={self.max_offset} must be >= 1 and label_sigma="
                       f"{self.label_sigma} >= 0")

  def network_overrides(self):
    return {"length_head": self.name, "max_length_offset": self.max_offset}

  def predict(self, outputs, source_lengths):
    """Offset logits [B, 2R + 1] -> scores over lengths 0..max_target_length [B, C]; lengths
    outside source length +- R score -inf."""
    r = self.max_offset
    lengths = jnp.arange(self._special.max_target_length + 1)
    offsets = lengths[None, :] - source_lengths[:, None]  # [B, C]
    scores = jnp.take_along_axis(outputs, jnp.clip(offsets + r, 0, 2 * r), axis=-1)
    return jnp.where(jnp.abs(offsets) <= r, scores, NEG_INF)

  def loss(self, outputs, gold, source_lengths, settings):
    loss = losses.length_offset_loss(outputs, gold - source_lengths, self.label_sigma,
                                     settings.z_loss)
    return loss, source_lengths + jnp.argmax(outputs, axis=-1) - self.max_offset

  def fit(self, head, source, gold):
    """The bias: the log of the offsets' frequencies."""
    r = self.max_offset
    classes = np.clip(gold - source, -r, r) + r
    return {**head, "bias": _log_frequencies(classes, np.shape(head["bias"])[0])}


@dataclasses.dataclass(frozen=True)
class _Regression(LengthPredictor):
  """A real-valued length [B]; decoding keeps the k integers nearest to it."""

  def loss(self, outputs, gold, source_lengths, settings):
    del source_lengths, settings
    return (losses.length_regression_loss(outputs, gold),
            jnp.round(outputs).astype(jnp.int32))


@dataclasses.dataclass(frozen=True)
class Affine(_Regression):
  """`a * source length + b`, fitted by least squares to the training data before step 1."""
  name: ClassVar[str] = "affine"

  def fit(self, head, source, gold):
    scale, bias = np.polyfit(source.astype(np.float64), gold.astype(np.float64), 1)
    return {**head, "scale": np.float32(scale), "bias": np.float32(bias)}


@dataclasses.dataclass(frozen=True)
class Fertility(_Regression):
  """The sum over source tokens of their fertility `1 + offset` (a linear function of the
  stop-gradient encoder states)."""
  name: ClassVar[str] = "fertility"


@dataclasses.dataclass(frozen=True)
class Oracle(LengthPredictor):
  """The gold length (analysis only: needs `decoder_target_tokens` at inference); no head, no
  loss."""
  name: ClassVar[str] = "oracle"

  def network_overrides(self):
    return {"length_head": None}

  def outputs(self, apply_head, batch):
    del apply_head
    if "decoder_target_tokens" not in batch:
      raise ValueError("length_predictor='oracle' needs decoder_target_tokens in the batch")
    return _lengths(jnp.asarray(batch["decoder_target_tokens"], jnp.int32),
                    self._special.pad_id)

  def loss(self, outputs, gold, source_lengths, settings):
    del outputs, gold, source_lengths, settings
    return None


PREDICTORS: Dict[str, type] = {cls.name: cls for cls in (Classifier, Offset, Affine, Fertility,
                                                          Oracle)}
# The arguments of the 'offset' predictor that `PadirModel` once took itself.
LEGACY_OFFSET_ARGUMENTS = {"max_length_offset": "max_offset", "length_label_sigma": "label_sigma"}


def get(predictor: Union[str, LengthPredictor],
        legacy_options: Optional[Mapping[str, Any]] = None) -> LengthPredictor:
  """A `LengthPredictor` from an object (returned as it is) or a name of `PREDICTORS` (the
  string that configs recorded before the predictors were objects: `PadirModel.length_predictor
  = 'offset'`, deprecated), with `legacy_options` (`max_length_offset`, `length_label_sigma`)
  applied to 'offset' (ignored by the others, as they were)."""
  legacy_options = dict(legacy_options or {})
  if isinstance(predictor, LengthPredictor):
    if legacy_options:
      raise ValueError(f"{sorted(legacy_options)} are options of length.Offset: bind them on it "
                       "(e.g. length.Offset.max_offset), not on PadirModel")
    return predictor
  if predictor not in PREDICTORS:
    raise ValueError(f"length_predictor={predictor!r}: expected a padir.length.LengthPredictor "
                     f"or one of {tuple(PREDICTORS)}")
  warnings.warn(f"PadirModel.length_predictor = {predictor!r} is deprecated: bind "
                f"@length.{PREDICTORS[predictor].__name__}() instead", DeprecationWarning,
                stacklevel=3)
  if predictor != Offset.name:
    return PREDICTORS[predictor]()
  return Offset(**{LEGACY_OFFSET_ARGUMENTS[k]: v for k, v in legacy_options.items()})
