"""Exact transition matrices of block samplers on an enumerable model, and their propagation.

Both samplers pick a subset S of k sites uniformly at random at each step and resample x_S:

- exact block Gibbs: x_S ~ p(x_S | x_{-S}), the true joint conditional of the block. Its
  stationary distribution is p for every k; k = N is exact sampling in one step.
- product form: each i in S independently from its own single-site conditional p(x_i | x_{-i})
  given the *current* state (what one parallel pass of a masked LM does when it re-predicts k
  positions at once). Exact for k = 1 and for independent sites, biased otherwise.

Transition matrices T [M, M] (rows: current state, columns: next state, M = q^N) are built
exactly from the enumerated model; distributions evolve as pi_{t+1} = pi_t T, with no sampling.
"""
import numpy as np

from padir.theory import distributions


def block_gibbs_kernel(log_p: np.ndarray, num_sites: int, num_values: int, k: int) -> np.ndarray:
  """Random-subset exact block Gibbs on k sites: log_p [M] -> T [M, M]."""
  kernel = np.zeros((len(log_p), len(log_p)))
  subsets = distributions.subsets(num_sites, k)
  for subset in subsets:
    block = distributions.blocks(num_sites, num_values, subset)  # [B, V]
    kernel[block[:, :, None], block[:, None, :]] += distributions.softmax(log_p[block])[:, None, :]
  return kernel / len(subsets)


def product_form_kernel(model: distributions.PairwiseModel, k: int) -> np.ndarray:
  """Random-subset parallel product-form update of k sites: T [M, M].

  T(x, y) = mean_S prod_{i in S} p(y_i | x_{-i}) [y_{-S} = x_{-S}].
  """
  num_sites, num_values = model.num_sites, model.num_values
  conditionals = distributions.single_site_conditionals(
      model, distributions.all_states(num_sites, num_values))  # [M, N, q]
  assignments = distributions.all_states(k, num_values)  # [V, k]
  kernel = np.zeros((len(conditionals), len(conditionals)))
  subsets = distributions.subsets(num_sites, k)
  for subset in subsets:
    block = distributions.blocks(num_sites, num_values, subset)  # [B, V]
    local = conditionals[block][:, :, subset, :]  # [B, V (from), k, q]
    to = local[:, :, np.arange(k)[None, :], assignments]  # [B, V (from), V (to), k]
    kernel[block[:, :, None], block[:, None, :]] += np.prod(to, axis=-1)
  return kernel / len(subsets)


def propagate(initial: np.ndarray, kernel: np.ndarray, num_steps: int) -> np.ndarray:
  """pi_t for t = 0..num_steps: initial [M], kernel [M, M] -> [num_steps + 1, M]."""
  columns = np.ascontiguousarray(kernel.T)
  out = [initial]
  for _ in range(num_steps):
    # einsum, not `@`: a threaded BLAS gemv is erratic on a small shared machine.
    out.append(np.einsum("ij,j->i", columns, out[-1]))
  return np.stack(out)


def stationary(kernel: np.ndarray) -> np.ndarray:
  """The stationary distribution pi = pi T of an irreducible kernel [M, M]: [M]."""
  system = kernel.T - np.eye(len(kernel))
  system[-1] = 1.0
  rhs = np.zeros(len(kernel))
  rhs[-1] = 1.0
  return np.linalg.solve(system, rhs)
