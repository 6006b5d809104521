"""Decoding loops against hand-made logits callbacks, so every expectation is exact."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from padir import decoding
from padir.special_tokens import EOS_ID, PAD_ID, SpecialTokens

ST = SpecialTokens.create(num_pieces=20, max_target_length=8)
MASK = ST.mask_id
KEY = jax.random.PRNGKey(0)

# ------------------------------------------------------------------------------------------------
# AR: a stateful toy model. The cache holds a per-row hash of the history (batch first, so beam
# reordering must gather it) and a shared step counter (ndim 0).

AR_VOCAB, AR_STATES = 7, 11


def _ar_table(seed):
  table = np.random.RandomState(seed).randn(AR_STATES, AR_VOCAB).astype(np.float32) * 2.0
  table[:, PAD_ID] = -1e4
  return jnp.asarray(table)


def _ar_step(table, ids, cache):
  state = (cache["state"] * 3 + ids[:, 0]) % AR_STATES
  return table[state], {"state": state, "index": cache["index"] + 1}


def _ar_cache(batch):
  return {"state": jnp.zeros((batch,), jnp.int32), "index": jnp.array(0, jnp.int32)}


@jax.jit
def _forced_step(table, ids, cache):
  logits, cache = _ar_step(table, ids, cache)
  return jax.nn.log_softmax(logits[0]), cache


def _rescore(table, tokens):
  """Teacher-forced log-prob of a token row (up to its EOS), step by step from a fresh cache."""
  cache, ids, total = _ar_cache(1), np.array([[decoding.BOS_ID]], np.int32), 0.0
  for token in tokens:
    if token == PAD_ID:
      break
    log_probs, cache = _forced_step(table, ids, cache)
    total += float(log_probs[token])
    ids = np.array([[token]], np.int32)
  return total


def _greedy(table, batch=3, length=6, **kwargs):
  fn = jax.jit(functools.partial(decoding.temperature_sample, tokens_to_logits=functools.partial(
      _ar_step, table), max_decode_len=length, **kwargs))
  return fn(jnp.zeros((batch, 0), jnp.int32), _ar_cache(batch))


def _beam(table, beam_size, batch=3, length=6, alpha=0.0):
  fn = jax.jit(functools.partial(decoding.beam_search, tokens_to_logits=functools.partial(
      _ar_step, table), num_decodes=beam_size, max_decode_len=length, alpha=alpha))
  return fn(jnp.zeros((batch, 0), jnp.int32), _ar_cache(batch))


def test_beam_size_one_is_greedy_or_a_better_finished_hypothesis():
  for seed in range(3):
    table = _ar_table(seed)
    greedy_tokens, greedy_scores = _greedy(table)
    beam_tokens, beam_scores = _beam(table, 1)
    same = np.all(np.asarray(greedy_tokens) == np.asarray(beam_tokens), axis=(1, 2))
    np.testing.assert_allclose(np.asarray(greedy_scores)[same], np.asarray(beam_scores)[same],
                               rtol=1e-5)
    # Where they differ, beam search kept an EOS ranked second that scores higher.
    assert np.all(np.asarray(beam_scores)[~same] > np.asarray(greedy_scores)[~same])
    for b in np.flatnonzero(~same):
      assert _rescore(table, list(np.asarray(beam_tokens[b, 0]))) == pytest.approx(
          float(beam_scores[b, 0]), abs=1e-4)


def _constant_step(logits):
  """The same next-token logits at every step, for every row."""
  logits = jnp.asarray(logits, jnp.float32)

  def step(ids, cache):
    return jnp.broadcast_to(logits, (ids.shape[0], logits.shape[0])), cache

  return step


def test_beam_returns_the_best_finished_hypothesis_it_saw():
  # T5X's decoding_test case: EOS (id 1) ranks third of 2K = 4 after the first step. A finished
  # set fed from all 2K continuations keeps [EOS] (log-prob -1.519), better than any of the
  # unfinished 3-token hypotheses (best [3, 3, 3], -1.857).
  step = _constant_step([-1e7, -1.0, -0.9, -0.1])
  tokens, scores = jax.jit(functools.partial(
      decoding.beam_search, tokens_to_logits=step, num_decodes=2, max_decode_len=3, alpha=0.0))(
          jnp.zeros((1, 0), jnp.int32), {"index": jnp.array(0, jnp.int32)})
  log_probs = jax.nn.log_softmax(jnp.array([-1e7, -1.0, -0.9, -0.1]))
  assert list(np.asarray(tokens[0, 0])) == [EOS_ID, PAD_ID, PAD_ID]
  assert float(scores[0, 0]) == pytest.approx(float(log_probs[EOS_ID]), abs=1e-5)
  # With no finished hypothesis (EOS never among the 2K), the alive beams come back, scored
  # with the penalty of T tokens.
  step = _constant_step([-1e7, -20.0, -0.9, -0.1, -0.5, -0.6])
  tokens, scores = jax.jit(functools.partial(
      decoding.beam_search, tokens_to_logits=step, num_decodes=2, max_decode_len=3, alpha=0.6))(
          jnp.zeros((1, 0), jnp.int32), {"index": jnp.array(0, jnp.int32)})
  log_probs = jax.nn.log_softmax(jnp.array([-1e7, -20.0, -0.9, -0.1, -0.5, -0.6]))
  assert list(np.asarray(tokens[0, 0])) == [3, 3, 3]
  assert float(scores[0, 0]) == pytest.approx(
      3 * float(log_probs[3]) / float(decoding.brevity_penalty(3, 0.6)), abs=1e-5)


# T5X's `test_beam_search_force_decode_no_prefix` logits: ids 2 then 3 for example 0, 3 then 2
# for example 1; EOS (id 1) has logit -1e10, so its log-prob is below T5X's NEG_INF (-1e7).
_T5X_LOGITS = jnp.array([[-1e7, -1e10, -0.1, -0.9], [-1e7, -1e10, -0.9, -0.1]], jnp.float32)


def _t5x_step(calls=None):
  def step(ids, cache):
    if calls is not None:
      jax.debug.callback(lambda: calls.append(1))
    return jnp.repeat(_T5X_LOGITS, ids.shape[0] // 2, axis=0), cache
  return step


def _check_t5x_alive_beams(tokens, scores, length, alpha):
  """T5X's expectation: no hypothesis finishes (EOS's -1e10 is 'not finished', not a -1e10
  hypothesis); the alive beams at T come back, best first: all of the preferred id, then one
  of the other id (a tie among its T orders; T5X's flipped beam order breaks it at position 0,
  ours at T - 1)."""
  assert tokens.shape == (2, 2, length)
  log_probs = np.asarray(jax.nn.log_softmax(_T5X_LOGITS))
  for b, (first, other) in enumerate(((2, 3), (3, 2))):
    assert list(np.asarray(tokens[b, 0])) == [first] * length
    assert sorted(np.asarray(tokens[b, 1]).tolist()) == sorted([first] * (length - 1) + [other])
    raw = np.asarray(scores[b]) * float(decoding.brevity_penalty(length, alpha))
    np.testing.assert_allclose(raw, [length * log_probs[b, first],
                                     (length - 1) * log_probs[b, first] + log_probs[b, other]],
                               rtol=1e-5)
  if length == 5:  # The figures: -1.86 and -2.66, not the -1e10 "EOS at step 1".
    np.testing.assert_allclose(np.asarray(scores[0]) * float(
        decoding.brevity_penalty(5, alpha)), [-1.8555, -2.6555], atol=1e-3)


def test_beam_t5x_force_decode_no_prefix():
  tokens, scores = jax.jit(functools.partial(
      decoding.beam_search, tokens_to_logits=_t5x_step(), num_decodes=2, alpha=0.6))(
          jnp.zeros((2, 5), jnp.int32), {"index": jnp.array(0, jnp.int32)})
  _check_t5x_alive_beams(tokens, scores, 5, 0.6)


@pytest.mark.parametrize("length", [1, 3])
def test_beam_t5x_max_decode_step(length):
  # The same logits, decoding stopped by max_decode_len: exactly T steps run (nothing finishes
  # early), and the alive beams at T are the result.
  calls = []
  tokens, scores = jax.jit(functools.partial(
      decoding.beam_search, tokens_to_logits=_t5x_step(calls), num_decodes=2,
      max_decode_len=length, alpha=0.0))(jnp.zeros((2, 0), jnp.int32),
                                         {"index": jnp.array(0, jnp.int32)})
  jax.effects_barrier()
  assert len(calls) == length
  if length == 1:  # Two one-token beams: the two real ids, best first.
    assert np.asarray(tokens)[:, :, 0].tolist() == [[2, 3], [3, 2]]
  else:
    _check_t5x_alive_beams(tokens, scores, length, 0.0)


def test_beam_finishes_an_eos_above_t5x_sentinel_only():
  # An EOS among the 2K with log-prob above -1e7 finishes (and, finished, outranks the alive
  # beams whatever their scores, T5X's rule); at -1e10 it does not.
  for eos_logit, finished in ((-50.0, True), (-1e10, False)):
    step = _constant_step([-1e10, eos_logit, 0.0])  # 2K = 2 = every real id of beam 0.
    tokens, scores = jax.jit(functools.partial(
        decoding.beam_search, tokens_to_logits=step, num_decodes=1, max_decode_len=3,
        alpha=0.0))(jnp.zeros((1, 0), jnp.int32), {"index": jnp.array(0, jnp.int32)})
    best = list(np.asarray(tokens[0, 0]))
    if finished:
      assert best == [EOS_ID, PAD_ID, PAD_ID]
      assert float(scores[0, 0]) == pytest.approx(-50.0, abs=1e-3)
    else:
      assert best == [2, 2, 2] and float(scores[0, 0]) == pytest.approx(0.0, abs=1e-3)


def test_beam_scores_sorted_and_match_teacher_forced_rescoring():
  table = _ar_table(1)
  tokens, scores = _beam(table, 4)
  assert tokens.shape == (3, 4, 6) and scores.shape == (3, 4)
  assert np.all(np.diff(np.asarray(scores), axis=1) <= 0)
  for b in range(3):  # Cache gathering is right iff the cached scores equal fresh rescoring.
    for k in range(4):
      assert _rescore(table, list(np.asarray(tokens[b, k]))) == pytest.approx(
          float(scores[b, k]), abs=1e-4)


def _counting_stopper(calls):
  """Predicts 4, 5, ... then EOS from the row's stop step (a cache leaf); counts the calls."""

  def step(ids, cache):
    del ids
    jax.debug.callback(lambda: calls.append(1))
    index, stops = cache["index"], cache["stops"]
    token = jnp.where(index >= stops, EOS_ID, 4 + index % 3)
    return jax.nn.one_hot(token, AR_VOCAB) * 10.0, {"index": index + 1, "stops": stops}

  return step


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_ar_stops_when_every_row_ended_and_respects_max_length(search):
  for stops, length in (([1, 3], 8), ([20, 20], 5)):
    calls = []
    step = _counting_stopper(calls)
    cache = {"index": jnp.array(0, jnp.int32), "stops": jnp.array(stops)}
    if search == "greedy":
      fn = functools.partial(decoding.temperature_sample, tokens_to_logits=step,
                             max_decode_len=length)
    else:
      fn = functools.partial(decoding.beam_search, tokens_to_logits=step, num_decodes=2,
                             max_decode_len=length)
    tokens, _ = jax.jit(fn)(jnp.zeros((2, 0), jnp.int32), cache)
    jax.effects_barrier()
    if max(stops) >= length:
      assert len(calls) == length
    elif search == "greedy":
      assert len(calls) == max(stops) + 1
    else:  # Beam search also waits for K finished hypotheses, but not for max_decode_len.
      assert len(calls) < length
    best = np.asarray(tokens[:, 0])
    assert best.shape == (2, length)
    for row, stop in enumerate(stops):
      if stop < length:
        assert best[row, stop] == EOS_ID and np.all(best[row, stop + 1:] == PAD_ID)
        assert np.all(best[row, :stop] >= 4)
      elif search == "greedy":
        assert EOS_ID not in best[row] and PAD_ID not in best[row]
      else:  # EOS (log-prob ~ -10) was among the 2K: a finished hypothesis beats unfinished ones.
        end = list(best[row]).index(EOS_ID)
        assert np.all(best[row, :end] >= 4) and np.all(best[row, end + 1:] == PAD_ID)


