"""The aligned-canvas (CTC) student: no length prediction, one pass can be a whole translation.

The decoder's canvas is the source length times `upsample` (plus the EOS position): long enough
for the translation with room to spare. Each canvas position predicts a piece or CTC's blank, and
the output is the canvas collapsed (repeats merged, blanks removed): Libovický & Helcl (2018);
refined iteratively in the Imputer's way (Saharia et al. 2020: the least confident canvas
positions re-masked and predicted again, the alignment kept) through `decoding.refine`; trained
with glancing on the best alignment of the reference to the model's own first pass (Gu & Kong
2021, "Fully Non-autoregressive Neural Machine Translation").

- `initial_canvas`: the decoder input before the first pass, [B, W].
- `ctc_labels`, `ctc_loss`: optax's CTC loss over the canvas; `pin_revealed`: the Imputer's
  variant, the sum restricted to the alignments that agree with the canvas's revealed tokens.
- `best_alignment`: the Viterbi alignment of the reference to the canvas's log-probs.
- `CTCModel`: T5X's model interface (a `models.PadirModel` with another canvas and loss).
"""
import fractions
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import gin
import jax
import jax.numpy as jnp
import optax
from jax import lax

from padir import decoding
from padir import length
from padir import losses
from padir import models
from padir import network
from padir.special_tokens import SpecialTokens

Array = jax.Array
PyTree = Any
CANVAS_INPUTS = ("source", "mask")


def upsample_fraction(upsample: float) -> fractions.Fraction:
  """`upsample` as an exact ratio p / q (q <= 16): 2 -> 2/1, 1.5 -> 3/2. ValueError below 1 or
  for another number (1.37)."""
  ratio = fractions.Fraction(upsample).limit_denominator(16)
  if ratio < 1 or abs(float(ratio) - upsample) > 1e-9:
    raise ValueError(f"upsample={upsample}: expected a number >= 1 that is a ratio p / q with "
                     "q <= 16, such as 2, 1.5 or 1.25")
  return ratio


