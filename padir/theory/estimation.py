"""k-masked pseudo-likelihood (k-MPL) estimation of an Ising model, exact over enumerated states.

The Ising model is the exponential family log p_theta(x) = theta . phi(x) - log Z(theta) with
sufficient statistics phi(x) = (s_i for all i; s_i s_j for i < j), spins s = 2x - 1, so
theta = (h [N], J_ij for i < j [N(N-1)/2]) and P = N(N+1)/2 parameters.

The k-MPL objective of a data set with empirical distribution w over the M = 2^N states is

  L_k(theta) = sum_x w(x) mean_{|S| = k} log p_theta(x_S | x_{-S}) - (ridge / 2) |theta|^2,

the mean running over all C(N, k) subsets (the expectation over random masks, computed exactly).
log p(x_S | x_{-S}) = e(x) - logsumexp of e over the 2^k states agreeing with x off S (x's
"block"), so L_k needs no partition function unless k = N, where it is the log-likelihood: k = N
is maximum likelihood. L_k is concave; `fit` maximises it by Newton's method with closed-form
derivatives, batched over data sets. The formulas are written once for NumPy or jax.numpy: the fits
run them jitted in float64 (`jax.enable_x64`, scoped to `fit`), the exact asymptotic computation
in NumPy.
"""
import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from padir.theory import distributions


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MaskTables:
  """Index tables of the k-MPL objective for one k on N binary sites.

  Attributes:
    features: phi(x) for every state, [M, P].
    blocks: state indices of each block, [C, B, V] (C = C(N, k) subsets, B = M / 2^k blocks of
      V = 2^k states each).
    block_of: which block of subset c holds state x, [C, M].
    position: where state x sits in subset c's flattened [B * V] layout, [C, M].
    block_features: features[blocks], [C, B, V, P].
  """
  features: np.ndarray
  blocks: np.ndarray
  block_of: np.ndarray
  position: np.ndarray
  block_features: np.ndarray


def ising_features(num_sites: int) -> np.ndarray:
  """phi(x) = (s_i; s_i s_j for i < j) for every state in `all_states` order: [M, P]."""
  spins = 2.0 * distributions.all_states(num_sites, 2) - 1.0
  upper_i, upper_j = np.triu_indices(num_sites, 1)
  return np.concatenate([spins, spins[:, upper_i] * spins[:, upper_j]], axis=1)


def ising_theta(couplings: np.ndarray, fields: np.ndarray) -> np.ndarray:
  """theta = (h, J_ij for i < j) from couplings [N, N] and fields [N]: [P]."""
  upper_i, upper_j = np.triu_indices(len(fields), 1)
  return np.concatenate([fields, couplings[upper_i, upper_j]])


def mask_tables(num_sites: int, k: int) -> MaskTables:
  """The `MaskTables` of k-MPL on `num_sites` binary sites."""
  blocks = np.stack([distributions.blocks(num_sites, 2, subset)
                     for subset in distributions.subsets(num_sites, k)])
  num_subsets, num_blocks, block_size = blocks.shape
  position = np.zeros((num_subsets, 2 ** num_sites), np.int64)
  position[np.arange(num_subsets)[:, None], blocks.reshape(num_subsets, -1)] = np.arange(
      num_blocks * block_size)
  features = ising_features(num_sites)
  return MaskTables(features=features, blocks=blocks, block_of=position // block_size,
                    position=position, block_features=features[blocks])


def log_joint(theta: np.ndarray, features: np.ndarray) -> np.ndarray:
  """Normalised log p_theta over all states: theta [..., P] -> [..., M] (NumPy float64)."""
  energies = np.asarray(theta) @ features.T
  return energies - distributions.logsumexp(energies, axis=-1, keepdims=True)


def _logsumexp(x, xp):
  """logsumexp over the last axis of finite values, for xp in (numpy, jax.numpy)."""
  top = xp.max(x, axis=-1, keepdims=True)
  return xp.log(xp.sum(xp.exp(x - top), axis=-1)) + top[..., 0]


def objective(theta, weights, tables: MaskTables, ridge: float, xp=np):
  """L_k(theta) per data set: theta [D, P], weights [D, M] -> [D].

  `xp` is numpy or jax.numpy (the fits run the jitted jax.numpy version in float64).
  """
  energies = theta @ tables.features.T
  block_lse = _logsumexp(energies[:, tables.blocks], xp)  # [D, C, B]
  mass = weights[:, tables.blocks].sum(-1)
  return (xp.sum(weights * energies, -1)
          - xp.sum(mass * block_lse, (-1, -2)) / tables.blocks.shape[0]
          - 0.5 * ridge * xp.sum(theta * theta, -1))


def _block_moments(theta, tables, xp):
  """p_theta(y | y's block) laid out as blocks [D, C, B, V], and each block's mean of phi
  [D, C, B, P]."""
  block_energies = (theta @ tables.features.T)[:, tables.blocks]
  in_block = xp.exp(block_energies - _logsumexp(block_energies, xp)[..., None])
  return in_block, xp.einsum("dcbv,cbvp->dcbp", in_block, tables.block_features)