def test_sampling_with_top_k_one_equals_greedy_and_samples_sorted():
  table = _ar_table(2)
  greedy_tokens, greedy_scores = _greedy(table)
  tokens, scores = _greedy(table, temperature=1.0, top_k=1, rng=KEY)
  np.testing.assert_array_equal(tokens, greedy_tokens)
  np.testing.assert_allclose(scores, greedy_scores, rtol=1e-5)
  tokens, scores = _greedy(table, temperature=1.0, top_p=0.9, rng=KEY, num_decodes=5)
  assert tokens.shape == (3, 5, 6)
  assert np.all(np.diff(np.asarray(scores), axis=1) <= 0)


def test_nucleus_is_taken_after_the_temperature():
  # T5X's case: at T = 0.8 the tempered distribution's 0.63-nucleus is id 3 alone; the nucleus
  # of the untempered one would also keep id 0.
  logits = jnp.array([[-1.2, -1e7, -2.3, -0.51]])
  step = _constant_step(logits[0])
  rngs = jax.random.split(KEY, 64)
  sample = jax.jit(lambda rng: decoding.temperature_sample(
      jnp.zeros((1, 0), jnp.int32), {"index": jnp.array(0, jnp.int32)}, step,
      max_decode_len=1, rng=rng, temperature=0.8, top_p=0.63)[0])
  assert {int(sample(rng)[0, 0, 0]) for rng in rngs} == {3}
  # PaDIR's sampler, the same logits on real pieces 4..7 (it never emits PAD, BOS or EOS).
  padir_logits = jnp.full((1, 1, ST.vocab_size), -1e7).at[0, 0, 4:8].set(logits[0])
  config = decoding.RefinementConfig(temperature=0.8, top_p=0.63)
  padir_tokens = jax.vmap(lambda rng: decoding.choose_tokens(padir_logits, rng, config, ST)[0])(
      rngs)
  assert set(np.asarray(padir_tokens).ravel().tolist()) == {7}


