"""The aligned-canvas (CTC) student: the loss against a sum over every alignment, the Viterbi
alignment against a brute-force search, the collapse, the canvas, a toy copy task learned to 100 %
in one pass, and refinement through `decoding.refine` (the gin model file: tests/test_models.py)."""
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from padir import ctc
from padir import decoding
from padir import network
from padir.special_tokens import EOS_ID, PAD_ID, SpecialTokens

ST = SpecialTokens.create(num_pieces=24, max_target_length=8)
BLANK = ST.blank_id


def _collapse_list(path):
  out, previous = [], None
  for token in path:
    if token != previous and token != BLANK:
      out.append(token)
    previous = token
  return out


def _alignments(labels, width, alphabet):
  """Every path of `width` ids over `alphabet` that collapses to `labels`."""
  return [p for p in itertools.product(alphabet, repeat=width) if _collapse_list(p) == labels]


def _random_log_probs(seed, rows, width, vocab):
  logits = jax.random.normal(jax.random.PRNGKey(seed), (rows, width, vocab)) * 2.0
  return jax.nn.log_softmax(logits)


def test_blank_id_is_a_spare_row_of_both_layouts():
  assert ST.blank_id == ST.mask_range_end < ST.vocab_size
  t5 = SpecialTokens.t5(num_pieces=32000, max_target_length=64)
  assert t5.blank_id == t5.length_id + 1 < t5.vocab_size
  full = SpecialTokens.create(num_pieces=126 - 8, max_target_length=8)  # Ends at 128 exactly.
  with pytest.raises(ValueError, match="no spare vocabulary row for the CTC blank"):
    _ = full.blank_id


def test_ctc_loss_is_minus_log_of_the_summed_alignment_probabilities():
  """A hand-made case: 2 rows, canvases of 5 and 4 positions, labels [5, 5] (a repeat needs a
  blank between) and [6, 7, 8]; the loss sums exp(path score) over every alignment."""
  vocab = 40
  log_probs = _random_log_probs(0, 2, 5, vocab)
  labels = np.array([[5, 5, 0], [6, 7, 8]], np.int32)
  label_paddings = (labels == 0).astype(np.float32)
  canvas_paddings = np.array([[0, 0, 0, 0, 0], [0, 0, 0, 0, 1]], np.float32)
  loss = np.asarray(ctc.ctc_loss(log_probs, canvas_paddings, labels, label_paddings, BLANK))
  for row, (width, target) in enumerate([(5, [5, 5]), (4, [6, 7, 8])]):
    paths = _alignments(target, width, sorted(set(target)) + [BLANK])
    assert paths  # The case is feasible.
    scores = [sum(float(log_probs[row, t, token]) for t, token in enumerate(p)) for p in paths]
    expected = -np.logaddexp.reduce(scores)
    np.testing.assert_allclose(loss[row], expected, rtol=1e-4)


@pytest.mark.slow
def test_pinned_ctc_loss_sums_only_the_alignments_that_keep_the_revealed_tokens():
  """Labels [5, 6, 5] on 5 positions, 6 revealed at position 2 and a blank at position 4: the
  loss is -log of the summed probabilities, over the free positions only, of the alignments
  holding those two tokens there."""
  vocab, width = 40, 5
  log_probs = _random_log_probs(3, 1, width, vocab)
  labels = np.array([[5, 6, 5]], np.int32)
  inputs = np.array([[ST.mask_id, ST.mask_id, 6, ST.mask_id, BLANK]], np.int32)
  revealed = np.array([[False, False, True, False, True]])
  pinned = ctc.pin_revealed(log_probs, inputs, revealed)
  loss = float(ctc.ctc_loss(pinned, np.zeros((1, width), np.float32), labels,
                            np.zeros((1, 3), np.float32), BLANK)[0])
  paths = [p for p in _alignments([5, 6, 5], width, [5, 6, BLANK]) if p[2] == 6 and p[4] == BLANK]
  assert paths and len(paths) < len(_alignments([5, 6, 5], width, [5, 6, BLANK]))
  free = [0, 1, 3]
  expected = -np.logaddexp.reduce(
      [sum(float(log_probs[0, t, p[t]]) for t in free) for p in paths])
  np.testing.assert_allclose(loss, expected, rtol=1e-4)
  # No gradient reaches a revealed position's logits.
  grads = jax.grad(lambda x: ctc.ctc_loss(ctc.pin_revealed(x, inputs, revealed), np.zeros(
      (1, width), np.float32), labels, np.zeros((1, 3), np.float32), BLANK)[0])(log_probs)
  assert np.all(np.asarray(grads)[0, [2, 4]] == 0) and np.any(np.asarray(grads)[0, 0] != 0)


