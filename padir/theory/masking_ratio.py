"""Experiment 1: masking ratio vs sample efficiency of k-masked pseudo-likelihood (k-MPL).

The paper's claim: training a GMLM with k masked positions is k-MPL estimation, whose
asymptotic variance shrinks as k grows (k = N is maximum likelihood, the efficient estimator),
most where the k-block Gibbs chain mixes slowly, i.e. at strong coupling.

Set-up: complete-graph Ising models on N sites (P = N(N+1)/2 parameters) at weak and strong
coupling. For each sample size n, `repeats` data sets are drawn exactly from the enumerated joint
and the model is refit by k-MPL for k = 1, 2, 4, ..., N (`estimation.fit`). Reported per (n, k):
root-mean-square parameter error sqrt(E|theta_hat - theta|^2) and mean KL(p_true || p_hat), next
to the exact asymptotic predictions sqrt(tr Sigma_k / n) and tr(F Sigma_k) / (2n) from the
sandwich covariance Sigma_k (`estimation.asymptotic_covariance`); F is the Fisher information, and
tr(F Sigma_N) / 2 = P / 2 for MLE.
"""
import numpy as np
from matplotlib.figure import Figure

from padir.theory import distributions
from padir.theory import estimation

DEFAULT_CONFIG = {
    "num_sites": 8,
    "couplings": {"weak": 0.5, "strong": 1.5},
    "field": 0.2,
    "sample_sizes": [100, 300, 1000, 3000, 10000],
    "repeats": 8,
    "ridge": 1e-4,
}
SMALL_CONFIG = dict(DEFAULT_CONFIG, num_sites=5, sample_sizes=[300, 3000], repeats=4)


def mask_sizes(num_sites: int) -> list:
  """k = 1, 2, 4, ... below N, then N."""
  sizes = [2 ** i for i in range(num_sites.bit_length()) if 2 ** i < num_sites]
  return sizes + [num_sites]


def run_coupling(rng: np.random.Generator, config: dict, coupling: float) -> dict:
  """Fits every k to the same data sets drawn from one random Ising model.

  Returns:
    {"theta": truth [P], "k": [K], "asymptotic_sq_error": n * E|err|^2 per k [K],
     "asymptotic_kl": n * E KL per k [K], "rmse": [K, len(sample_sizes)], "kl": [K, S],
     "max_gradient_norm": [K]} (lists, JSON-ready).
  """
  num_sites, sizes, repeats = config["num_sites"], config["sample_sizes"], config["repeats"]
  couplings, fields = distributions.random_ising_parameters(rng, num_sites, coupling,
                                                            config["field"])
  theta = estimation.ising_theta(couplings, fields)
  features = estimation.ising_features(num_sites)
  log_p = estimation.log_joint(theta, features)
  counts = [np.bincount(rng.choice(len(log_p), size=n, p=np.exp(log_p)), minlength=len(log_p))
            for n in sizes for _ in range(repeats)]
  weights = np.stack(counts) / np.repeat(sizes, repeats)[:, None]
  fisher = estimation.fisher_information(theta, features)
  out = {"theta": theta.tolist(), "k": [], "asymptotic_sq_error": [], "asymptotic_kl": [],
         "rmse": [], "kl": [], "max_gradient_norm": []}
  estimates = None
  for k in mask_sizes(num_sites):
    tables = estimation.mask_tables(num_sites, k)
    estimates, gradient_norm = estimation.fit(weights, tables, config["ridge"], init=estimates)
    sq_error = np.sum((estimates - theta) ** 2, -1).reshape(len(sizes), repeats)
    kl = distributions.kl_divergence(log_p, estimation.log_joint(estimates, features))
    covariance = estimation.asymptotic_covariance(theta, tables)
    out["k"].append(k)
    out["asymptotic_sq_error"].append(float(np.trace(covariance)))
    out["asymptotic_kl"].append(float(np.trace(fisher @ covariance) / 2))
    out["rmse"].append(np.sqrt(sq_error.mean(1)).tolist())
    out["kl"].append(kl.reshape(len(sizes), repeats).mean(1).tolist())
    out["max_gradient_norm"].append(float(gradient_norm.max()))
  return out


