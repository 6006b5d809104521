"""PaDIR refinement: `refinement_step` (one decoder pass, the token choice, the rejecter and the
re-masking: the step both `refine`'s loop and the model's unrolled training stages run), `refine`
(the loop, one `lax.while_loop` over a `RefinementState`), `score_candidates`, and the decoding
methods `padir_decode` (candidates -> refine -> score (-> optional rescoring) -> best per
example; `PadirModel`'s default `decode_fn`) and `aligned_decode` (`ctc.CTCModel`'s). The
`logits_fn` contract and the row conventions: `padir/decoding/__init__.py`.
"""
import math
from typing import Callable, Dict, Optional, Tuple

import flax
import jax
import jax.numpy as jnp
from jax import lax

from padir.decoding.choice import NEG_INF, brevity_penalty, choose_tokens
from padir.decoding.config import RefinementConfig
from padir.decoding.pieces import (_compact, _front_order, _linear_schedule_count,
                                  _real_positions, canvas_sizes, ctc_collapse,
                                  initial_decoder_inputs, keep_visible_tokens, length_candidates,
                                  length_log_probs, projected_counts, reject, remask, stutter_mask)
from padir.special_tokens import PAD_ID, SpecialTokens

Array = jax.Array
LogitsFn = Callable[..., Tuple[Array, Optional[Array]]]
RescoreFn = Callable[[Array], Array]


@jax.named_scope("score_candidates")
def score_candidates(tokens: Array, token_log_probs: Array, config: RefinementConfig,
                     pad_id: int = PAD_ID) -> Array:
  """Candidate scores: mean or summed token log-probs over non-PAD tokens, brevity-penalised.

  Args:
    tokens: [N, T] final tokens.
    token_log_probs: [N, T] their log-probs.
    config: `decode.scoring` ('mean' | 'sum') and `decode.alpha`.
    pad_id: PAD.

  Returns:
    [N] float32: `sum(log_probs) / (n if mean else 1) / ((5 + n) / 6) ** alpha`, n the number of
    non-PAD tokens.
  """
  present = tokens != pad_id
  total = jnp.sum(jnp.where(present, token_log_probs, 0.0), axis=-1)
  n = jnp.sum(present, axis=-1)
  if config.decode.scoring == "mean":
    total = total / jnp.maximum(n, 1)
  return total / brevity_penalty(n, config.decode.alpha)


# ------------------------------------------------------------------------------------------------
# PaDIR: the refinement loop.


def _choose_at_masked(logits_fn: LogitsFn, inputs: Array, count: int, rng: Array,
                      config: RefinementConfig, special_tokens: SpecialTokens,
                      initial_tokens: Array, iteration: Array) -> Tuple[Array, Array]:
  """`choose_tokens` on the logits of the masked positions and EOS only.

  The positions still holding their initial token (PAD aside) are gathered first and the pass
  projects `count` of them (a static shape, at least as many as any row has; `refine` gives the
  largest of `projected_counts`' later iterations), and the choices are scattered back;
  elsewhere the initial token stays, log-prob 0 (what `keep_visible_tokens` then replaces by the
  visible input). [N, T] -> ([N, T], [N, T]).
  """
  rows, length = inputs.shape
  projected = (inputs == initial_tokens) & (inputs != special_tokens.pad_id)
  positions = _front_order(projected)[:, :count]
  logits, _ = logits_fn(inputs, positions)
  tokens, token_log_probs = choose_tokens(
      logits, rng, config, special_tokens, jnp.take_along_axis(initial_tokens, positions, axis=-1),
      iteration)
  at = (jnp.arange(rows)[:, None], positions)
  tokens = jnp.zeros((rows, length), jnp.int32).at[at].set(tokens)
  token_log_probs = jnp.zeros((rows, length), jnp.float32).at[at].set(token_log_probs)
  return (jnp.where(projected, tokens, initial_tokens),
          jnp.where(projected, token_log_probs, 0.0))