def test_feasible_counts_a_blank_between_repeats():
  labels = np.array([[5, 5, 6], [5, 6, 7], [5, 5, 5]], np.int32)
  paddings = np.zeros(labels.shape, np.float32)
  np.testing.assert_array_equal(
      ctc.feasible(labels, paddings, np.array([4, 3, 4])), [True, True, False])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_best_alignment_equals_a_brute_force_viterbi(seed):
  """Rows of different canvas and label lengths (repeats, an empty label) on random scores."""
  vocab, width = 12, 6
  log_probs = _random_log_probs(seed, 4, width, vocab)
  log_probs = log_probs.at[..., BLANK % vocab].set(-50.0)  # Keep ids below the toy vocab.
  blank = 11
  labels = np.array([[4, 4, 5], [6, 7, 0], [8, 0, 0], [0, 0, 0]], np.int32)
  label_paddings = (labels == 0).astype(np.float32)
  lengths = np.array([6, 5, 3, 2])
  canvas_paddings = (np.arange(width)[None, :] >= lengths[:, None]).astype(np.float32)
  path = np.asarray(ctc.best_alignment(log_probs, canvas_paddings, labels, label_paddings,
                                       blank, PAD_ID))
  for row in range(4):
    target = [int(x) for x in labels[row] if x]
    candidates = [p for p in itertools.product(sorted(set(target)) + [blank], repeat=lengths[row])
                  if _collapse_list([BLANK if t == blank else t for t in p]) == target]
    best = max(candidates, key=lambda p: sum(float(log_probs[row, t, x]) for t, x in enumerate(p)))
    np.testing.assert_array_equal(path[row, :lengths[row]], best)
    assert np.all(path[row, lengths[row]:] == PAD_ID)


def test_ctc_collapse_merges_repeats_then_drops_blanks():
  b = BLANK
  tokens = jnp.array([[5, 5, b, 5, 6, 6, b, EOS_ID, 0], [b, b, 7, b, 7, 8, EOS_ID, 0, 0]])
  np.testing.assert_array_equal(decoding.ctc_collapse(tokens, b),
                                [[5, 5, 6, EOS_ID, 0, 0, 0, 0, 0],
                                 [7, 7, 8, EOS_ID, 0, 0, 0, 0, 0]])


def test_initial_canvas_copies_the_source_upsampled_with_eos_last():
  src = np.array([[5, 6, 7, EOS_ID], [8, EOS_ID, 0, 0]], np.int32)
  canvas = np.asarray(ctc.initial_canvas(src, 2, "source", ST))
  np.testing.assert_array_equal(canvas, [[5, 5, 6, 6, 7, 7, EOS_ID],
                                         [8, 8, EOS_ID, 0, 0, 0, 0]])
  masked = np.asarray(ctc.initial_canvas(src, 3, "mask", ST))
  assert masked.shape == (2, 10) and masked[1, 3] == EOS_ID and np.all(masked[1, :3] == ST.mask_id)



def test_a_fractional_upsample_gives_ceil_of_the_ratio_times_the_pieces():
  src = np.array([[5, 6, 7, 9, EOS_ID], [8, EOS_ID, 0, 0, 0]], np.int32)
  assert ctc.canvas_width(5, 1.5) == 7 and ctc.canvas_width(5, 2) == 9
  canvas = np.asarray(ctc.initial_canvas(src, 1.5, "source", ST))
  # Position i holds piece floor(i / 1.5); ceil(1.5 x 4) = 6 and ceil(1.5 x 1) = 2 positions.
  np.testing.assert_array_equal(canvas, [[5, 5, 6, 7, 7, 9, EOS_ID],
                                         [8, 8, EOS_ID, 0, 0, 0, 0]])
  for bad in (0.5, 1.37):
    with pytest.raises(ValueError, match=f"upsample={bad}"):
      ctc.initial_canvas(src, bad, "source", ST)

def _network():
  return network.Transformer(network.get_config(
      "test", num_encoder_layers=1, num_decoder_layers=1, emb_dim=32, num_heads=2, head_dim=16,
      mlp_dim=64, dropout_rate=0.0))


