"""The decode configs: `ARDecodeConfig` (an AR model's decode-time options), `RefinementScheme`
(how a PaDIR model refines, fixed at training), `PadirDecodeConfig` (a PaDIR predict call's
options) and `RefinementConfig`, the refinement loop's config made of a scheme and a decode config
(`.scheme`, `.decode`); `ablate_scheme`, the one explicit way for decode-time options to change
a trained scheme. Registered in gin under their package's name (`decoding.PadirDecodeConfig`,
see `padir/decoding/__init__.py`).
"""
import dataclasses
import math
from typing import Any, Mapping, Optional, Tuple

from padir.decoding.choice import _check_sampling

DECODER_INPUT_SCHEMES = ("random", "mask", "mask_range")
REJECTERS = ("passthrough", "stutter", "linear", "constant_k", "constant_fraction", "learned")
REMASKING_SCHEMES = ("initial", "previous", "logits_sum")
SCORINGS = ("mean", "sum")
AR_DECODE_METHODS = ("greedy", "beam", "sample")


@dataclasses.dataclass(frozen=True)
class ARDecodeConfig:
  """Decode-time options of `models.ARModel`, bound at predict time (gin:
  `decoding.ARDecodeConfig.decode_method = 'greedy'` in an infer/eval run; a training run's
  bindings are its defaults, recorded in its config.gin). Frozen and hashable.

  Attributes:
    decode_method: 'greedy', 'beam' (beam search with brevity penalty `alpha`) or 'sample'
      (temperature / top-k / top-p, `num_decodes` samples, the best returned).
    beam_size: beams of 'beam'.
    alpha: brevity penalty exponent of 'beam'.
    temperature, top_k, top_p, num_decodes: for 'sample'; `num_decodes` is also the rows per
      example of a decoding method bound as `ARModel.decode_fn`.
    max_decode_length: most generated tokens (None: the batch's target length, else the
      vocabulary's max_target_length).
  """
  decode_method: str = "beam"
  beam_size: int = 4
  alpha: float = 0.6
  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0
  num_decodes: int = 1
  max_decode_length: Optional[int] = None

  def __post_init__(self):
    if self.decode_method not in AR_DECODE_METHODS:
      raise ValueError(f"decode_method={self.decode_method!r}: expected one of "
                       f"{AR_DECODE_METHODS}")
    if self.beam_size < 1 or self.num_decodes < 1:
      raise ValueError(f"beam_size={self.beam_size} and num_decodes={self.num_decodes} must be "
                       ">= 1")
    _check_sampling(self.temperature, self.top_k, self.top_p)


@dataclasses.dataclass(frozen=True)
class RefinementScheme:
  """How a PaDIR model refines: fixed when it is trained (the unrolled training stages and the
  data noise follow it), the same at inference: `models.PadirModel`'s `scheme` (gin:
  `models.PadirModel.scheme = @decoding.RefinementScheme()`). Frozen and hashable.

  Attributes:
    decoder_input_scheme: initial decoder input: 'random' (random real pieces), 'mask' ([MASK]
      everywhere) or 'mask_range' ([MASK_i] at position i).
    rejecter: which predicted tokens are re-masked between iterations: 'passthrough' (none),
      'stutter' (equal to the left neighbour), 'linear' (mask-predict: the lowest-confidence
      fraction (T-t-1)/T of the real positions at iteration t of T), 'constant_k' (the
      `rejecter_k` lowest-confidence), 'constant_fraction' (the lowest-confidence
      `rejecter_fraction`), 'learned' (accept logit below `rejecter_threshold`).
    rejecter_k: for 'constant_k'.
    rejecter_fraction: for 'constant_fraction', in [0, 1].
    rejecter_threshold: for 'learned', a logit (0.0 is probability 0.5).
    remasking_scheme: what replaces a rejected token: 'initial' (the initial decoder input token),
      'previous' (this iteration's decoder input token) or 'logits_sum' (argmax of the logits
      summed over the iterations so far).
    stutter_remasking: also reject tokens equal to their left neighbour, every iteration; after
      the last one stuttering tokens are removed, so no adjacent repeats remain.
    keep_visible: Mask-Predict's update: only the positions whose decoder input is their initial
      token (masked) are predicted anew; the others keep their token and the log-prob it had
      when predicted, as the model was trained (a CMLM loss is taken on masked positions only).
      Needs remasking_scheme 'initial'. False: every position takes the new prediction.
    aligned: the canvas is a CTC alignment (`padir.ctc`): the blank id may be chosen at any
      position, and the output is collapsed (`ctc_collapse`: repeats merged, blanks removed).
      Set by `ctc.CTCModel`, not by hand.
  """
  decoder_input_scheme: str = "random"
  rejecter: str = "passthrough"
  rejecter_k: int = 1
  rejecter_fraction: float = 0.1
  rejecter_threshold: float = 0.0
  remasking_scheme: str = "previous"
  stutter_remasking: bool = False
  keep_visible: bool = False
  aligned: bool = False

  def __post_init__(self):
    for name, value, allowed in (("decoder_input_scheme", self.decoder_input_scheme,
                                  DECODER_INPUT_SCHEMES),
                                 ("rejecter", self.rejecter, REJECTERS),
                                 ("remasking_scheme", self.remasking_scheme, REMASKING_SCHEMES)):
      if value not in allowed:
        raise ValueError(f"{name}={value!r}: expected one of {allowed}")
    if self.rejecter_k < 0:
      raise ValueError(f"rejecter_k={self.rejecter_k} must be >= 0")
    if not 0.0 <= self.rejecter_fraction <= 1.0:
      raise ValueError(f"rejecter_fraction={self.rejecter_fraction} must be in [0, 1]")
    if self.keep_visible and self.remasking_scheme != "initial":
      raise ValueError(f"keep_visible needs remasking_scheme='initial' (got "
                       f"{self.remasking_scheme!r}): only then is a masked position one whose "
                       "input is its initial token")