@flax.struct.dataclass
class RefinementStep:
  """What one refinement step gives (N rows, T positions, V ids).

  Attributes:
    tokens: [N, T] int32, the predictions (with `keep_visible`, the visible inputs kept).
    token_log_probs: [N, T] float32, their log-probs.
    rejected: [N, T] bool, what the rejecter re-masked (all False without `remask_next`).
    next_inputs: [N, T] int32, the next decoder input (no gradient).
    logits_sum: [N, T, V] float32, the logits summed so far ('logits_sum' remasking with
      `remask_next` only; no gradient), else the one given.
    logits: [N, T, V], or None when only `count` masked positions were projected.
    accept_logits: [N, T] the learned rejecter's logits, or None.
  """
  tokens: Array
  token_log_probs: Array
  rejected: Array
  next_inputs: Array
  logits_sum: Optional[Array]
  logits: Optional[Array]
  accept_logits: Optional[Array]


def refinement_step(logits_fn: LogitsFn,
                    inputs: Array,
                    input_log_probs: Array,
                    iteration: Array,
                    config: RefinementConfig,
                    special_tokens: SpecialTokens,
                    *,
                    initial_tokens: Array,
                    previous_tokens: Array,
                    logits_sum: Optional[Array] = None,
                    rng: Optional[Array] = None,
                    count: Optional[int] = None,
                    remask_next: bool = True) -> RefinementStep:
  """One step of parallel iterative refinement: what `refine`'s loop body and the model's
  unrolled training stages both run (fairseq's step / loop split).

  One decoder pass on `inputs`; tokens chosen (`choose_tokens`: EOS and PAD kept where
  `initial_tokens` has them); with `keep_visible`, mask-predict's update
  (`keep_visible_tokens`); then, with `remask_next`, the rejecter (`reject`, plus
  `stutter_mask` with `stutter_remasking`) and the re-masking (`remask`) that make the next
  decoder input.

  Args:
    logits_fn: `(decoder_input_tokens [N, T], positions=None) -> (logits, accept_logits)`.
    inputs: [N, T] this step's decoder input.
    input_log_probs: [N, T] the log-probs the visible input tokens had when predicted
      (`keep_visible`; zeros at the first step).
    iteration: [] int, 0-based (the linear rejecter's schedule).
    config: the refinement options.
    special_tokens: the id layout.
    initial_tokens: [N, T] the initial decoder input.
    previous_tokens: [N, T] what 'previous' remasking puts back (decoding: `inputs`; training's
      first stage: `initial_tokens`, never its partly gold input).
    logits_sum: [N, T, V] the logits summed over the earlier steps ('logits_sum' remasking;
      None: none yet).
    rng: PRNG key of sampled choice (None: argmax).
    count: project only this many masked positions (`_choose_at_masked`; None: every one).
    remask_next: run the rejecter and the re-masking (False: the next input is the tokens, e.g.
      after the last step).
  """
  if count is None:
    logits, accept_logits = logits_fn(inputs)
    tokens, token_log_probs = choose_tokens(logits, rng, config, special_tokens, initial_tokens,
                                            iteration)
  else:
    logits = accept_logits = None
    tokens, token_log_probs = _choose_at_masked(logits_fn, inputs, count, rng, config,
                                                special_tokens, initial_tokens, iteration)
  if config.scheme.keep_visible:
    tokens, token_log_probs = keep_visible_tokens(tokens, token_log_probs, inputs,
                                                  input_log_probs, initial_tokens)
  rejected = jnp.zeros(tokens.shape, bool)
  next_inputs = tokens
  if remask_next:
    if config.scheme.remasking_scheme == "logits_sum":
      logits_sum = lax.stop_gradient(logits if logits_sum is None else logits_sum + logits)
    rejected = reject(tokens, token_log_probs, iteration, config, special_tokens, accept_logits)
    if config.scheme.stutter_remasking:
      rejected |= stutter_mask(tokens, special_tokens.pad_id, special_tokens.eos_id)
    next_inputs = remask(tokens, rejected, config, special_tokens, initial_tokens=initial_tokens,
                         previous_tokens=previous_tokens, logits_sum=logits_sum)
  return RefinementStep(tokens, token_log_probs, rejected, lax.stop_gradient(next_inputs),
                        logits_sum, logits, accept_logits)