def _copy_data(rows=32, seed=0):
  """Sources of 2..5 random pieces (repeats allowed); the target is the source."""
  rs = np.random.RandomState(seed)
  src = np.zeros((rows, 6), np.int32)
  for b in range(rows):
    n = rs.randint(2, 6)
    src[b, :n + 1] = np.append(rs.randint(4, ST.num_pieces, n), EOS_ID)
  return {"encoder_input_tokens": src, "decoder_target_tokens": src.copy()}


def _train(model, batch, steps, learning_rate=3e-3):
  variables = model.get_initial_variables(
      jax.random.PRNGKey(0), {"encoder_input_tokens": batch["encoder_input_tokens"].shape,
                              "decoder_input_tokens": batch["decoder_target_tokens"].shape})
  params = nn.meta.unbox(variables)["params"]
  tx = optax.adam(learning_rate)

  @jax.jit
  def step(params, opt_state, rng):
    (loss, metrics), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(params, batch, rng)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, metrics

  opt_state = tx.init(params)
  first = None
  for i in range(steps):
    params, opt_state, metrics = step(params, opt_state, jax.random.PRNGKey(i))
    first = first if first is not None else metrics
  return params, first, metrics


@pytest.fixture(scope="module")
def copy_model():
  model = ctc.CTCModel(_network(), special_tokens=ST, upsample=2, glancing_ratio=0.5,
                       glancing_fraction=0.5)
  batch = _copy_data()
  params, first, last = _train(model, batch, 800)
  return model, params, batch, first, last


def test_a_toy_copy_task_is_learned_to_100_percent_in_one_pass(copy_model):
  model, params, batch, first, last = copy_model
  assert last["loss"] < 0.1 * first["loss"]
  assert float(last["feasible"]) == 1.0
  tokens, aux = jax.jit(model.predict_batch_with_aux, static_argnames="decoder_params")(
      params, batch, decoder_params=decoding.PadirDecodeConfig(num_decode_iterations=1))
  target = batch["decoder_target_tokens"]
  np.testing.assert_array_equal(np.asarray(tokens)[:, :target.shape[1]], target)
  assert np.all(np.asarray(tokens)[:, target.shape[1]:] == PAD_ID)
  np.testing.assert_array_equal(aux["iterations"], 1)
  # The alignment is the canvas before collapsing: it holds blanks or repeats, and collapses.
  alignments = np.asarray(aux["alignments"])
  assert alignments.shape == tokens.shape
  np.testing.assert_array_equal(decoding.ctc_collapse(alignments, BLANK), tokens)


def test_refinement_keeps_the_alignment_and_runs_the_requested_passes(copy_model):
  model, params, batch, _, _ = copy_model
  config = {"num_decode_iterations": 3, "early_exit": False, "return_history": True}
  tokens, aux = model.predict_batch_with_aux(params, batch, decoder_params=config)
  # Rows stop counting passes once converged (their canvas no longer changes).
  assert np.all((np.asarray(aux["iterations"]) >= 1) & (np.asarray(aux["iterations"]) <= 3))
  history = np.asarray(aux["history"])
  assert history.shape == (tokens.shape[0], 3, tokens.shape[1])
  # Each pass's canvas collapsed, as the output is (per-iteration BLEU reads it): the last is it.
  np.testing.assert_array_equal(history[:, -1], tokens)
  assert BLANK not in history
  # Learned to 100 %, the refined output stays the copy.
  target = batch["decoder_target_tokens"]
  np.testing.assert_array_equal(np.asarray(tokens)[:, :target.shape[1]], target)
  # score_batch: the log-likelihood of the reference, higher than of a shuffled reference.
  scores = model.score_batch(params, batch)
  wrong = dict(batch, decoder_target_tokens=np.roll(target, 1, axis=0))
  assert np.all(np.asarray(scores) > np.asarray(model.score_batch(params, wrong)))


def test_glancing_reveals_less_as_the_first_pass_improves(copy_model):
  _, _, _, first, last = copy_model
  assert float(last["glancing_revealed"]) < float(first["glancing_revealed"])
  assert float(last["accuracy"]) > 0.95 and float(last["sequence_accuracy"]) > 0.95