def test_an_eos_in_the_prompt_does_not_end_the_row():
  step = _constant_step([-1e7, -5.0, 2.0, -5.0, -5.0, -5.0, -5.0])  # "always 2"
  prompt = jnp.array([[5, EOS_ID, 0, 0]], jnp.int32)
  tokens, _ = jax.jit(functools.partial(decoding.temperature_sample, tokens_to_logits=step,
                                        max_decode_len=4))(prompt, {"i": jnp.array(0)})
  assert list(np.asarray(tokens[0, 0])) == [5, EOS_ID, 2, 2]
  beams, _ = jax.jit(functools.partial(decoding.beam_search, tokens_to_logits=step, num_decodes=2,
                                       max_decode_len=4))(prompt, {"i": jnp.array(0)})
  # Generation went on past the prompt's EOS (the last step's finished [.., EOS] is preferred
  # to the unfinished [.., 2]: EOS was among the 2K continuations).
  assert list(np.asarray(beams[0, 0, :3])) == [5, EOS_ID, 2]


def test_prompt_forces_tokens():
  table = _ar_table(0)
  step = functools.partial(_ar_step, table)
  prompt = jnp.array([[5, 0], [6, 4]], jnp.int32)
  tokens, _ = jax.jit(functools.partial(decoding.temperature_sample, tokens_to_logits=step,
                                        max_decode_len=5))(prompt, _ar_cache(2))
  beams, _ = jax.jit(functools.partial(decoding.beam_search, tokens_to_logits=step, num_decodes=2,
                                       max_decode_len=5))(prompt, _ar_cache(2))
  for out in (tokens, beams):
    assert list(np.asarray(out[:, 0, 0])) == [5, 6] and int(out[1, 0, 1]) == 4


# ------------------------------------------------------------------------------------------------
# PaDIR pieces.


def test_config_validation_and_candidate_count():
  assert decoding.RefinementConfig(top_k_lengths=2, length_beam=3).num_candidates == 6
  assert decoding.RefinementConfig(top_k_lengths=2, length_beam=3,
                                   num_parallel_samples=2).num_candidates == 12
  for bad in (dict(length_beam=2), dict(rejecter="nope"), dict(num_decode_iterations=0),
              dict(num_parallel_samples=2, decoder_input_scheme="mask"), dict(top_p=0.0),
              dict(rejecter_fraction=1.5), dict(scoring="max"),
              dict(keep_candidates_after_first_pass=0)):
    with pytest.raises(ValueError):
      decoding.RefinementConfig(**bad)


def test_length_candidates_derived_deduplicated_and_clipped():
  config = decoding.RefinementConfig(top_k_lengths=2, length_beam=3)
  scores = np.full((1, 9), -5.0, np.float32)
  scores[0, [5, 6, 0]] = [3.0, 2.0, 9.0]
  candidates = jax.jit(decoding.length_candidates, static_argnums=(1, 2))
  lengths, valid = candidates(scores, config, 8)
  assert lengths.tolist() == [[4, 5, 6, 5, 6, 7]]  # Class 0 (length 0) never chosen.
  assert valid.tolist() == [[True, True, True, False, False, True]]
  lengths, valid = candidates(np.array([4.4, 50.0], np.float32), config, 6)
  assert lengths.tolist() == [[3, 4, 5, 4, 5, 6], [6, 6, 6, 6, 6, 6]]
  assert valid.tolist() == [[True, True, True, False, False, True], [True] + [False] * 5]
  config = decoding.RefinementConfig(length_beam=1, num_parallel_samples=2)
  lengths, valid = candidates(np.array([3, 3], np.int32), config, 6)
  assert lengths.tolist() == [[3, 3], [3, 3]] and bool(valid.all())


def test_initial_decoder_inputs_schemes():
  lengths = jnp.array([1, 3, 9])
  for scheme in decoding.DECODER_INPUT_SCHEMES:
    x = np.asarray(jax.jit(decoding.initial_decoder_inputs, static_argnums=(1, 2, 3))(
        lengths, 5, scheme, ST, KEY))
    assert x[0].tolist()[:2] == [EOS_ID, PAD_ID]
    assert x[1, 2] == EOS_ID and np.all(x[1, 3:] == PAD_ID)
    assert x[2, 4] == EOS_ID  # Clipped: the EOS is kept.
    body = np.concatenate([x[1, :2], x[2, :4]])
    if scheme == "random":
      assert np.all((body >= 4) & (body < ST.num_pieces))
    elif scheme == "mask":
      assert np.all(body == MASK)
    else:
      assert x[2, :4].tolist() == [ST.mask_range_id(i) for i in range(4)]
  with pytest.raises(ValueError):
    decoding.initial_decoder_inputs(lengths, 9, "mask_range", ST)