@flax.struct.dataclass
class RefinementState:
  """Loop state of `refine` (N rows, T positions, I = config.decode.num_decode_iterations)."""
  iteration: Array  # [] int32, iterations run so far.
  inputs: Array  # [N, T] int32, the next decoder input.
  tokens: Array  # [N, T] int32, the latest predictions.
  token_log_probs: Array  # [N, T] float32.
  done: Array  # [N] bool, the row has converged.
  iterations: Array  # [N] int32, iterations the row used.
  rng: Array
  logits_sum: Optional[Array] = None  # [N, T, V] float32, 'logits_sum' remasking only.
  history: Optional[Array] = None  # [I, N, T] int32, return_history only.


def _take_rows(state: "RefinementState", rows: Array) -> "RefinementState":
  """The loop state of `rows` [N'] of its N rows."""
  return state.replace(
      inputs=state.inputs[rows], tokens=state.tokens[rows],
      token_log_probs=state.token_log_probs[rows], done=state.done[rows],
      iterations=state.iterations[rows],
      logits_sum=None if state.logits_sum is None else state.logits_sum[rows],
      history=None if state.history is None else state.history[:, rows])


def _final_tokens(tokens: Array, token_log_probs: Array, config: RefinementConfig,
                  special_tokens: SpecialTokens) -> Tuple[Array, Array]:
  """What `refine` returns of its last predictions [N, T]: stutter removed with
  `stutter_remasking`."""
  if not config.scheme.stutter_remasking:
    return tokens, token_log_probs
  pad_id, eos_id = special_tokens.pad_id, special_tokens.eos_id
  keep = (tokens != pad_id) & ~stutter_mask(tokens, pad_id, eos_id)
  return _compact(keep, tokens, token_log_probs, pad_id)


