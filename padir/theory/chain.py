"""Chain models over a token vocabulary, with exact conditionals given any set of masked positions.

A batch of B chains of length L over V tokens:

  p(x) ∝ exp(sum_i unary[b, i, x_i] + sum_i pairwise[x_i, x_{i+1}]),

e.g. pairwise = -penalty * I: equal neighbours (stutter) are (nearly) forbidden. Positions
holding `MASK` are unobserved and marginalised out. Conditionals come from one forward and one
backward pass (sum-product with the observed tokens clamped), O(B L V^2), exact.
"""
import numpy as np

from padir.theory import distributions

MASK = -1


def _evidence(tokens: np.ndarray, num_values: int) -> np.ndarray:
  """0 where a value is allowed, -inf where it contradicts an observed token: [B, L, V]."""
  allowed = (tokens[..., None] == MASK) | (tokens[..., None] == np.arange(num_values))
  return np.where(allowed, 0.0, -np.inf)


def conditionals(unary: np.ndarray, pairwise: np.ndarray, tokens: np.ndarray) -> np.ndarray:
  """p(x_i = a | every unmasked token except position i's own), for every position.

  Args:
    unary: [B, L, V] log-potentials.
    pairwise: [V, V] log-potentials between neighbours.
    tokens: [B, L] int, `MASK` where masked.

  Returns:
    [B, L, V] probabilities (each row sums to 1).
  """
  evidence = _evidence(tokens, unary.shape[-1])
  length = unary.shape[1]
  forward = [unary[:, 0]]  # forward[i]: log-messages into i from the left, plus unary[i].
  for i in range(1, length):
    clamped = forward[-1] + evidence[:, i - 1]
    forward.append(unary[:, i] + distributions.logsumexp(clamped[:, :, None] + pairwise, axis=1))
  backward = [np.zeros_like(unary[:, 0])]  # backward[i]: log-messages into i from the right.
  for i in range(length - 2, -1, -1):
    clamped = unary[:, i + 1] + evidence[:, i + 1] + backward[0]
    backward.insert(0, distributions.logsumexp(pairwise[None] + clamped[:, None, :], axis=2))
  return distributions.softmax(np.stack(forward, 1) + np.stack(backward, 1))


def log_potential(unary: np.ndarray, pairwise: np.ndarray, tokens: np.ndarray) -> np.ndarray:
  """Unnormalised log p of full sequences: tokens [B, L] -> [B]."""
  batch, length = np.arange(len(tokens))[:, None], np.arange(tokens.shape[1])[None]
  return (unary[batch, length, tokens].sum(-1)
          + pairwise[tokens[:, :-1], tokens[:, 1:]].sum(-1))


def map_sequence(unary: np.ndarray, pairwise: np.ndarray) -> np.ndarray:
  """The most probable sequence of each chain (Viterbi): [B, L] int."""
  score, pointers = unary[:, 0], []
  for i in range(1, unary.shape[1]):
    candidates = score[:, :, None] + pairwise  # [B, from, to]
    pointers.append(np.argmax(candidates, axis=1))
    score = unary[:, i] + np.max(candidates, axis=1)
  best = [np.argmax(score, -1)]
  for pointer in reversed(pointers):
    best.insert(0, pointer[np.arange(len(score)), best[0]])
  return np.stack(best, 1)


def stutter_mask(tokens: np.ndarray) -> np.ndarray:
  """True where a token equals its left neighbour (position 0 never; no wrap-around): [B, L]."""
  repeated = (tokens[:, 1:] == tokens[:, :-1]) & (tokens[:, 1:] != MASK)
  return np.concatenate([np.zeros_like(repeated[:, :1]), repeated], axis=1)


def refine(unary: np.ndarray, pairwise: np.ndarray, initial: np.ndarray, num_iterations: int,
           remask_stutter: bool) -> np.ndarray:
  """Parallel argmax refinement: every position re-predicted at once from its conditional.

  With `remask_stutter`, after each pass every token equal to its left neighbour is masked and
  re-predicted (argmax given the rest, all masked positions at once) before the next pass.

  Args:
    unary, pairwise: the chains (see `conditionals`).
    initial: [B, L] starting tokens (`MASK` for an all-masked start).
    num_iterations: parallel passes.
    remask_stutter: whether to re-mask and re-predict stutter after each pass.

  Returns:
    tokens after each pass, [num_iterations, B, L].
  """
  tokens, out = initial, []
  for _ in range(num_iterations):
    tokens = np.argmax(conditionals(unary, pairwise, tokens), -1)
    if remask_stutter:
      stutter = stutter_mask(tokens)
      masked = np.where(stutter, MASK, tokens)
      tokens = np.where(stutter, np.argmax(conditionals(unary, pairwise, masked), -1), tokens)
    out.append(tokens)
  return np.stack(out)


def duplicate_rate(tokens: np.ndarray) -> np.ndarray:
  """Fraction of adjacent pairs that are equal: tokens [..., L] -> [...]."""
  return np.mean(tokens[..., 1:] == tokens[..., :-1], axis=-1)