def derivatives(theta, weights, tables: MaskTables, ridge: float, xp=np):
  """Gradient [D, P] and Hessian [D, P, P] of L_k, in closed form; `xp` as in `objective`.

  With W_b the data mass of block b and mu_b its mean of phi: the gradient is
  sum_x w(x) phi(x) - mean_S sum_b W_b mu_b, and the Hessian is -mean_S sum_b W_b Cov_b[phi],
  i.e. -mean_S (sum_y c(y) phi(y) phi(y)^T - sum_b W_b mu_b mu_b^T), c(y) = W_b p(y | b).
  """
  num_subsets = tables.blocks.shape[0]
  in_block, means = _block_moments(theta, tables, xp)
  mass = weights[:, tables.blocks].sum(-1)  # [D, C, B]
  gradient = (weights @ tables.features
              - xp.einsum("dcb,dcbp->dp", mass, means) / num_subsets - ridge * theta)
  weighted = (mass[..., None] * in_block).reshape(theta.shape[0], num_subsets, -1)
  state_mass = xp.take_along_axis(weighted, tables.position[None], axis=-1).sum(1)  # [D, M]
  second_moment = xp.einsum("dm,mp,mq->dpq", state_mass, tables.features, tables.features)
  mean_outer = xp.einsum("dcb,dcbp,dcbq->dpq", mass, means, means)
  hessian = -(second_moment - mean_outer) / num_subsets - ridge * xp.eye(theta.shape[-1])
  return gradient, hessian


_jit_objective = jax.jit(objective, static_argnames="xp")
_jit_derivatives = jax.jit(derivatives, static_argnames="xp")


def per_sample_gradients(theta: np.ndarray, tables: MaskTables) -> np.ndarray:
  """d/dtheta mean_{|S| = k} log p_theta(x_S | x_{-S}) at each state x: theta [P] -> [M, P].

  For an exponential family it is phi(x) - mean_S mu(S, x_{-S}), mu the mean of phi over x's block.
  """
  _, means = _block_moments(theta[None], tables, np)
  subset_index = np.arange(tables.blocks.shape[0])[:, None]
  return tables.features - means[0][subset_index, tables.block_of].mean(0)


def fit(weights: np.ndarray, tables: MaskTables, ridge: float,
        init: Optional[np.ndarray] = None, tolerance: float = 1e-14, max_steps: int = 50):
  """Maximises L_k for each data set by Newton's method with step halving.

  Args:
    weights: empirical distributions, [D, M].
    tables: `MaskTables` of the k in question.
    ridge: L2 weight (keeps estimates finite when a small sample sits on the boundary).
    init: starting points [D, P] (e.g. another k's estimates); zeros when None. L_k is concave,
      so the maximiser does not depend on it, only the number of steps does.
    tolerance: a data set is done once its Newton decrement g^T (-H)^-1 g is below it (or no
      step improves L_k any more: converged to float64 precision).
    max_steps: Newton steps at most.

  Returns:
    (theta_hat [D, P], final gradient norm [D]), NumPy float64.
  """
  with jax.enable_x64(True):
    tables = jax.tree_util.tree_map(jnp.asarray, tables)
    weights = jnp.asarray(weights, jnp.float64)
    theta = (np.zeros((weights.shape[0], tables.features.shape[1])) if init is None
             else np.array(init, np.float64))
    value = np.array(_jit_objective(theta, weights, tables, ridge, xp=jnp))
    stalled = np.zeros(len(theta), bool)
    for _ in range(max_steps):
      gradient, hessian = map(np.asarray,
                              _jit_derivatives(theta, weights, tables, ridge, xp=jnp))
      direction = -np.linalg.solve(hessian, gradient[..., None])[..., 0]
      active = (np.sum(gradient * direction, -1) >= tolerance) & ~stalled
      if not np.any(active):
        break
      step = active.astype(np.float64)
      while np.any(step > 1e-6):  # Halve until each data set improves (L_k is concave).
        candidate = theta + step[:, None] * direction
        new_value = np.asarray(_jit_objective(candidate, weights, tables, ridge, xp=jnp))
        better = (new_value >= value) & (step > 0)
        theta[better], value[better] = candidate[better], new_value[better]
        step = np.where(better, 0.0, 0.5 * step)
      stalled |= step > 0
    gradient, _ = _jit_derivatives(theta, weights, tables, ridge, xp=jnp)
    return theta, np.linalg.norm(np.asarray(gradient), axis=-1)


def asymptotic_covariance(theta: np.ndarray, tables: MaskTables) -> np.ndarray:
  """The k-MPL estimator's asymptotic covariance at the truth theta [P]: [P, P].

  sqrt(n) (theta_hat - theta) -> N(0, H^-1 V H^-1), H the Hessian of the population objective and
  V the covariance of the per-sample gradient (the sandwich formula), both exact sums over states.
  """
  prob = np.exp(log_joint(theta, tables.features))
  per_sample = per_sample_gradients(theta, tables)
  _, hessian = derivatives(theta[None], prob[None], tables, 0.0)
  inverse = np.linalg.inv(hessian[0])
  return inverse @ (per_sample.T @ (prob[:, None] * per_sample)) @ inverse


def fisher_information(theta: np.ndarray, features: np.ndarray) -> np.ndarray:
  """Cov_p_theta[phi], the Fisher information of the full model at theta [P]: [P, P]."""
  prob = np.exp(log_joint(theta, features))
  centred = features - prob @ features
  return centred.T @ (prob[:, None] * centred)