def refine(logits_fn: LogitsFn,
           initial_tokens: Array,
           rng: Array,
           config: RefinementConfig,
           special_tokens: SpecialTokens,
           prune_fn: Optional[Callable[[Array, Array], Array]] = None
           ) -> Tuple[Array, Array, Dict[str, Array]]:
  """Parallel iterative refinement of N rows of fixed lengths.

  Each iteration makes one `logits_fn` call on all rows, chooses tokens (EOS and PAD kept where
  the initial input has them), then, except on the last iteration, re-masks the rejecter's
  tokens; with `stutter_remasking` tokens equal to their left neighbour are re-masked too (and
  removed after the last iteration). A row is done when its next decoder input equals its
  current one and nothing iteration-dependent is left to change it (the linear schedule still
  re-masking something, or the logits sum replacing something): with argmax choice it is then a
  fixed point, so stopping it changes nothing. Done rows are frozen; the loop stops when every
  row is done (with `config.decode.early_exit`, the default) or after
  `config.decode.num_decode_iterations`.

  Args:
    logits_fn: `(decoder_input_tokens [N, T]) -> (logits [N, T, V], accept_logits [N, T] | None)`.
    initial_tokens: [N, T] int32 from `initial_decoder_inputs`.
    rng: PRNG key (token sampling).
    config: the refinement options.
    special_tokens: the id layout.
    prune_fn: optional `(tokens [N, T], token_log_probs [N, T]) -> rows [N'] int32`, given the
      first pass's output (as `refine` would return it): only these rows are refined further,
      as a batch of N' rows (their state gathered once; `logits_fn` is then called with
      `rows=rows`, the rows of its N whose decoder inputs it gets). Ignored with one iteration.

  Returns:
    tokens [N, T] int32 (EOS-terminated, PAD after), token_log_probs [N, T] float32 (0 at PAD),
    and aux: 'iterations' [N] int32 (decoder passes each row used) and, with
    `config.decode.return_history`, 'history' [I, N, T] (each iteration's predictions; a row's final
    predictions repeat after it is done). With `prune_fn`, the rows it dropped return their
    first pass (1 iteration) and aux has 'kept' [N] bool.
  """
  num_iterations = config.decode.num_decode_iterations
  if num_iterations == 1:
    prune_fn = None  # Nothing after the first pass to spare.
  pad_id, eos_id = special_tokens.pad_id, special_tokens.eos_id
  rows, length = initial_tokens.shape
  initial_tokens = initial_tokens.astype(jnp.int32)
  # What the configuration does not need is left out when tracing, not masked at run time:
  # argmax choice splits no key; a configuration that re-masks nothing (passthrough, or a
  # rejecter of count 0, without stutter re-masking) runs no rejecter, no re-masking and keeps
  # no logits sum; one pass runs no loop.
  sampling = config.decode.temperature > 0
  remasks = config.scheme.stutter_remasking or not (
      config.scheme.rejecter == "passthrough"
      or (config.scheme.rejecter == "constant_k" and config.scheme.rejecter_k == 0)
      or (config.scheme.rejecter == "constant_fraction" and config.scheme.rejecter_fraction == 0.0))
  if config.scheme.remasking_scheme == "logits_sum" and remasks and num_iterations > 1:
    vocab = jax.eval_shape(logits_fn, initial_tokens)[0].shape[-1]
    logits_sum = jnp.zeros((rows, length, vocab), jnp.float32)
  else:
    logits_sum = None

  if num_iterations == 1:
    # One pass: what it re-masks no later pass reads; no loop.
    step = refinement_step(
        logits_fn, initial_tokens, jnp.zeros((rows, length), jnp.float32), jnp.array(0),
        config, special_tokens, initial_tokens=initial_tokens, previous_tokens=initial_tokens,
        rng=jax.random.split(rng)[1] if sampling else None, remask_next=False)
    tokens, token_log_probs = step.tokens, step.token_log_probs
    aux = {"iterations": jnp.ones((rows,), jnp.int32)}
    if config.decode.return_history:
      aux["history"] = tokens[None]
    return (*_final_tokens(tokens, token_log_probs, config, special_tokens), aux)

  counts = projected_counts(config, length)
  # Mask-predict projecting its masked positions only: the first pass (every position masked)
  # runs before the loop, the later ones project one static count, their largest.
  count = None if counts is None or len(counts) == 1 else max(counts[1:])

  def make_body(logits_fn: LogitsFn, initial_tokens: Array):
    """One iteration on the rows `logits_fn` and `initial_tokens` [N', T] are for."""

    def body(state: RefinementState, count: Optional[int] = count) -> RefinementState:
      t = state.iteration
      rng, choice_rng = jax.random.split(state.rng) if sampling else (state.rng, None)
      # (After the last pass the next input is read by nothing: no mask for it.)
      step = refinement_step(
          logits_fn, state.inputs, state.token_log_probs, t, config, special_tokens,
          initial_tokens=initial_tokens, previous_tokens=state.inputs,
          logits_sum=state.logits_sum, rng=choice_rng, count=count, remask_next=remasks)
      tokens, token_log_probs, next_inputs = step.tokens, step.token_log_probs, step.next_inputs
      summed, rejected = step.logits_sum, step.rejected
      converged = jnp.all(next_inputs == state.inputs, axis=-1)
      if config.scheme.rejecter == "linear":
        num_real = jnp.sum(_real_positions(tokens, pad_id, eos_id), axis=-1)
        converged &= _linear_schedule_count(num_real, t, num_iterations) == 0
      if summed is not None:
        converged &= ~jnp.any(rejected, axis=-1)
      if config.decode.exit_confidence > 0:
        real = _real_positions(tokens, pad_id, eos_id)
        sure = token_log_probs >= math.log(config.decode.exit_confidence)
        converged |= jnp.all(sure | ~real, axis=-1)
      active = ~state.done
      update = active[:, None]
      tokens = jnp.where(update, tokens, state.tokens)
      return RefinementState(
          iteration=t + 1,
          inputs=jnp.where(update, next_inputs, state.inputs),
          tokens=tokens,
          token_log_probs=jnp.where(update, token_log_probs, state.token_log_probs),
          done=state.done | converged,
          iterations=jnp.where(active, t + 1, state.iterations),
          rng=rng,
          logits_sum=summed,
          history=None if state.history is None else state.history.at[t].set(tokens))

    return body

  def cond(state: RefinementState) -> Array:
    if not config.decode.early_exit:
      return state.iteration < num_iterations
    return (state.iteration < num_iterations) & ~jnp.all(state.done)

  def history(state: RefinementState) -> Array:  # [I, N', T]
    ran = jnp.arange(num_iterations)[:, None, None] < state.iteration
    return jnp.where(ran, state.history, state.tokens[None])

  state = RefinementState(
      iteration=jnp.array(0, jnp.int32),
      inputs=initial_tokens,
      tokens=initial_tokens,
      token_log_probs=jnp.zeros((rows, length), jnp.float32),
      done=jnp.zeros((rows,), bool),
      iterations=jnp.zeros((rows,), jnp.int32),
      rng=rng,
      logits_sum=logits_sum,
      history=(jnp.zeros((num_iterations, rows, length), jnp.int32)
               if config.decode.return_history else None))
  body = make_body(logits_fn, initial_tokens)
  if count is not None or prune_fn is not None:
    state = body(state, None)  # The first pass: iteration 0 always runs.
  first = None
  if prune_fn is not None:
    # Only the rows `prune_fn` keeps go on, as a smaller batch: their state and encoder rows are
    # gathered once, so every later pass costs N' rows, not N.
    first = state
    kept = prune_fn(*_final_tokens(state.tokens, state.token_log_probs, config,
                                   special_tokens))
    state = _take_rows(state, kept)
    body = make_body(lambda tokens, positions=None: logits_fn(tokens, positions, rows=kept),
                     initial_tokens[kept])
  state = lax.while_loop(cond, body, state)
  tokens, token_log_probs = _final_tokens(state.tokens, state.token_log_probs, config,
                                          special_tokens)
  aux = {"iterations": state.iterations}
  if config.decode.return_history:
    aux["history"] = history(state)
  if first is not None:  # The dropped rows return their first pass.
    first_tokens, first_log_probs = _final_tokens(first.tokens, first.token_log_probs, config,
                                                  special_tokens)
    tokens = first_tokens.at[kept].set(tokens)
    token_log_probs = first_log_probs.at[kept].set(token_log_probs)
    aux["iterations"] = first.iterations.at[kept].set(state.iterations)
    aux["kept"] = jnp.zeros((rows,), bool).at[kept].set(True)
    if config.decode.return_history:
      aux["history"] = history(first).at[:, kept].set(aux["history"])
  return tokens, token_log_probs, aux