@dataclasses.dataclass(frozen=True)
class PadirDecodeConfig:
  """Decode-time options of `models.PadirModel`, bound at predict time (gin:
  `decoding.PadirDecodeConfig.num_decode_iterations = 8` in an infer/eval run; a training run's
  bindings are its defaults, recorded in its config.gin). Frozen and hashable (static under jit).

  Attributes:
    num_decode_iterations: most refinement iterations (decoder passes).
    temperature: 0 chooses tokens by argmax; otherwise sample from softmax(logits / temperature).
    top_k, top_p: sampling filters (0 / 1.0: off).
    top_k_lengths: most likely lengths kept from the length predictor.
    length_beam: odd number of offsets (-(n // 2) .. n // 2) tried around each length.
    num_parallel_samples: candidates per length from different random initial inputs
      ('random' scheme only).
    scoring: candidate score, 'mean' or 'sum' of the log-probs of its tokens (EOS included).
    alpha: brevity penalty exponent: the score is divided by ((5 + length) / 6) ** alpha.
    length_score_weight: w: a candidate's ranking score (after the first pass with
      `keep_candidates_after_first_pass`, and at the end) adds w x the length predictor's
      log-prob of its length, where the predictor scores lengths ([B, num_classes]); 0 (the
      default) ranks by the tokens alone. With 'sum' scoring, 1 ranks by the joint log-prob
      log p(length) + log p(tokens | length).
    return_all_candidates: `padir_decode` also returns every candidate.
    return_history: also return the tokens predicted at every iteration.
    early_exit: stop the loop once every row has converged (the default). False runs exactly
      `num_decode_iterations` decoder passes (converged rows stay frozen, so the output is the
      same): fixed work, for speed benchmarks.
    num_canvas_sizes: refinement runs on the smallest of this many canvas lengths
      (`canvas_sizes`: T k / n for k = 1..n, rounded up to a multiple of 8) that holds the
      longest candidate, not on all T positions: a pass costs in proportion to its positions,
      and padding changes no real position's output (the decoder masks it). 1: always T.
    exit_confidence: a probability in [0, 1): a row also stops (early exit) once every one of
      its real tokens has at least this probability under the model; 0 turns it off. An
      adaptive iteration count: confident rows take fewer passes (the quality cost is measured
      in BENCHMARKS.md).
    masked_logits_only: with mask-predict's update (`keep_visible`, a [MASK] initial input and a
      rejecter that re-masks a bounded count: 'linear', 'constant_k', 'constant_fraction'),
      project to the vocabulary only the positions whose token can change (the masked ones and
      EOS, whose log-prob is scored): the first pass projects every position, the later ones
      the largest of their static counts (`projected_counts`); the same tokens and log-probs
      as projecting every position. Needs a `logits_fn` that takes `positions`. Off by
      default: on a CPU the gathers and scatters cost what the smaller projections save
      (BENCHMARKS.md).
    keep_candidates_after_first_pass: m: every length candidate gets the first pass, then only
      the m best of each example by their first-pass score (`score_candidates`, the model's own
      scores, duplicates never kept over valid ones) are refined further, on a batch of B * m
      rows (static shapes: their loop state and encoder rows gathered once; `logits_fn` gets
      `rows`). The others keep their first-pass output and rank last (-inf). None (the
      default), or m >= C: every candidate is refined. Off by default: the best candidate
      after one pass is not always the best after K, whichever score ranks them (the
      brevity penalty, `length_score_weight`; BENCHMARKS.md measures what it costs).
    blank_penalty: on an aligned (CTC) canvas, subtracted from the blank's logit before each
      token choice (the chosen tokens' log-probs are then under that shifted distribution): a
      length control for CTC decoding, > 0 gives longer outputs. 0 (the default) leaves the
      logits as they are; a scheme without an aligned canvas ignores it.
    blank_penalty_decay: the penalty at pass t (0-based) is `blank_penalty * decay ** t`: 1 (the
      default) applies it in every pass, 0 in the first only. A later pass re-predicts the
      least confident canvas positions, and the full penalty there lengthens the output again
      (BENCHMARKS.md).
    max_decode_length: not a field (the refinement loop never read it): accepted, as None, from
      configs recorded when it was one. The canvas length T is the batch's decoder length (a
      predict call may give it as `decoder_params['max_decode_length']`).
  """
  num_decode_iterations: int = 4
  temperature: float = 0.0
  top_k: int = 0
  top_p: float = 1.0
  top_k_lengths: int = 1
  length_beam: int = 1
  num_parallel_samples: int = 1
  scoring: str = "mean"
  alpha: float = 0.0
  length_score_weight: float = 0.0
  return_all_candidates: bool = False
  return_history: bool = False
  early_exit: bool = True
  num_canvas_sizes: int = 4
  exit_confidence: float = 0.0
  masked_logits_only: bool = False
  keep_candidates_after_first_pass: Optional[int] = None
  blank_penalty: float = 0.0
  blank_penalty_decay: float = 1.0
  max_decode_length: dataclasses.InitVar[Optional[int]] = None

  def __post_init__(self, max_decode_length: Optional[int] = None):
    if max_decode_length is not None:
      raise ValueError(
          f"PadirDecodeConfig.max_decode_length={max_decode_length}: the canvas length is no "
          "decode config field; it is the batch's decoder length, or a predict call's "
          "decoder_params['max_decode_length']")
    if self.scoring not in SCORINGS:
      raise ValueError(f"scoring={self.scoring!r}: expected one of {SCORINGS}")
    if self.num_decode_iterations < 1:
      raise ValueError(f"num_decode_iterations={self.num_decode_iterations} must be >= 1")
    _check_sampling(self.temperature, self.top_k, self.top_p)
    if self.top_k_lengths < 1:
      raise ValueError(f"top_k_lengths={self.top_k_lengths} must be >= 1")
    if self.length_beam < 1 or self.length_beam % 2 == 0:
      raise ValueError(f"length_beam={self.length_beam} must be odd (offsets -n//2 .. n//2)")
    if self.num_parallel_samples < 1:
      raise ValueError(f"num_parallel_samples={self.num_parallel_samples} must be >= 1")
    if self.alpha < 0:
      raise ValueError(f"alpha={self.alpha} must be >= 0")
    if not (math.isfinite(self.length_score_weight) and self.length_score_weight >= 0):
      raise ValueError(f"length_score_weight={self.length_score_weight} must be a finite "
                       "number >= 0")
    if not 0.0 <= self.exit_confidence < 1.0:
      raise ValueError(f"exit_confidence={self.exit_confidence} must be in [0, 1)")
    if self.num_canvas_sizes < 1:
      raise ValueError(f"num_canvas_sizes={self.num_canvas_sizes} must be >= 1")
    if not math.isfinite(self.blank_penalty):
      raise ValueError(f"blank_penalty={self.blank_penalty} must be a finite number")
    if not 0.0 <= self.blank_penalty_decay <= 1.0:
      raise ValueError(f"blank_penalty_decay={self.blank_penalty_decay} must be in [0, 1]")
    if (self.keep_candidates_after_first_pass is not None
        and self.keep_candidates_after_first_pass < 1):
      raise ValueError(f"keep_candidates_after_first_pass="
                       f"{self.keep_candidates_after_first_pass} must be >= 1 (None: keep all)")

  @property
  def num_candidates(self) -> int:
    """C, candidates per example: top_k_lengths x length_beam x num_parallel_samples."""
    return self.top_k_lengths * self.length_beam * self.num_parallel_samples