def test_stutter_mask_no_wrap_around_and_clean_up():
  tokens = jnp.array([[5, 6, 7, 5], [5, 5, 6, 6], [7, 8, 8, EOS_ID], [5, EOS_ID, 0, 0]])
  assert jax.jit(decoding.stutter_mask)(tokens).tolist() == [
      [False] * 4, [False, True, False, True], [False, False, True, False], [False] * 4]
  dirty = jnp.array([[5, 5, 6, EOS_ID, 7, 7], [4, 4, 4, 9, 9, EOS_ID]])
  assert jax.jit(decoding.postprocess)(dirty).tolist() == [[5, 6, EOS_ID, 0, 0, 0],
                                                            [4, 9, EOS_ID, 0, 0, 0]]
  assert jax.jit(decoding.cut_at_eos)(dirty)[0].tolist() == [5, 5, 6, EOS_ID, 0, 0]


def test_argmax_and_max_equal_argmax_and_max():
  x = jax.random.normal(KEY, (3, 5, 1000))
  x = x.at[0, 0, 10].set(9.0).at[0, 0, 20].set(9.0)  # A tie: the first index, as argmax.
  x = x.at[1].set(jnp.where(jnp.arange(1000) % 2 == 0, -jnp.inf, x[1]))
  index, best = jax.jit(decoding.argmax_and_max)(x)
  assert index.dtype == jnp.int32 and int(index[0, 0]) == 10
  np.testing.assert_array_equal(index, jnp.argmax(x, axis=-1))
  np.testing.assert_array_equal(best, jnp.max(x, axis=-1))


def test_choose_tokens_only_real_pieces_and_keeps_eos_pad():
  logits = np.zeros((1, 4, ST.vocab_size), np.float32)
  logits[..., [MASK, PAD_ID, EOS_ID, 7]] = [9.0, 9.0, 8.0, 1.0]
  initial = jnp.array([[MASK, MASK, EOS_ID, PAD_ID]])
  for temperature, top_k in ((0.0, 0), (1.0, 1)):
    config = decoding.RefinementConfig(temperature=temperature, top_k=top_k)
    tokens, log_probs = jax.jit(decoding.choose_tokens, static_argnums=(2, 3))(
        logits, KEY, config, ST, initial)
    assert tokens.tolist() == [[7, 7, EOS_ID, PAD_ID]]
    assert float(log_probs[0, 3]) == 0.0 and float(log_probs[0, 2]) < 0


def _real_lowest(log_probs, real, count):
  order = [i for i in np.argsort(log_probs, kind="stable") if real[i]]
  return sorted(order[:count])


def test_linear_and_constant_rejecters_remask_the_lowest_confidence():
  tokens = jnp.array([[5, 6, 7, 8, 9, 10, EOS_ID, PAD_ID]])
  log_probs = jnp.array([[-0.5, -3.0, -0.1, -2.0, -1.0, -4.0, -9.0, 0.0]])
  real = [True] * 6 + [False, False]
  reject = jax.jit(decoding.reject, static_argnums=(3, 4))
  for t, expected_count in enumerate([4, 3, 1, 0]):  # floor(6 * (4 - t - 1) / 4).
    config = decoding.RefinementConfig(rejecter="linear", num_decode_iterations=4)
    rejected = np.asarray(reject(tokens, log_probs, jnp.array(t), config, ST))[0]
    assert np.flatnonzero(rejected).tolist() == _real_lowest(log_probs[0], real, expected_count)
  for config, count in ((decoding.RefinementConfig(rejecter="constant_k", rejecter_k=2), 2),
                        (decoding.RefinementConfig(rejecter="constant_k", rejecter_k=10), 6),
                        (decoding.RefinementConfig(rejecter="constant_fraction",
                                                   rejecter_fraction=0.5), 3)):
    rejected = np.asarray(reject(tokens, log_probs, jnp.array(0), config, ST))[0]
    assert np.flatnonzero(rejected).tolist() == _real_lowest(log_probs[0], real, count)
  with pytest.raises(ValueError):
    decoding.reject(tokens, log_probs, 0, decoding.RefinementConfig(rejecter="learned"), ST)


# ------------------------------------------------------------------------------------------------
# PaDIR refinement loop.


def _favourites(favourite, strength, vocab=ST.vocab_size):
  """Logits [N, T, V] whose argmax at each position is `favourite`, with that margin."""
  return jax.nn.one_hot(favourite, vocab) * strength[..., None]


def _fixed_fn(target):
  """Ignores its input: always predicts `target [T]` (a fixed point after one pass)."""
  def logits_fn(x):
    fav = jnp.broadcast_to(jnp.asarray(target), x.shape)
    return _favourites(fav, jnp.full(x.shape, 5.0)), None
  return logits_fn


def _at(logits, positions):
  """A toy `logits_fn`'s answer to `positions` [N, M]: its logits [N, T, V] there."""
  return logits if positions is None else jnp.take_along_axis(logits, positions[..., None], 1)


def _cycling_fn(x, positions=None):
  """Predicts the successor of its input token (MASK -> 4): never converges."""
  fav = jnp.where(x == MASK, 4, 4 + (x - 3) % 16)
  return _at(_favourites(fav, jnp.full(x.shape, 5.0)), positions), None


def _refine(logits_fn, initial, config, rng=KEY):
  return jax.jit(functools.partial(decoding.refine, logits_fn, config=config,
                                   special_tokens=ST))(initial, rng)


def test_refine_early_exit_iterations_and_determinism():
  lengths = jnp.array([3, 6])
  initial = decoding.initial_decoder_inputs(lengths, 6, "mask", ST)
  config = decoding.RefinementConfig(num_decode_iterations=5, decoder_input_scheme="mask",
                                     return_history=True)
  tokens, _, aux = _refine(_fixed_fn([9, 10, 11, 12, 13, 14]), initial, config)
  assert aux["iterations"].tolist() == [2, 2]  # Pass 2 sees its own input again: done.
  assert tokens.tolist() == [[9, 10, EOS_ID, 0, 0, 0], [9, 10, 11, 12, 13, EOS_ID]]
  assert aux["history"].shape == (5, 2, 6)
  assert np.all(np.asarray(aux["history"]) == np.asarray(tokens)[None])

  config = decoding.RefinementConfig(num_decode_iterations=3, decoder_input_scheme="mask",
                                     return_history=True)
  tokens, _, aux = _refine(_cycling_fn, initial, config)
  assert aux["iterations"].tolist() == [3, 3]
  assert [int(h[1, 0]) for h in aux["history"]] == [4, 5, 6]
  again, _, _ = _refine(_cycling_fn, initial, config, rng=jax.random.PRNGKey(7))
  np.testing.assert_array_equal(tokens, again)