def _refine_on_fitted_canvas(logits_fn: LogitsFn, initial_tokens: Array, longest: Array,
                             rng: Array, config: RefinementConfig, special_tokens: SpecialTokens,
                             prune_fn: Optional[Callable[[Array, Array], Array]] = None
                             ) -> Tuple[Array, Array, Dict[str, Array]]:
  """`refine` on the first `canvas` positions of `initial_tokens` [N, T], `canvas` the smallest
  of `canvas_sizes` >= `longest` (a traced [] int: `lax.switch` picks the branch at run time),
  the outputs padded back to T."""
  length = initial_tokens.shape[1]
  sizes = canvas_sizes(length, config.decode.num_canvas_sizes)

  def on_canvas(canvas: int):
    def run(tokens: Array):
      tokens, token_log_probs, aux = refine(logits_fn, tokens[:, :canvas], rng, config,
                                            special_tokens, prune_fn)
      pad = [(0, 0)] * (tokens.ndim - 1) + [(0, length - canvas)]
      aux = dict(aux)
      if "history" in aux:
        aux["history"] = jnp.pad(aux["history"], [(0, 0)] + pad,
                                 constant_values=special_tokens.pad_id)
      return (jnp.pad(tokens, pad, constant_values=special_tokens.pad_id),
              jnp.pad(token_log_probs, pad), aux)
    return run

  if len(sizes) == 1:
    return on_canvas(length)(initial_tokens)
  branch = jnp.searchsorted(jnp.asarray(sizes), longest)
  return lax.switch(branch, [on_canvas(size) for size in sizes], initial_tokens)