def canvas_width(source_width: int, upsample: float) -> int:
  """W = ceil(upsample x (S - 1)) + 1: the canvas of an [B, S] source batch (its EOS included)."""
  ratio = upsample_fraction(upsample)
  return -(-ratio.numerator * max(source_width - 1, 1) // ratio.denominator) + 1


def initial_canvas(encoder_input_tokens: Array, upsample: float, canvas_input: str,
                   special_tokens: SpecialTokens, width: Optional[int] = None) -> Array:
  """The canvas before the first pass: W_b = ceil(upsample x (source pieces, EOS excluded))
  positions, then EOS, then PAD.

  Args:
    encoder_input_tokens: [B, S] source tokens (EOS-terminated, PAD after).
    upsample: canvas positions per source piece, an integer or a ratio such as 1.5.
    canvas_input: 'source' (position i holds source piece floor(i / upsample): the uniform copy
      of GLAT and Fully-NAT, a monotone alignment to start from) or 'mask' ([MASK] everywhere).
    special_tokens: the id layout.
    width: W, the canvas width (default `canvas_width`, enough for any row).

  Returns:
    [B, W] int32.
  """
  if canvas_input not in CANVAS_INPUTS:
    raise ValueError(f"canvas_input={canvas_input!r}: expected one of {CANVAS_INPUTS}")
  tokens = jnp.asarray(encoder_input_tokens, jnp.int32)
  rows, source_width = tokens.shape
  width = canvas_width(source_width, upsample) if width is None else width
  p, q = upsample_fraction(upsample).as_integer_ratio()
  source = tokens != special_tokens.pad_id
  pieces = jnp.sum(source & (tokens != special_tokens.eos_id), axis=-1)  # [B]
  length = jnp.clip(-(-p * jnp.maximum(pieces, 1) // q), 1, width - 1)[:, None]  # real positions
  positions = jnp.arange(width)[None, :]
  if canvas_input == "source":
    index = jnp.clip(positions * q // p, 0, source_width - 1)
    canvas = jnp.take_along_axis(tokens, jnp.broadcast_to(index, (rows, width)), axis=-1)
    canvas = jnp.where(special_tokens.is_real_piece(canvas) & (canvas != special_tokens.eos_id)
                       & (canvas != special_tokens.pad_id), canvas, special_tokens.mask_id)
  else:
    canvas = jnp.full((rows, width), special_tokens.mask_id, jnp.int32)
  canvas = jnp.where(positions == length, special_tokens.eos_id, canvas)
  return jnp.where(positions > length, special_tokens.pad_id, canvas).astype(jnp.int32)


def ctc_labels(targets: Array, special_tokens: SpecialTokens) -> Tuple[Array, Array]:
  """The CTC labels of EOS-terminated targets [B, T]: (labels [B, T] with EOS and after as PAD,
  label_paddings [B, T] float32, 1 at PAD)."""
  targets = jnp.asarray(targets, jnp.int32)
  eos = targets == special_tokens.eos_id
  after = jnp.cumsum(eos, axis=-1) > 0
  labels = jnp.where(after, special_tokens.pad_id, targets)
  return labels, (labels == special_tokens.pad_id).astype(jnp.float32)


def feasible(labels: Array, label_paddings: Array, canvas_lengths: Array) -> Array:
  """[B] bool: a canvas of `canvas_lengths` [B] positions can align to the labels [B, N] (one
  position a label, and a blank between equal neighbours)."""
  real = label_paddings == 0
  repeats = jnp.sum(real[:, 1:] & (labels[:, 1:] == labels[:, :-1]), axis=-1)
  return jnp.sum(real, axis=-1) + repeats <= canvas_lengths


def ctc_loss(logits: Array, canvas_paddings: Array, labels: Array, label_paddings: Array,
             blank_id: int) -> Array:
  """-log p(labels | canvas) per row, summed over alignments: `optax.ctc_loss`. [B]; about 1e5
  for an infeasible row (mask it with `feasible`)."""
  return optax.ctc_loss(logits.astype(jnp.float32), canvas_paddings, labels, label_paddings,
                        blank_id=blank_id)


def pin_revealed(logits: Array, inputs: Array, revealed: Array) -> Array:
  """Logits [B, W, V] whose CTC loss sums only the alignments that hold `inputs` [B, W] where
  `revealed` [B, W] is True (the Imputer's loss, Saharia et al. 2020): a revealed position's
  logits become 0 at its input token and -1e9 elsewhere, so after the loss's log-softmax that
  token has probability 1 there (the revealed positions are given, not predicted; no gradient
  reaches their logits)."""
  pinned = jnp.where(jax.nn.one_hot(inputs, logits.shape[-1], dtype=bool), 0.0, -1e9)
  return jnp.where(revealed[..., None], pinned.astype(logits.dtype), logits)


def best_alignment(log_probs: Array, canvas_paddings: Array, labels: Array,
                   label_paddings: Array, blank_id: int, pad_id: int = 0) -> Array:
  """The most probable CTC alignment of each row's labels (Viterbi over the extended labels
  `_ l1 _ l2 ... _`): [B, W] int32, the id (a label or the blank) at each canvas position, PAD
  where `canvas_paddings` is 1. An infeasible row gets some path (mask it with `feasible`).

  Args:
    log_probs: [B, W, V] canvas log-probs (any per-position scores).
    canvas_paddings: [B, W] float, 1 at positions outside the canvas (a suffix of each row).
    labels: [B, N] label ids, label_paddings [B, N] 1 at PAD (a suffix).
    blank_id: CTC's blank.
    pad_id: the id written outside the canvas.
  """
  batch, width, _ = log_probs.shape
  num_labels = jnp.sum(label_paddings == 0, axis=-1).astype(jnp.int32)  # [B]
  states = 2 * labels.shape[1] + 1
  s = jnp.arange(states)
  extended = jnp.where(s % 2 == 0, blank_id, labels[:, jnp.clip((s - 1) // 2, 0, None)])  # [B, S]
  emissions = jnp.take_along_axis(log_probs.astype(jnp.float32),
                                  jnp.broadcast_to(extended[:, None, :], (batch, width, states)),
                                  axis=-1)  # [B, W, S]
  valid_state = s[None, :] <= 2 * num_labels[:, None]
  # A label may follow the label two states back when the blank between can be skipped.
  skip = (s[None, :] % 2 == 1) & (s[None, :] >= 2) & (
      extended != jnp.pad(extended[:, :-2], ((0, 0), (2, 0)), constant_values=-1))
  neg = jnp.float32(-1e30)
  start = jnp.where((s[None, :] <= 1) & valid_state, emissions[:, 0], neg)
  inside = canvas_paddings == 0

  def step(score, inputs):
    emission, active = inputs  # [B, S], [B]
    stay = score
    advance = jnp.pad(score[:, :-1], ((0, 0), (1, 0)), constant_values=neg)
    jump = jnp.where(skip, jnp.pad(score[:, :-2], ((0, 0), (2, 0)), constant_values=neg), neg)
    choices = jnp.stack([stay, advance, jump], axis=-1)  # [B, S, 3]
    back = jnp.argmax(choices, axis=-1).astype(jnp.int32)
    new = jnp.where(valid_state, jnp.max(choices, axis=-1) + emission, neg)
    new = jnp.where(active[:, None], new, score)
    return new, jnp.where(active[:, None], back, 0)

  final, backs = lax.scan(step, start, (jnp.moveaxis(emissions[:, 1:], 1, 0),
                                        jnp.moveaxis(inside[:, 1:], 1, 0)))
  last = 2 * num_labels
  end_scores = jnp.stack([final[jnp.arange(batch), last],
                          jnp.where(num_labels > 0, final[jnp.arange(batch), last - 1], neg)], -1)
  state = last - jnp.argmax(end_scores, axis=-1).astype(jnp.int32)  # [B]

  def trace(state, back):  # Backwards over positions W-1 .. 1: the state at the position before.
    previous = state - jnp.take_along_axis(back, state[:, None], axis=-1)[:, 0]
    return previous, state

  first, later = lax.scan(trace, state, backs, reverse=True)
  path = jnp.concatenate([first[:, None], jnp.moveaxis(later, 0, 1)], axis=1)  # [B, W] states
  ids = jnp.take_along_axis(extended, path, axis=-1)
  return jnp.where(inside, ids, pad_id).astype(jnp.int32)


def _pad_to(tokens: Array, width: int) -> Array:
  return jnp.pad(tokens, ((0, 0), (0, width - tokens.shape[1])))


@gin.configurable
class CTCModel(models.PadirModel):
  """The aligned-canvas student (module docstring): the same T5 network and warm start as
  `models.PadirModel`, a canvas of `upsample` x the source length instead of a predicted length,
  the CTC loss instead of the token cross-entropy.

  Training: a no-gradient first pass from the initial canvas gives the best alignment of the
  reference (`best_alignment`); each row then sees some of that alignment's tokens in its canvas
  and the CTC loss is taken on the whole canvas. The first `glancing_fraction` of the rows are
  glanced (Fully-NAT: `glancing_ratio` x the positions where the first pass disagrees with the
  alignment are revealed, at random, so the share falls as the model improves); the other rows
  get a uniformly random share of it revealed (the Imputer's masked alignments), which trains
  the later refinement passes. With `glancing_ratio` 0 every row gets the random share. With
  `pin_revealed_tokens` the loss sums only the alignments that keep the revealed tokens where
  they are (the Imputer's loss), as refinement keeps the canvas's visible tokens; without it,
  every alignment of the reference counts.
  Rows whose canvas cannot hold the reference (more pieces, plus a blank between repeats, than
  positions) are left out of the loss; `feasible` reports their share.

  Decoding (`decode_fn`, `decoding.aligned_decode`): the argmax over pieces and the blank, then
  the Imputer's refinement on the canvas with the model's scheme (the rejecter below;
  `decoding.PadirDecodeConfig.num_decode_iterations` passes), then the collapse.

  Args:
    module, optimizer_def, special_tokens, vocabulary, loss_normalizing_factor: as
      `models.BaseModel`'s (label smoothing and z-loss do not apply to the CTC loss).
    upsample: canvas positions per source piece (2-3; a ratio such as 1.5 allowed: a shorter
      canvas is a cheaper pass, where the targets are not longer than the sources).
    canvas_input: the initial canvas, 'source' (the upsampled source pieces) or 'mask'.
    glancing_ratio, glancing_fraction, pin_revealed_tokens: as above.
    rejecter, rejecter_k, rejecter_fraction: which canvas positions a refinement pass re-masks
      (`decoding.RefinementScheme`; re-masked positions get their initial token back, the others
      keep theirs: the Imputer's update). The default, the least confident quarter of the canvas
      each pass, gave the demo's distilled student +1.8 BLEU at 2 passes over 1, where
      mask-predict's linear schedule (half the canvas at pass 2 of 2) lost 4.3 (BENCHMARKS.md).
    decode_fn: the decoding method, `decoding.aligned_decode` by default, called as
      `decode_fn(logits_fn, initial_canvas, rng, config, special_tokens, rescore_fn)`.
  """

  def __init__(self,
               module: network.Transformer,
               optimizer_def: Any = None,
               special_tokens: Optional[SpecialTokens] = None,
               vocabulary: Any = None,
               loss_normalizing_factor: Any = "NUM_REAL_TARGET_TOKENS",
               upsample: float = 2,
               canvas_input: str = "source",
               glancing_ratio: float = 0.5,
               glancing_fraction: float = 0.5,
               pin_revealed_tokens: bool = False,
               rejecter: str = "constant_fraction",
               rejecter_k: int = 1,
               rejecter_fraction: float = 0.25,
               decode_fn: Callable[..., Tuple[Array, Dict[str, Array]]] = decoding.aligned_decode):
    upsample_fraction(upsample)  # ValueError below 1.
    if canvas_input not in CANVAS_INPUTS:
      raise ValueError(f"canvas_input={canvas_input!r}: expected one of {CANVAS_INPUTS}")
    if not 0.0 <= glancing_ratio <= 1.0 or not 0.0 <= glancing_fraction <= 1.0:
      raise ValueError(f"glancing_ratio={glancing_ratio} and glancing_fraction="
                       f"{glancing_fraction} must be in [0, 1]")
    if rejecter == "learned":
      raise ValueError("CTCModel has no learned rejecter head: rejecter='learned' is unsupported")
    self.upsample = upsample
    self.canvas_input = canvas_input
    super().__init__(
        module, optimizer_def, special_tokens, vocabulary,
        loss=losses.LossSettings(loss_normalizing_factor=loss_normalizing_factor),
        length_predictor=length.Oracle(),
        scheme=decoding.RefinementScheme(
            decoder_input_scheme="mask", rejecter=rejecter, rejecter_k=rejecter_k,
            rejecter_fraction=rejecter_fraction, remasking_scheme="initial", keep_visible=True,
            aligned=True),
        decode_fn=decode_fn)
    # Glancing is this model's own (`loss_fn`), not `PadirModel`'s training recipe.
    self.glancing_ratio = glancing_ratio
    self.glancing_fraction = glancing_fraction
    self.pin_revealed_tokens = pin_revealed_tokens
    _ = self.special_tokens.blank_id  # Fails early when the vocabulary has no row for it.

  def _network_overrides(self) -> Dict[str, Any]:
    return dict(decoder_causal=False, length_head=None, rejecter_head=False)

  def canvas(self, encoder_input_tokens: Array) -> Array:
    """The initial canvas of a batch's sources: [B, S] -> [B, canvas_width(S, upsample)]."""
    return initial_canvas(encoder_input_tokens, self.upsample, self.canvas_input,
                          self.special_tokens)

  def _canvas_loss(self, logits: Array, canvas: Array, labels: Array,
                   label_paddings: Array) -> Array:
    """CTC loss [B] of logits over the canvas's real positions (neither PAD nor EOS)."""
    special = self.special_tokens
    real = (canvas != special.pad_id) & (canvas != special.eos_id)
    return ctc_loss(logits, (~real).astype(jnp.float32), labels, label_paddings,
                    special.blank_id)

  def loss_fn(self, params: PyTree, batch: Mapping[str, Array],
              dropout_rng: Optional[Array]) -> Tuple[Array, Dict[str, Array]]:
    """CTC loss over the canvas, normalised per real target token (T5X's
    'NUM_REAL_TARGET_TOKENS'; EOS excluded: its position is fixed) or per row
    ('AVERAGE_PER_SEQUENCE').

    Metrics: loss, ctc_loss, accuracy (the share of real canvas positions where the first pass's
    argmax equals the best alignment), sequence_accuracy (first pass collapsed == reference),
    feasible (the share of rows in the loss), glancing_revealed (the share of canvas positions
    given to the glanced rows).
    """
    special = self.special_tokens
    if dropout_rng is None:
      encoder_rng, pass_rng, glance_rng = None, None, jax.random.PRNGKey(0)
    else:
      encoder_rng, pass_rng, glance_rng = jax.random.split(dropout_rng, 3)
    encoder_tokens = jnp.asarray(batch["encoder_input_tokens"], jnp.int32)
    encoded = self._encode(params, encoder_tokens, encoder_rng)
    cross_kv = self._cross_kv(params, encoded)
    canvas = self.canvas(encoder_tokens)
    labels, label_paddings = ctc_labels(batch["decoder_target_tokens"], special)
    real = (canvas != special.pad_id) & (canvas != special.eos_id)
    ok = feasible(labels, label_paddings, jnp.sum(real, axis=-1))

    # The first pass, without gradient: its argmax and the best alignment of the reference.
    first_logits, _ = self._decode_pass(params, encoder_tokens, cross_kv, canvas)
    first_logits = lax.stop_gradient(first_logits)
    first, _ = decoding.choose_tokens(first_logits, None, self.train_config, special, canvas)
    log_probs = jax.nn.log_softmax(first_logits.astype(jnp.float32))
    alignment = best_alignment(log_probs, (~real).astype(jnp.float32), labels, label_paddings,
                               special.blank_id, special.pad_id)
    alignment = jnp.where(canvas == special.eos_id, special.eos_id, alignment)

    rows = canvas.shape[0]
    glanced = jnp.arange(rows) < round(self.glancing_fraction * rows)
    share_rng, glance_rng = jax.random.split(glance_rng)
    ratio = jnp.where(glanced, self.glancing_ratio, jax.random.uniform(share_rng, (rows,)))
    inputs, revealed = decoding.glance(alignment, jnp.where(glanced[:, None], first, canvas),
                                       canvas, ratio, glance_rng, special)
    logits, _ = self._decode_pass(params, encoder_tokens, cross_kv, inputs, pass_rng)
    if self.pin_revealed_tokens:
      logits = pin_revealed(logits, inputs, revealed & real)
    per_row = self._canvas_loss(logits, canvas, labels, label_paddings)
    weight = ok.astype(jnp.float32)
    tokens = jnp.sum(label_paddings == 0, axis=-1).astype(jnp.float32)
    if self.loss_normalizing_factor == "AVERAGE_PER_SEQUENCE":
      loss = jnp.sum(per_row * weight) / jnp.maximum(jnp.sum(weight), 1.0)
    else:
      loss = jnp.sum(per_row * weight) / jnp.maximum(jnp.sum(tokens * weight), 1.0)
    agree = jnp.sum((first == alignment) & real & ok[:, None])
    collapsed = decoding.ctc_collapse(jnp.where(real, first, special.pad_id), special.blank_id,
                                      special.pad_id)
    width = max(collapsed.shape[1], labels.shape[1])
    exact = jnp.all(_pad_to(collapsed, width) == _pad_to(labels, width), axis=-1) & ok
    real_glanced = real & glanced[:, None]
    metrics = {
        "loss": loss, "ctc_loss": loss,
        "accuracy": agree / jnp.maximum(jnp.sum(real & ok[:, None]), 1),
        "sequence_accuracy": jnp.sum(exact) / jnp.maximum(jnp.sum(ok), 1),
        "feasible": jnp.mean(weight),
        "glancing_revealed": jnp.sum(revealed & real_glanced) / jnp.maximum(
            jnp.sum(real_glanced), 1)}
    return loss, {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}

  def predict_batch_with_aux(self, params: PyTree, batch: Mapping[str, Array],
                             rng: Optional[Array] = None, decoder_params: Any = None,
                             rescore_fn: Any = None) -> Tuple[Array, Dict[str, Array]]:
    """Decodes on the canvas (`decode_fn`): tokens [B, W] (EOS-terminated, PAD after; W the
    canvas width, `canvas_width(S, upsample)`, whatever the batch's decoder length) and aux
    ('scores' [B], 'iterations' [B], 'lengths' [B], 'alignments' [B, W], ...). `rescore_fn` is
    not used: there is one candidate."""
    config = self.refinement_config(decoder_params)
    encoder_tokens = jnp.asarray(batch["encoder_input_tokens"], jnp.int32)
    encoded = self._encode(params, encoder_tokens)
    cross_kv = self._cross_kv(params, encoded)

    def logits_fn(decoder_input_tokens: Array, positions: Optional[Array] = None):
      return self._decode_pass(params, encoder_tokens, cross_kv, decoder_input_tokens,
                               positions=positions)

    tokens, aux = self.decode_fn(logits_fn, self.canvas(encoder_tokens),
                                 jax.random.PRNGKey(0) if rng is None else rng, config,
                                 self.special_tokens, rescore_fn)
    aux = dict(aux)
    aux["candidate_scores"] = aux["scores"]
    aux["scores"] = aux["scores"][:, 0]
    return tokens, aux

  def score_batch(self, params: PyTree, batch: Mapping[str, Array]) -> Array:
    """log p(target | source) of one pass from the initial canvas, summed over alignments
    (-CTC loss); -1e5 or so where the canvas cannot hold the target. [B] float32."""
    special = self.special_tokens
    encoder_tokens = jnp.asarray(batch["encoder_input_tokens"], jnp.int32)
    encoded = self._encode(params, encoder_tokens)
    canvas = self.canvas(encoder_tokens)
    logits, _ = self._decode_pass(params, encoder_tokens, self._cross_kv(params, encoded), canvas)
    labels, label_paddings = ctc_labels(batch["decoder_target_tokens"], special)
    return -self._canvas_loss(logits, canvas, labels, label_paddings)