def test_refine_converges_per_row():
  initial = decoding.initial_decoder_inputs(jnp.array([4, 4]), 4, "mask", ST)

  def logits_fn(x):  # Row 0 ignores its input, row 1 cycles.
    fixed = jnp.full(x.shape, 9)
    cycling = jnp.where(x == MASK, 4, 4 + (x - 3) % 16)
    fav = jnp.where(jnp.arange(2)[:, None] == 0, fixed, cycling)
    return _favourites(fav, jnp.full(x.shape, 5.0)), None

  config = decoding.RefinementConfig(num_decode_iterations=4, decoder_input_scheme="mask")
  _, _, aux = _refine(logits_fn, initial, config)
  assert aux["iterations"].tolist() == [2, 4]
  # A confident model's rows stop after one pass when the confidence exit is below its token
  # probabilities (~0.9 here), not when it is above.
  for threshold, expected in ((0.8, [1, 1]), (0.95, [2, 4])):
    _, _, aux = _refine(logits_fn, initial,
                        dataclasses.replace(config, exit_confidence=threshold))
    assert aux["iterations"].tolist() == expected, threshold
  with pytest.raises(ValueError, match="exit_confidence"):
    decoding.RefinementConfig(exit_confidence=1.0)


def test_linear_schedule_in_the_loop_remasks_the_scheduled_count():
  strengths = jnp.array([3.0, 1.0, 5.0, 2.0, 4.0, 6.0, 7.0, 0.0])

  def logits_fn(x):  # Position 0 reports how many [MASK]s its input holds.
    count = jnp.sum(x == MASK, axis=-1, keepdims=True)
    fav = jnp.where(jnp.arange(8) == 0, 4 + count, 11 + jnp.arange(8))
    return _favourites(fav, jnp.broadcast_to(strengths, x.shape)), None

  initial = decoding.initial_decoder_inputs(jnp.array([7]), 8, "mask", ST)
  config = decoding.RefinementConfig(num_decode_iterations=4, decoder_input_scheme="mask",
                                     rejecter="linear", remasking_scheme="initial",
                                     return_history=True)
  _, _, aux = _refine(logits_fn, initial, config)
  masks_seen = [int(h[0, 0]) - 4 for h in aux["history"]]
  assert masks_seen == [6, 4, 3, 1]  # 6 real positions, then floor(6 * (4 - t - 1) / 4).


@pytest.mark.parametrize("scheme,expected", [("initial", 5), ("previous", 6), ("logits_sum", 8)])
def test_remasking_schemes_do_what_their_names_say(scheme, expected):
  """Position 1 is rejected once, at iteration 1 (input A there, [MASK] initially).

  MASK -> A (C close), A -> B (C close), C -> D: the replacement is visible in the last pass:
  initial ([MASK]) -> A, previous (A) -> B, logits sum (A+C, B+C: C wins) -> D.
  """
  a, b, c, d = 5, 6, 7, 8
  vocab = 32  # Not the SpecialTokens vocab size: V is read from the logits.

  def logits_fn(x):
    logits = (jax.nn.one_hot(jnp.where(x == MASK, a, jnp.where(x == a, b, d)), vocab) * 3.0
              + jax.nn.one_hot(jnp.where((x == MASK) | (x == a), c, 0), vocab) * 2.5)
    reject_now = (jnp.arange(x.shape[1]) == 1) & (x[:, :1] != MASK)
    return logits, jnp.where(reject_now, -5.0, 5.0)

  initial = decoding.initial_decoder_inputs(jnp.array([4]), 5, "mask", ST)
  config = decoding.RefinementConfig(num_decode_iterations=3, decoder_input_scheme="mask",
                                     rejecter="learned", remasking_scheme=scheme)
  tokens, _, _ = _refine(logits_fn, initial, config)
  assert int(tokens[0, 1]) == expected
  assert tokens[0, 3:].tolist() == [EOS_ID, PAD_ID]


def test_work_the_config_does_not_need_is_not_traced():
  """Dropped when tracing, not masked at run time: argmax choice splits no key; a configuration
  that re-masks nothing traces one program whatever its re-masking scheme (no logits sum, no
  rejecter), the same as passthrough's."""
  initial = decoding.initial_decoder_inputs(jnp.array([4, 6]), 6, "mask", ST)

  def program(**options):
    config = decoding.RefinementConfig(num_decode_iterations=3, decoder_input_scheme="mask",
                                       **options)
    return str(jax.make_jaxpr(lambda i, r: decoding.refine(_cycling_fn, i, r, config, ST))(
        initial, KEY))

  def draws(text):
    return "threefry" in text or "random_split" in text or "random_bits" in text

  assert not draws(program()) and draws(program(temperature=1.0))
  passthrough = program(rejecter="passthrough")
  for options in (dict(remasking_scheme="logits_sum"), dict(remasking_scheme="initial"),
                  dict(rejecter="constant_k", rejecter_k=0),
                  dict(rejecter="constant_fraction", rejecter_fraction=0.0,
                       remasking_scheme="logits_sum")):
    assert program(**options) == passthrough, options
  assert program(rejecter="constant_k", rejecter_k=1) != passthrough


def test_stutter_remasking_leaves_no_adjacent_repeats():
  target = [5, 5, 6, 6, 6, 7, 8, 8]
  initial = decoding.initial_decoder_inputs(jnp.array([8, 5]), 8, "random", ST, KEY)
  plain = decoding.RefinementConfig(num_decode_iterations=3)
  tokens, _, _ = _refine(_fixed_fn(target), initial, plain)
  assert bool(decoding.stutter_mask(tokens).any())
  config = decoding.RefinementConfig(num_decode_iterations=3, stutter_remasking=True)
  tokens, log_probs, _ = _refine(_fixed_fn(target), initial, config)
  assert not bool(decoding.stutter_mask(tokens).any())
  assert tokens.tolist() == [[5, 6, 7, 8, EOS_ID, 0, 0, 0], [5, 6, EOS_ID, 0, 0, 0, 0, 0]]
  assert np.all(np.asarray(log_probs)[np.asarray(tokens) == PAD_ID] == 0.0)


# ------------------------------------------------------------------------------------------------
# padir_decode.