def padir_decode(logits_fn: LogitsFn,
                 length_predictions: Array,
                 rng: Array,
                 config: RefinementConfig,
                 special_tokens: SpecialTokens,
                 max_decode_len: int,
                 rescore_fn: Optional[RescoreFn] = None) -> Tuple[Array, Dict[str, Array]]:
  """PaDIR decoding: length candidates -> refinement -> scoring -> the best candidate.

  Args:
    logits_fn: `(decoder_input_tokens [B * C, T]) -> (logits [B * C, T, V], accept_logits
      [B * C, T] | None)`, rows example-major (row b * C + c), C = `config.num_candidates`;
      with `keep_candidates_after_first_pass` < C also `(decoder_input_tokens [N', T],
      positions, rows=rows [N'])` for the inputs of its rows `rows` only.
    length_predictions: length scores [B, num_classes] or predicted lengths [B]
      (see `length_candidates`).
    rng: PRNG key (random initial inputs, token sampling).
    config: the refinement options.
    special_tokens: the id layout.
    max_decode_len: T.
    rescore_fn: optional `(tokens [B * C, T]) -> scores [B * C]` (higher is better, e.g. an AR
      teacher's log-likelihood) that replaces the candidates' own scores for ranking.

  Returns:
    tokens [B, T] int32, the best candidate of each example (EOS-terminated, PAD after, no
    stutter when `stutter_remasking`), and aux:
      'scores' [B, C] ranking scores (-inf for duplicate candidates, and for those dropped
        after the first pass with `keep_candidates_after_first_pass`; with
        `length_score_weight`, the length's log-prob weighted in);
      'model_scores' [B, C] the candidates' own scores (when rescoring);
      'candidate_lengths' [B, C], 'candidate_valid' [B, C] (False for duplicates);
      'candidate_length_log_probs' [B, C] (with length scores [B, num_classes]: each
        candidate length's log-prob under the length predictor);
      'candidate_kept' [B, C] the candidates refined past the first pass (with
        `keep_candidates_after_first_pass` < C);
      'best' [B] index of the chosen candidate, 'lengths' [B] its length;
      'iterations' [B] decoder passes the chosen candidate used;
      'candidates' [B, C, T] (with `return_all_candidates`);
      'history' [B, I, T] the chosen candidate's predictions at every iteration (with
      `return_history`).
  """
  lengths, valid = length_candidates(length_predictions, config, max_decode_len)
  batch, num_candidates = lengths.shape
  init_rng, refine_rng = jax.random.split(rng)
  initial = initial_decoder_inputs(lengths.reshape(-1), max_decode_len,
                                   config.scheme.decoder_input_scheme, special_tokens, init_rng)
  candidate_log_probs = None  # [B, C]: each candidate length's log-prob, where lengths are scored.
  if config.decode.length_score_weight and length_predictions.ndim != 2:
    raise ValueError(f"length_score_weight={config.decode.length_score_weight} weighs the length "
                     "predictor's log-probs, but this predictor gives lengths [B], not scores "
                     "[B, num_classes]")
  if length_predictions.ndim == 2:
    candidate_log_probs = length_log_probs(length_predictions, lengths)

  def own_scores(tokens: Array, token_log_probs: Array) -> Array:
    """The candidates' own ranking scores: [B * C, W] -> [B, C]."""
    scores = score_candidates(tokens, token_log_probs, config,
                              special_tokens.pad_id).reshape(batch, num_candidates)
    if config.decode.length_score_weight:  # Scored lengths: checked above.
      scores = scores + config.decode.length_score_weight * candidate_log_probs
    return scores

  keep = config.decode.keep_candidates_after_first_pass
  prune_fn = None
  if keep is not None and keep < num_candidates:

    def prune_fn(tokens: Array, token_log_probs: Array) -> Array:
      """The `keep` best valid candidates of each example after the first pass, by their own
      scores: [B * C, W] -> rows [B * keep]."""
      first_scores = jnp.where(valid, own_scores(tokens, token_log_probs), NEG_INF)
      best_first = lax.top_k(first_scores, keep)[1]
      return (jnp.arange(batch)[:, None] * num_candidates + best_first).reshape(-1)

  tokens, token_log_probs, refine_aux = _refine_on_fitted_canvas(
      logits_fn, initial, jnp.max(lengths), refine_rng, config, special_tokens, prune_fn)
  model_scores = own_scores(tokens, token_log_probs)
  scores = model_scores if rescore_fn is None else (
      rescore_fn(tokens).astype(jnp.float32).reshape(batch, num_candidates))
  kept = refine_aux["kept"].reshape(batch, num_candidates) if "kept" in refine_aux else None
  scores = jnp.where(valid if kept is None else valid & kept, scores, NEG_INF)
  best = jnp.argmax(scores, axis=-1)
  candidates = tokens.reshape(batch, num_candidates, max_decode_len)

  def pick(x):  # [B, C, ...] -> [B, ...], the chosen candidate.
    return x[jnp.arange(batch), best]

  aux = {
      "scores": scores,
      "candidate_lengths": lengths,
      "candidate_valid": valid,
      "best": best,
      "lengths": pick(lengths),
      "iterations": pick(refine_aux["iterations"].reshape(batch, num_candidates)),
  }
  if candidate_log_probs is not None:
    aux["candidate_length_log_probs"] = candidate_log_probs
  if rescore_fn is not None:
    aux["model_scores"] = model_scores
  if kept is not None:
    aux["candidate_kept"] = kept
  if config.decode.return_all_candidates:
    aux["candidates"] = candidates
  if config.decode.return_history:
    history = refine_aux["history"].reshape(-1, batch, num_candidates, max_decode_len)
    aux["history"] = jnp.moveaxis(history, 0, 2)[jnp.arange(batch), best]
  return pick(candidates), aux