@dataclasses.dataclass(frozen=True, init=False)
class RefinementConfig:
  """Every option of a refinement loop, in its two parts: `scheme`, how the model refines (fixed
  when it is trained), and `decode`, the decode-time options of one predict call. What
  `padir_decode`, `refine` and training's unrolled stages read (`config.scheme.rejecter`,
  `config.decode.num_decode_iterations`). Frozen and hashable (a static argument under jit).

  Build it from its parts, `RefinementConfig(scheme, decode)` (or `RefinementConfig.of`); the
  fields of either part may also be given by name, each replacing that field of its part (or of
  the part's defaults), e.g. `RefinementConfig(rejecter='linear', num_decode_iterations=8)`.
  """
  scheme: RefinementScheme
  decode: PadirDecodeConfig

  def __init__(self, scheme: Optional[RefinementScheme] = None,
               decode: Optional[PadirDecodeConfig] = None, **fields):
    unknown = sorted(set(fields) - set(field_names(RefinementScheme))
                     - set(field_names(PadirDecodeConfig)))
    if unknown:
      raise TypeError(f"RefinementConfig got unknown fields {unknown}")
    scheme_fields = {k: v for k, v in fields.items() if k in field_names(RefinementScheme)}
    decode_fields = {k: v for k, v in fields.items() if k in field_names(PadirDecodeConfig)}
    scheme = RefinementScheme() if scheme is None else scheme
    decode = PadirDecodeConfig() if decode is None else decode
    object.__setattr__(self, "scheme", dataclasses.replace(scheme, **scheme_fields)
                       if scheme_fields else scheme)
    object.__setattr__(self, "decode", dataclasses.replace(decode, **decode_fields)
                       if decode_fields else decode)
    if self.decode.num_parallel_samples > 1 and self.scheme.decoder_input_scheme != "random":
      raise ValueError(
          f"num_parallel_samples={self.decode.num_parallel_samples} needs decoder_input_scheme="
          f"'random' (with {self.scheme.decoder_input_scheme!r} every sample would be identical)")

  @classmethod
  def of(cls, scheme: RefinementScheme, decode: PadirDecodeConfig) -> "RefinementConfig":
    """The loop's config of a model's `scheme` and a call's `decode` options."""
    return cls(scheme, decode)

  @property
  def num_candidates(self) -> int:
    """C, candidates per example (`PadirDecodeConfig.num_candidates`)."""
    return self.decode.num_candidates


def ablate_scheme(scheme: RefinementScheme, overrides: Mapping[str, Any]) -> RefinementScheme:
  """The trained `scheme` with fields replaced at decode time: an ablation.

  A model refines at inference as it was trained (its `RefinementScheme`); decode-time options
  (`PadirDecodeConfig`) never change that. This is the one, explicit, place where they may: a
  predict call's `decoder_params` mapping that names scheme fields (e.g. `{'rejecter':
  'constant_fraction', 'rejecter_fraction': 0.3}`, `padir demo --padir_decoder_params`) decodes
  with `ablate_scheme(model.scheme, those fields)`, to measure what another rejecter or
  remasking would give the trained model. Raises ValueError on a bad value.
  """
  unknown = sorted(set(overrides) - set(field_names(RefinementScheme)))
  if unknown:
    raise ValueError(f"{unknown} are no RefinementScheme fields")
  return dataclasses.replace(scheme, **overrides) if overrides else scheme


def field_names(cls: type) -> Tuple[str, ...]:
  """The field names of a config dataclass, in order."""
  return tuple(f.name for f in dataclasses.fields(cls))