@pytest.mark.slow
def test_the_pinned_loss_trains_the_refinement_passes():
  """With `pin_revealed_tokens` the glanced and randomly revealed rows' loss leaves their
  revealed positions out: lower than the full loss on the same batch, and it trains."""
  batch = _copy_data()
  pinned = ctc.CTCModel(_network(), special_tokens=ST, glancing_ratio=0.5, glancing_fraction=0.5,
                        pin_revealed_tokens=True)
  params, first, last = _train(pinned, batch, 60)
  assert np.isfinite(float(last["loss"])) and last["loss"] < 0.5 * first["loss"]
  full = ctc.CTCModel(_network(), special_tokens=ST, glancing_ratio=0.5, glancing_fraction=0.5)
  rng = jax.random.PRNGKey(7)
  assert float(pinned.loss_fn(params, batch, rng)[0]) < float(full.loss_fn(params, batch, rng)[0])


def test_model_options_are_checked():
  with pytest.raises(ValueError, match="upsample"):
    ctc.CTCModel(_network(), special_tokens=ST, upsample=0)
  with pytest.raises(ValueError, match="canvas_input"):
    ctc.CTCModel(_network(), special_tokens=ST, canvas_input="random")
  model = ctc.CTCModel(_network(), special_tokens=ST)
  assert model.scheme.aligned and model.train_config.scheme.aligned
  assert not model.module.config.decoder_causal and model.module.config.length_head is None



def test_blank_penalty_lowers_the_blank_on_an_aligned_canvas_only():
  """The blank leads piece 5 by 0.5 at position 0 and trails piece 6 by 2 at position 1: a
  penalty of 1 turns position 0 to piece 5 and leaves position 1; no penalty, or a canvas that
  is not aligned, chooses as before."""
  logits = jnp.full((1, 3, ST.vocab_size), -10.0)
  logits = logits.at[0, 0, BLANK].set(1.5).at[0, 0, 5].set(1.0)
  logits = logits.at[0, 1, BLANK].set(1.0).at[0, 1, 6].set(3.0).at[0, 2, EOS_ID].set(0.0)
  initial = jnp.array([[ST.mask_id, ST.mask_id, EOS_ID]])

  def choose(aligned, penalty):
    config = decoding.RefinementConfig.of(
        decoding.RefinementScheme(aligned=aligned),
        decoding.PadirDecodeConfig(blank_penalty=penalty))
    return decoding.choose_tokens(logits, None, config, ST, initial)

  tokens, log_probs = choose(True, 0.0)
  np.testing.assert_array_equal(tokens, [[BLANK, 6, EOS_ID]])
  tokens, penalised = choose(True, 1.0)
  np.testing.assert_array_equal(tokens, [[5, 6, EOS_ID]])
  assert penalised[0, 1] > log_probs[0, 1]  # The blank's share moved to the pieces.
  tokens, _ = choose(False, 1.0)  # The blank is never chosen off an aligned canvas.
  assert BLANK not in np.asarray(tokens)
  np.testing.assert_array_equal(tokens, choose(False, 0.0)[0])
  with pytest.raises(ValueError, match="blank_penalty"):
    decoding.PadirDecodeConfig(blank_penalty=float("nan"))
  with pytest.raises(ValueError, match="blank_penalty_decay"):
    decoding.PadirDecodeConfig(blank_penalty_decay=1.5)


def test_blank_penalty_decay_scales_the_penalty_per_pass():
  """The blank leads piece 5 by 0.5: a penalty of 1 turns it to piece 5 at pass 0; with decay
  0.25 the pass-1 penalty (0.25) leaves the blank, with decay 1 it does not."""
  logits = jnp.full((1, 2, ST.vocab_size), -10.0)
  logits = logits.at[0, 0, BLANK].set(1.5).at[0, 0, 5].set(1.0).at[0, 1, EOS_ID].set(0.0)
  initial = jnp.array([[ST.mask_id, EOS_ID]])

  def choose(decay, iteration):
    config = decoding.RefinementConfig.of(
        decoding.RefinementScheme(aligned=True),
        decoding.PadirDecodeConfig(blank_penalty=1.0, blank_penalty_decay=decay))
    return int(decoding.choose_tokens(logits, None, config, ST, initial,
                                      jnp.asarray(iteration))[0][0, 0])

  assert choose(0.25, 0) == 5 and choose(0.0, 0) == 5
  assert choose(0.25, 1) == BLANK and choose(0.0, 1) == BLANK
  assert choose(1.0, 1) == 5