def aligned_decode(logits_fn: LogitsFn,
                   initial_tokens: Array,
                   rng: Array,
                   config: RefinementConfig,
                   special_tokens: SpecialTokens,
                   rescore_fn: Optional[RescoreFn] = None) -> Tuple[Array, Dict[str, Array]]:
  """Decoding on an aligned (CTC) canvas: one candidate per example, refined by `refine` on the
  Imputer's schedule (the config's rejecter re-masks the least confident canvas positions, blanks
  included, and the next pass predicts them again, the alignment kept), then collapsed.

  Args:
    logits_fn: `(decoder_input_tokens [B, W]) -> (logits [B, W, V], None)`.
    initial_tokens: [B, W] the initial canvas (`ctc.initial_canvas`: EOS at its last real
      position, PAD after).
    rng: PRNG key (token sampling).
    config: the refinement options, with `aligned`.
    special_tokens: the id layout (`blank_id`).
    rescore_fn: unused (one candidate per example); accepted for `decode_fn`'s signature.

  Returns:
    tokens [B, W] (the collapsed output, EOS-terminated, PAD after) and aux: 'scores' [B, 1] the
    alignment's mean token log-prob, 'best' [B] (0), 'lengths' [B] output lengths (EOS included),
    'iterations' [B], 'alignments' [B, W] the refined canvas before collapsing, and with
    `return_history` 'history' [B, I, W] (each iteration's canvas collapsed; the last row is
    `tokens`).
  """
  del rescore_fn
  if not config.scheme.aligned:
    raise ValueError("aligned_decode needs a config with aligned=True (a ctc.CTCModel's)")
  canvas_lengths = jnp.sum(initial_tokens != special_tokens.pad_id, axis=-1)
  path, token_log_probs, refine_aux = _refine_on_fitted_canvas(
      logits_fn, initial_tokens, jnp.max(canvas_lengths), rng, config, special_tokens)
  tokens = ctc_collapse(path, special_tokens.blank_id, special_tokens.pad_id)
  aux = {"scores": score_candidates(path, token_log_probs, config, special_tokens.pad_id)[:, None],
         "best": jnp.zeros(tokens.shape[:1], jnp.int32),
         "lengths": jnp.sum(tokens != special_tokens.pad_id, axis=-1),
         "iterations": refine_aux["iterations"],
         "alignments": path}
  if config.decode.return_history:  # Each iteration's canvas collapsed, as the output is.
    history = jnp.moveaxis(refine_aux["history"], 0, 1)  # [B, I, W]
    aux["history"] = ctc_collapse(history.reshape(-1, history.shape[-1]), special_tokens.blank_id,
                                  special_tokens.pad_id).reshape(history.shape)
  return tokens, aux
