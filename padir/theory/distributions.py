"""Enumerable pairwise distributions on N sites with q values each, and their exact conditionals.

A `PairwiseModel` has log-potential

  e(x) = sum_i unary[i, x_i] + sum_{i<j} pairwise[i, j, x_i, x_j],    p(x) = exp e(x) / Z,

over the M = q^N states x in {0..q-1}^N. Everything is small enough to enumerate (M <= ~2^16),
so the joint, every conditional and every block conditional are exact tables, never samples.

State order: `all_states` lists states row-major with site 0 most significant, so a table over
states of shape [M] reshapes to [q]*N with axis j being site j. Ising spins are s = 2x - 1.
"""
import dataclasses
import itertools
from typing import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class PairwiseModel:
  """p(x) ∝ exp(sum_i unary[i, x_i] + sum_{i<j} pairwise[i, j, x_i, x_j]).

  Attributes:
    unary: [N, q] float.
    pairwise: [N, N, q, q] float, pairwise[j, i] == pairwise[i, j].T, zero on the diagonal i == j.
  """
  unary: np.ndarray
  pairwise: np.ndarray

  @property
  def num_sites(self) -> int:
    return self.unary.shape[0]

  @property
  def num_values(self) -> int:
    return self.unary.shape[1]


def all_states(num_sites: int, num_values: int) -> np.ndarray:
  """All q^N states, row-major (site 0 most significant): [M, N] int."""
  return np.array(list(itertools.product(range(num_values), repeat=num_sites)), dtype=np.int64)


def ising(couplings: np.ndarray, fields: np.ndarray) -> PairwiseModel:
  """Ising model p(s) ∝ exp(sum_i h_i s_i + sum_{i<j} J_ij s_i s_j), spins s = 2x - 1 in {-1, +1}.

  Args:
    couplings: J, [N, N] symmetric (the diagonal is ignored).
    fields: h, [N].
  """
  couplings = np.asarray(couplings, np.float64)
  couplings = couplings * (1.0 - np.eye(len(couplings)))
  spins = np.array([-1.0, 1.0])
  unary = np.asarray(fields, np.float64)[:, None] * spins[None, :]
  pairwise = couplings[:, :, None, None] * np.outer(spins, spins)[None, None]
  return PairwiseModel(unary=unary, pairwise=pairwise)


def two_mode(num_sites: int, coupling: float, field: float = 0.0) -> PairwiseModel:
  """The "all equal" ferromagnet: every pair of spins coupled by coupling / N, uniform field.

  At strong coupling most of the mass sits on the two states "all -1" and "all +1" (72 % at
  coupling 2, N = 10); a positive field (the analogue of a source sentence) tips it towards
  "all +1".
  """
  couplings = np.full((num_sites, num_sites), coupling / num_sites)
  return ising(couplings, np.full(num_sites, field))


def random_ising_parameters(rng: np.random.Generator, num_sites: int, coupling: float,
                            field: float):
  """Complete-graph Ising parameters J_ij ~ coupling * N(0, 1) / sqrt(N), h_i ~ field * N(0, 1).

  Returns:
    (couplings [N, N] symmetric with zero diagonal, fields [N]).
  """
  upper = np.triu(rng.standard_normal((num_sites, num_sites)), 1)
  couplings = coupling * (upper + upper.T) / np.sqrt(num_sites)
  return couplings, field * rng.standard_normal(num_sites)


def log_potentials(model: PairwiseModel, states: np.ndarray) -> np.ndarray:
  """Unnormalised log p of each state: states [B, N] int -> [B]."""
  sites = np.arange(model.num_sites)
  unary = model.unary[sites, states].sum(-1)
  pair = model.pairwise[sites[:, None], sites[None, :], states[:, :, None], states[:, None, :]]
  return unary + 0.5 * pair.sum((-1, -2))