def _decode(logits_fn, length_predictions, config, max_decode_len, rescore_fn=None):
  fn = jax.jit(functools.partial(decoding.padir_decode, logits_fn, config=config,
                                 special_tokens=ST, max_decode_len=max_decode_len,
                                 rescore_fn=rescore_fn))
  return fn(length_predictions, KEY)


def _length_scored_fn(x):
  """Favours 9 everywhere, the EOS most where the length is 4 (so length 4 scores best)."""
  eos_at = jnp.argmax(x == EOS_ID, axis=-1)[:, None]
  eos_strength = jnp.where(eos_at == 3, 6.0, 0.5)
  fav = jnp.where(jnp.arange(x.shape[1]) == eos_at, EOS_ID, 9 + jnp.arange(x.shape[1]))
  strength = jnp.where(jnp.arange(x.shape[1]) == eos_at, eos_strength, 5.0)
  return _favourites(fav, strength), None


def test_padir_decode_eos_at_chosen_length_and_all_candidates():
  config = decoding.RefinementConfig(length_beam=5, num_parallel_samples=2,
                                     return_all_candidates=True, return_history=True,
                                     num_decode_iterations=3)
  tokens, aux = _decode(_length_scored_fn, jnp.array([4, 2]), config, 8)
  assert aux["scores"].shape == (2, config.num_candidates) == (2, 10)
  assert aux["candidates"].shape == (2, 10, 8) and aux["history"].shape == (2, 3, 8)
  assert aux["lengths"].tolist() == [4, 4]
  for row in np.asarray(tokens):
    assert row.tolist() == [9, 10, 11, EOS_ID, 0, 0, 0, 0]
  assert np.all(np.asarray(aux["iterations"]) <= 2)
  dup = ~np.asarray(aux["candidate_valid"])
  assert np.all(np.isneginf(np.asarray(aux["scores"])[dup]))
  lengths = np.asarray(aux["candidate_lengths"])
  for b in range(2):
    for c in range(10):
      cand = np.asarray(aux["candidates"][b, c])
      assert cand[lengths[b, c] - 1] == EOS_ID and np.all(cand[lengths[b, c]:] == PAD_ID)


def test_padir_decode_clips_long_predicted_length():
  config = decoding.RefinementConfig(decoder_input_scheme="mask", length_beam=3)
  tokens, aux = _decode(_fixed_fn([9, 10, 11, 12, 13, 14]), jnp.array([50]), config, 6)
  assert aux["candidate_lengths"].tolist() == [[6, 6, 6]]
  assert aux["candidate_valid"].tolist() == [[True, False, False]]
  assert tokens.tolist() == [[9, 10, 11, 12, 13, EOS_ID]]


def test_candidates_carry_their_lengths_log_prob_under_length_scores():
  config = decoding.RefinementConfig(decoder_input_scheme="mask", top_k_lengths=3)
  scores = jnp.array([[9.0, 0.0, 1.0, 3.0, 2.0, -1.0]])  # Class 0 (length 0) is never chosen.
  _, aux = _decode(_fixed_fn([9, 10, 11, 12, 13, 14]), scores, config, 6)
  assert aux["candidate_lengths"].tolist() == [[3, 4, 2]]
  expected = jax.nn.log_softmax(scores[0, 1:])[np.array([3, 4, 2]) - 1]
  np.testing.assert_allclose(aux["candidate_length_log_probs"][0], expected, rtol=1e-6)
  # Predicted lengths [B] (no distribution): no log-probs, and none to weigh.
  assert "candidate_length_log_probs" not in _decode(_fixed_fn([9, 10, 11]), jnp.array([3]),
                                                     config, 3)[1]
  with pytest.raises(ValueError, match="length_score_weight=0.5 weighs"):
    _decode(_fixed_fn([9, 10, 11]), jnp.array([3]),
            dataclasses.replace(config, decode=dataclasses.replace(
                config.decode, length_score_weight=0.5)), 3)


def test_a_length_past_the_predictors_classes_has_no_log_prob():
  from padir.decoding import pieces  # pylint: disable=g-import-not-at-top
  scores = jnp.array([[9.0, 0.0, 1.0, 3.0, 2.0, -1.0]])  # Lengths 1..5.
  got = pieces.length_log_probs(scores, jnp.array([[3, 5, 6]]))
  np.testing.assert_allclose(got[0, :2], jax.nn.log_softmax(scores[0, 1:])[np.array([2, 4])],
                             rtol=1e-6)
  assert float(got[0, 2]) <= -1e9


@pytest.mark.parametrize("keep", [None, 1])
def test_length_score_weight_ranks_by_the_lengths_log_prob_too(keep):
  """Every candidate gets the same tokens; EOS's low log-prob weighs least in the mean of the
  longest one, which wins on the tokens alone; weighted by length log-probs, the predictor's
  most likely length (3) wins, after the first pass (pruning) and at the end."""
  scores = jnp.array([[9.0, 0.0, 1.0, 3.0, 2.0, -1.0]])
  lengths = {}
  for weight in (0.0, 10.0):
    config = decoding.RefinementConfig(decoder_input_scheme="mask", top_k_lengths=3,
                                       num_decode_iterations=2, length_score_weight=weight,
                                       keep_candidates_after_first_pass=keep)
    fixed = _fixed_fn([9, 10, 11, 12, 13, 14])
    _, aux = _decode(lambda x, positions=None, rows=None: fixed(x), scores, config, 6)
    lengths[weight] = int(aux["lengths"][0])
    if keep is not None:
      assert aux["candidate_kept"][0, int(aux["best"][0])]
  assert lengths == {0.0: 4, 10.0: 3}


def test_rescoring_picks_the_candidate_the_rescorer_prefers():
  def rescore_fn(tokens):  # An "AR teacher" that likes length 3.
    return -jnp.abs(jnp.sum(tokens != PAD_ID, axis=-1) - 3).astype(jnp.float32)

  config = decoding.RefinementConfig(length_beam=5, decoder_input_scheme="mask")
  tokens, aux = _decode(_length_scored_fn, jnp.array([4]), config, 8)
  assert aux["lengths"].tolist() == [4]
  tokens, aux = _decode(_length_scored_fn, jnp.array([4]), config, 8, rescore_fn)
  assert aux["lengths"].tolist() == [3] and "model_scores" in aux
  assert tokens.tolist() == [[9, 10, EOS_ID, 0, 0, 0, 0, 0]]