def run(seed: int, small: bool = False) -> dict:
  """Runs the experiment; returns a JSON-ready dict {"config", "results": {name: ...}}."""
  return distributions.per_coupling(run_coupling, SMALL_CONFIG if small else DEFAULT_CONFIG,
                                    seed)


def plot(report: dict, path: str) -> None:
  """Parameter RMSE and KL vs n per k (markers), asymptotic predictions dashed; one column per
  coupling."""
  sizes = np.array(report["config"]["sample_sizes"], np.float64)
  names = list(report["results"])
  figure = Figure(figsize=(5 * len(names), 8), dpi=80)
  axes = figure.subplots(2, len(names), squeeze=False)
  for column, name in enumerate(names):
    result = report["results"][name]
    for i, k in enumerate(result["k"]):
      color = f"C{i}"
      axes[0, column].plot(sizes, result["rmse"][i], "o-", color=color, label=f"k={k}")
      axes[0, column].plot(sizes, np.sqrt(result["asymptotic_sq_error"][i] / sizes), "--",
                           color=color)
      axes[1, column].plot(sizes, result["kl"][i], "o-", color=color, label=f"k={k}")
      axes[1, column].plot(sizes, result["asymptotic_kl"][i] / sizes, "--", color=color)
    coupling = report["config"]["couplings"][name]
    axes[0, column].set_title(f"{name} coupling ({coupling}); dashed: asymptotic")
    axes[0, column].set_ylabel("RMS parameter error")
    axes[1, column].set_ylabel("KL(p_true || p_hat)")
    for row in range(2):
      axes[row, column].set_xscale("log")
      axes[row, column].set_yscale("log")
      axes[row, column].set_xlabel("samples n")
      axes[row, column].legend(fontsize=8)
  figure.tight_layout()
  figure.savefig(path)


def headline(report: dict) -> str:
  """One paragraph: how much k = N gains over k = 1, asymptotically, per coupling."""
  parts = []
  for name, result in report["results"].items():
    kl, sq = result["asymptotic_kl"], result["asymptotic_sq_error"]
    parts.append(f"{name} coupling: asymptotic n*KL {kl[0]:.2f} (k=1) -> {kl[-1]:.2f} "
                 f"(k=N, MLE), n*|err|^2 {sq[0]:.1f} -> {sq[-1]:.1f}")
  return "k-MPL efficiency vs k. " + "; ".join(parts) + "."


def markdown(report: dict) -> str:
  """Tables: asymptotic constants per k, then empirical RMSE / KL per (n, k)."""
  config = report["config"]
  lines = ["# Experiment 1: masking ratio vs sample efficiency (k-MPL)", "",
           f"Complete-graph Ising, N = {config['num_sites']}, "
           f"field scale {config['field']}, {config['repeats']} data sets per n, "
           f"ridge {config['ridge']}, seed {report['seed']}.", "", headline(report), ""]
  for name, result in report["results"].items():
    lines += [f"## {name} coupling ({config['couplings'][name]})", "",
              "| k | n*E|err|^2 (asympt.) | n*E KL (asympt.) | "
              + " | ".join(f"RMSE n={n}" for n in config["sample_sizes"]) + " | "
              + " | ".join(f"KL n={n}" for n in config["sample_sizes"]) + " |",
              "|" + "---|" * (3 + 2 * len(config["sample_sizes"]))]
    for i, k in enumerate(result["k"]):
      lines.append(f"| {k} | {result['asymptotic_sq_error'][i]:.2f} | "
                   f"{result['asymptotic_kl'][i]:.3f} | "
                   + " | ".join(f"{v:.3f}" for v in result["rmse"][i]) + " | "
                   + " | ".join(f"{v:.4f}" for v in result["kl"][i]) + " |")
    lines.append("")
  return "\n".join(lines)