def log_joint(model: PairwiseModel) -> np.ndarray:
  """Normalised log p over `all_states` order: [M]."""
  energies = log_potentials(model, all_states(model.num_sites, model.num_values))
  return energies - logsumexp(energies)


def single_site_conditionals(model: PairwiseModel, states: np.ndarray) -> np.ndarray:
  """p(x_i = a | x_{-i}) for each state and site: states [B, N] int -> [B, N, q].

  Computed from the local field unary[i, a] + sum_{j != i} pairwise[i, j, a, x_j], which needs no
  normalising constant, so it is exact even where p(x_{-i}) is tiny.
  """
  onehot = np.eye(model.num_values)[states]
  logits = model.unary[None] + np.einsum("ijab,mjb->mia", model.pairwise, onehot)
  return softmax(logits)


def marginals(log_p: np.ndarray, num_sites: int, num_values: int) -> np.ndarray:
  """Single-site marginals p(x_i = a) of a joint table: log_p [M] -> [N, q]."""
  table = np.exp(log_p).reshape((num_values,) * num_sites)
  return np.stack([table.sum(tuple(j for j in range(num_sites) if j != i))
                   for i in range(num_sites)])


def product_of_marginals(log_p: np.ndarray, num_sites: int, num_values: int) -> np.ndarray:
  """prod_i p(x_i) over `all_states` order: [M] (one parallel pass from an all-masked input)."""
  marg = marginals(log_p, num_sites, num_values)
  states = all_states(num_sites, num_values)
  return np.prod(marg[np.arange(num_sites), states], axis=-1)


def subsets(num_sites: int, size: int) -> np.ndarray:
  """All subsets of `size` sites, sorted: [C(N, size), size] int."""
  return np.array(list(itertools.combinations(range(num_sites), size)), dtype=np.int64)


def blocks(num_sites: int, num_values: int, subset: np.ndarray) -> np.ndarray:
  """Groups states that agree off `subset` S: [M / q^k, q^k] state indices.

  Row b lists the q^k states sharing one x_{-S}; column v is the assignment of x_S given by
  `all_states(k, q)[v]` (so block members are ordered the same way in every row).
  """
  place = num_values ** (num_sites - 1 - np.arange(num_sites))
  rest = np.setdiff1d(np.arange(num_sites), subset)
  bases = all_states(len(rest), num_values) @ place[rest]
  offsets = all_states(len(subset), num_values) @ place[subset]
  return bases[:, None] + offsets[None, :]


def logsumexp(x: np.ndarray, axis=None, keepdims: bool = False) -> np.ndarray:
  """Stable log sum exp over `axis` (float64 NumPy; -inf entries allowed)."""
  top = np.max(x, axis=axis, keepdims=True)
  top = np.where(np.isfinite(top), top, 0.0)
  out = np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True)) + top
  return out if keepdims else np.squeeze(out, axis=axis)


def softmax(logits: np.ndarray) -> np.ndarray:
  """Softmax over the last axis."""
  return np.exp(logits - logsumexp(logits, axis=-1, keepdims=True))


def total_variation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
  """TV(p, q) = 0.5 * sum |p - q| over the last axis."""
  return 0.5 * np.abs(p - q).sum(-1)


def kl_divergence(log_p: np.ndarray, log_q: np.ndarray) -> np.ndarray:
  """KL(p || q) from normalised log tables over the last axis."""
  return np.sum(np.exp(log_p) * (log_p - log_q), axis=-1)


def per_coupling(run_coupling: Callable[[np.random.Generator, dict, float], dict], config: dict,
                 seed: int) -> dict:
  """An experiment run at each of `config["couplings"]` ({name: strength}), each from the same
  random draws (a fresh generator of `seed`), so the results differ only in the coupling:
  {"config", "seed", "results": {name: run_coupling(rng, config, strength)}}."""
  results = {name: run_coupling(np.random.default_rng(seed), config, coupling)
             for name, coupling in config["couplings"].items()}
  return {"config": config, "seed": seed, "results": results}