def test_canvas_sizes():
  assert decoding.canvas_sizes(32, 4) == (8, 16, 24, 32)
  assert decoding.canvas_sizes(48, 4) == (16, 24, 40, 48)
  assert decoding.canvas_sizes(24, 4) == (8, 16, 24)
  assert decoding.canvas_sizes(5, 4) == (5,)
  assert decoding.canvas_sizes(48, 1) == (48,)


def _context_logits(table, x, positions):
  """A padding-blind toy decoder pass: every position's favourite depends on the whole input."""
  content = jnp.sum(jnp.where(x != PAD_ID, x, 0), axis=-1, keepdims=True)
  favourite = 4 + (x + content) % (ST.num_pieces - 4)
  return _at(table[:x.shape[1]] + _favourites(favourite, jnp.full(x.shape, 2.0)), positions)


@pytest.mark.parametrize("scheme", ["random", "mask"])
@pytest.mark.slow
def test_fitted_canvas_decodes_as_the_full_one(scheme):
  """Refinement on the smallest canvas that holds the longest candidate (16 of 32 positions
  here) returns what the full canvas does, given a model that, like the decoder, ignores
  padding; and only the 16-long canvas runs."""
  table = jnp.asarray(np.random.RandomState(3).randn(32, ST.vocab_size).astype(np.float32))
  widths = []

  def logits_fn(x, positions=None):
    jax.debug.callback(lambda inputs: widths.append(inputs.shape[1]), x)
    return _context_logits(table, x, positions), None

  def decode(num_canvas_sizes):
    config = decoding.RefinementConfig(
        decoder_input_scheme=scheme, rejecter="linear", remasking_scheme="initial",
        keep_visible=True, top_k_lengths=2, length_beam=3, return_history=True,
        return_all_candidates=True, num_canvas_sizes=num_canvas_sizes)
    scores = jnp.asarray(np.random.RandomState(4).randn(3, 33).astype(np.float32))
    scores = scores.at[:, 14:].add(-1e4)  # The longest candidate is 13 + 1 = 14 long.
    return _decode(logits_fn, scores, config, 32)

  full, full_aux = decode(1)
  assert set(widths) == {32}
  widths.clear()
  fitted, fitted_aux = decode(4)
  assert set(widths) == {16}
  np.testing.assert_array_equal(fitted, full)
  for name in ("candidates", "history", "iterations", "lengths", "best"):
    np.testing.assert_array_equal(fitted_aux[name], full_aux[name], err_msg=name)
  np.testing.assert_allclose(fitted_aux["scores"], full_aux["scores"], rtol=1e-6)


def _sourced_fn(table, sources, calls=None):
  """A toy decoder pass with per-row "encoder states" `sources` [N]: `rows` (the candidates
  kept after the first pass) selects theirs, as a model's `logits_fn` does. Records the rows
  of each call in `calls`."""

  def logits_fn(x, positions=None, rows=None):
    if calls is not None:
      jax.debug.callback(lambda inputs: calls.append(inputs.shape[0]), x)
    src = sources if rows is None else sources[rows]
    return _context_logits(table, x + src[:, None], positions), None

  return logits_fn


_MASK_PREDICT = dict(decoder_input_scheme="mask", rejecter="linear", remasking_scheme="initial",
                     keep_visible=True, num_decode_iterations=4, return_all_candidates=True,
                     return_history=True)


@pytest.mark.parametrize("masked_logits_only", [False, True])
@pytest.mark.slow
def test_pruning_with_one_candidate_is_keeping_all(masked_logits_only):
  """One valid candidate per example (a long length clipped thrice to T): keeping the best one
  after the first pass (the pruned path: C = 3 > 1) decodes as keeping all."""
  table = jnp.asarray(np.random.RandomState(5).randn(8, ST.vocab_size).astype(np.float32))
  sources = jnp.repeat(jnp.array([3, 7]), 3)
  calls = []

  def decode(keep):
    config = decoding.RefinementConfig(length_beam=3, keep_candidates_after_first_pass=keep,
                                       masked_logits_only=masked_logits_only, **_MASK_PREDICT)
    return _decode(_sourced_fn(table, sources, calls), jnp.array([50, 50]), config, 8)

  full, full_aux = decode(None)
  calls.clear()
  pruned, pruned_aux = decode(1)
  jax.effects_barrier()
  assert calls[0] == 6 and set(calls[1:]) == {2}  # Pass 1 on 2 x 3 rows, then 2 x 1.
  assert pruned_aux["candidate_kept"].tolist() == [[True, False, False]] * 2
  np.testing.assert_array_equal(pruned, full)
  for name in ("lengths", "best", "iterations", "history"):
    np.testing.assert_array_equal(pruned_aux[name], full_aux[name], err_msg=name)
  np.testing.assert_allclose(pruned_aux["scores"], full_aux["scores"], rtol=1e-6)
  # A single candidate leaves nothing to prune: the plain path, no `rows` asked for.
  config = decoding.RefinementConfig(keep_candidates_after_first_pass=1, **_MASK_PREDICT)
  single, single_aux = _decode(_context_logits_fn(table), jnp.array([5, 5]), config, 8)
  assert "candidate_kept" not in single_aux and single.shape == (2, 8)


def _context_logits_fn(table):
  return lambda x, positions=None: (_context_logits(table, x, positions), None)


@pytest.mark.slow
def test_pruning_refines_only_the_best_candidate_after_the_first_pass():
  table = jnp.asarray(np.random.RandomState(6).randn(16, ST.vocab_size).astype(np.float32))
  batch, lengths = 4, jnp.array([5, 7, 9, 6])
  sources = jnp.repeat(jnp.arange(batch) * 5, 3)

  def decode(keep, iterations=4, calls=None):
    config = decoding.RefinementConfig(
        length_beam=3, keep_candidates_after_first_pass=keep,
        **dict(_MASK_PREDICT, num_decode_iterations=iterations))
    return _decode(_sourced_fn(table, sources, calls), lengths, config, 16)

  _, first = decode(None, iterations=1)  # Every candidate after one pass, and its score.
  _, full = decode(None)
  calls = []
  tokens, pruned = decode(1, calls=calls)
  jax.effects_barrier()
  assert calls[0] == batch * 3 and set(calls[1:]) == {batch}
  best_first = np.argmax(np.asarray(first["scores"]), axis=-1)
  assert pruned["best"].tolist() == best_first.tolist()
  kept = np.asarray(pruned["candidate_kept"])
  assert kept.tolist() == (np.arange(3) == best_first[:, None]).tolist()
  assert np.all(np.isneginf(np.asarray(pruned["scores"])[~kept]))
  candidates = np.asarray(pruned["candidates"])
  # The kept candidate is refined as keeping all refines it (its own encoder row: `rows`) ...
  np.testing.assert_array_equal(candidates[kept], np.asarray(full["candidates"])[kept])
  np.testing.assert_array_equal(tokens, candidates[kept])
  # ... the others stop at their first pass.
  np.testing.assert_array_equal(candidates[~kept], np.asarray(first["candidates"])[~kept])
  assert np.asarray(pruned["iterations"]).max() > 1  # The chosen one went on past pass 1.
  # Which the toy's keep-all decode would not always pick: pruning changes the choice here.
  assert full["best"].tolist() != best_first.tolist()


def test_ranks_and_partitions_without_a_sort_match_argsort():
  """The sort-free ranking (lowest confidence, ties leftmost first) and stable partition equal
  their argsort definitions, ties and non-real positions included."""
  rs = np.random.RandomState(8)
  log_probs = jnp.asarray(rs.randint(-4, 0, size=(50, 12)).astype(np.float32))  # Many ties.
  real = jnp.asarray(rs.rand(50, 12) < 0.8)
  count = jnp.asarray(rs.randint(0, 13, size=50))
  order = np.argsort(np.where(real, log_probs, np.inf), axis=-1, kind="stable")
  rank = np.argsort(order, axis=-1)
  # pylint: disable=protected-access
  np.testing.assert_array_equal(decoding._lowest_confidence(log_probs, real, count),
                                np.asarray(real) & (rank < np.asarray(count)[:, None]))
  np.testing.assert_array_equal(decoding._front_order(real),
                                np.argsort(~np.asarray(real), axis=-1, kind="stable"))


def test_projected_counts_follow_the_rejecter():
  config = decoding.RefinementConfig(decoder_input_scheme="mask", rejecter="linear",
                                     remasking_scheme="initial", keep_visible=True,
                                     masked_logits_only=True)
  # 15 real tokens + EOS: 15 * 3 // 4 = 11, 7, 3 re-masked, each plus the EOS.
  assert decoding.projected_counts(config, 16) == (16, 12, 8, 4)
  constant = dataclasses.replace(config, rejecter="constant_k", rejecter_k=2)
  assert decoding.projected_counts(constant, 16) == (16, 3, 3, 3)
  for off in (dict(masked_logits_only=False), dict(keep_visible=False, remasking_scheme="previous"),
              dict(decoder_input_scheme="random"), dict(stutter_remasking=True),
              dict(rejecter="learned")):
    assert decoding.projected_counts(dataclasses.replace(config, **off), 16) is None, off


@pytest.mark.parametrize("rejecter", ["linear", "constant_k", "constant_fraction"])
@pytest.mark.slow
def test_masked_only_projection_gives_the_full_projections_tokens(rejecter):
  """Mask-predict projecting only the masked positions and EOS returns the tokens, log-probs,
  scores and histories of projecting every position, with fewer positions projected."""
  table = jnp.asarray(np.random.RandomState(5).randn(24, ST.vocab_size).astype(np.float32))
  projected = []

  def logits_fn(x, positions=None):
    width = x.shape[1] if positions is None else positions.shape[1]
    jax.debug.callback(lambda _: projected.append(width), x)
    return _context_logits(table, x, positions), None

  def decode(masked_logits_only):
    config = decoding.RefinementConfig(
        decoder_input_scheme="mask", rejecter=rejecter, rejecter_k=3, rejecter_fraction=0.3,
        remasking_scheme="initial", keep_visible=True, num_decode_iterations=5, length_beam=3,
        return_history=True, return_all_candidates=True, early_exit=False, num_canvas_sizes=1,
        masked_logits_only=masked_logits_only)
    scores = jnp.asarray(np.random.RandomState(6).randn(2, 25).astype(np.float32))
    return _decode(logits_fn, scores, config, 24)

  full, full_aux = decode(False)
  assert set(projected) == {24}
  projected.clear()
  masked, masked_aux = decode(True)
  assert projected[0] == 24 and max(projected[1:]) < 24
  np.testing.assert_array_equal(masked, full)
  for name in ("candidates", "history", "iterations", "lengths", "best"):
    np.testing.assert_array_equal(masked_aux[name], full_aux[name], err_msg=name)
  np.testing.assert_allclose(masked_aux["scores"], full_aux["scores"], rtol=1e-6)


def test_score_candidates_mean_sum_and_brevity():
  tokens = jnp.array([[5, 6, EOS_ID, 0]])
  log_probs = jnp.array([[-1.0, -2.0, -3.0, 0.0]])
  mean = decoding.score_candidates(tokens, log_probs, decoding.RefinementConfig())
  total = decoding.score_candidates(tokens, log_probs, decoding.RefinementConfig(scoring="sum"))
  penalised = decoding.score_candidates(tokens, log_probs,
                                        decoding.RefinementConfig(scoring="sum", alpha=1.0))
  assert float(mean[0]) == pytest.approx(-2.0) and float(total[0]) == pytest.approx(-6.0)
  assert float(penalised[0]) == pytest.approx(-6.0 / (8.0 / 6.0))


def test_keep_visible_repredicts_only_masked_positions():
  """Mask-predict with the cycling model: without keep_visible every kept token moves on each
  pass; with it a token, once predicted and not re-masked, stays with its first log-prob."""
  initial = decoding.initial_decoder_inputs(jnp.array([5]), 5, "mask", ST)
  common = dict(num_decode_iterations=3, decoder_input_scheme="mask", rejecter="linear",
                remasking_scheme="initial", return_history=True)
  _, _, moving = _refine(_cycling_fn, initial, decoding.RefinementConfig(**common))
  tokens, log_probs, kept = _refine(_cycling_fn, initial,
                                    decoding.RefinementConfig(keep_visible=True, **common))
  history = np.asarray(kept["history"])[:, 0, :4]
  # Pass 1 predicts 4 everywhere (from [MASK]); re-masked positions get 4 again, visible ones
  # stay 4: nothing moves. Without keep_visible, visible 4s become 5s.
  assert np.all(history == 4)
  assert np.any(np.asarray(moving["history"])[1:, 0, :4] == 5)
  assert tokens[0, 4] == EOS_ID
  np.testing.assert_allclose(log_probs[0, :4], log_probs[0, 0])
  with pytest.raises(ValueError, match="keep_visible"):
    decoding.RefinementConfig(keep_visible=True, remasking_scheme="previous")
