"""Experiment 4: stutter (repeated adjacent tokens) under parallel argmax refinement.

The paper's explanation: positions predicted in the same pass cannot see each other's
new values; when two neighbours are each uncertain between the same tokens, both pick the same
one, even though the target never repeats a token. Re-masking a token equal to its left
neighbour and re-predicting it (now seeing its neighbours) removes most of them.

Set-up: B random chains of length L over V tokens whose target forbids equal neighbours
(pairwise log-potential -penalty on equal tokens) with random unary potentials of scale sigma
(the source: larger sigma, more peaked conditionals). Parallel argmax refinement (`chain.refine`)
from an all-masked input or from random tokens, with and without stutter remasking. Reported:
the duplicate rate (fraction of adjacent equal pairs) after each pass, and the fraction of
outputs equal to the target's most probable sequence (MAP), and their mean log-probability gap to
the MAP per position.
"""
import numpy as np
from matplotlib.figure import Figure

from padir.theory import chain

DEFAULT_CONFIG = {
    "length": 12,
    "vocab_size": 6,
    "num_chains": 1000,
    "penalty": 10.0,
    "unary_scales": [0.5, 1.0, 2.0],
    "num_iterations": 8,
}
SMALL_CONFIG = dict(DEFAULT_CONFIG, length=8, num_chains=300, unary_scales=[1.0],
                    num_iterations=4)
STARTS = ("masks", "random")


def run(seed: int, small: bool = False) -> dict:
  """Runs the experiment; returns a JSON-ready dict {"config", "seed", "results"}.

  results["sigma=S/start"] = {"plain": [T] duplicate rate per pass, "remask": [T], and after the
  last pass "plain_map_match" / "remask_map_match" (fraction equal to the MAP) and "plain_gap" /
  "remask_gap" (mean (log p(MAP) - log p(output)) / L)}.
  """
  config = SMALL_CONFIG if small else DEFAULT_CONFIG
  rng = np.random.default_rng(seed)
  size = (config["num_chains"], config["length"], config["vocab_size"])
  pairwise = -config["penalty"] * np.eye(config["vocab_size"])
  results = {}
  for scale in config["unary_scales"]:
    unary = scale * rng.standard_normal(size)
    best = chain.map_sequence(unary, pairwise)
    best_log_p = chain.log_potential(unary, pairwise, best)
    starts = {"masks": np.full(size[:2], chain.MASK),
              "random": rng.integers(0, config["vocab_size"], size[:2])}
    for start in STARTS:
      result = {}
      for variant, remask in (("plain", False), ("remask", True)):
        tokens = chain.refine(unary, pairwise, starts[start], config["num_iterations"], remask)
        result[variant] = chain.duplicate_rate(tokens).mean(-1).tolist()
        result[variant + "_map_match"] = float(np.mean(np.all(tokens[-1] == best, -1)))
        gap = best_log_p - chain.log_potential(unary, pairwise, tokens[-1])
        result[variant + "_gap"] = float(np.mean(gap) / config["length"])
      results[f"sigma={scale}/{start}"] = result
  return {"config": config, "seed": seed, "results": results}


def plot(report: dict, path: str) -> None:
  """Duplicate rate vs pass, solid without and dashed with remasking; one panel per start."""
  figure = Figure(figsize=(10, 4), dpi=80)
  axes = figure.subplots(1, len(STARTS))
  for axis, start in zip(axes, STARTS):
    for i, scale in enumerate(report["config"]["unary_scales"]):
      result = report["results"][f"sigma={scale}/{start}"]
      passes = np.arange(1, len(result["plain"]) + 1)
      axis.plot(passes, result["plain"], "o-", color=f"C{i}", label=f"sigma={scale}")
      axis.plot(passes, result["remask"], "x--", color=f"C{i}", label=f"sigma={scale} + remask")
    axis.set_xlabel("parallel pass")
    axis.set_title(f"start: {start}")
    axis.legend(fontsize=8, loc="center right")
  axes[0].set_ylabel("adjacent duplicate rate")
  figure.tight_layout()
  figure.savefig(path)


def headline(report: dict) -> str:
  """One paragraph: mean duplicate rate after the last pass, with and without remasking."""
  results = report["results"].values()
  plain = np.mean([r["plain"][-1] for r in results])
  remask = np.mean([r["remask"][-1] for r in results])
  return (f"Duplicate rate after the last pass (mean over settings; the target's is ~0): "
          f"{plain:.4f} without, {remask:.4f} with stutter remasking.")


def markdown(report: dict) -> str:
  """Per setting: duplicate rate after each pass with and without remasking, and MAP match."""
  config = report["config"]
  passes = range(1, config["num_iterations"] + 1)
  lines = ["# Experiment 4: stutter under parallel argmax refinement", "",
           f"{config['num_chains']} chains, L = {config['length']}, V = {config['vocab_size']}, "
           f"equal neighbours penalised by {config['penalty']} nats, seed {report['seed']}.", "",
           headline(report), "",
           "| setting | remask | " + " | ".join(f"dup T={t}" for t in passes)
           + " | = MAP | log p gap / pos |",
           "|" + "---|" * (4 + config["num_iterations"])]
  for name, result in report["results"].items():
    for variant in ("plain", "remask"):
      lines.append(f"| {name} | {variant == 'remask'} | "
                   + " | ".join(f"{v:.4f}" for v in result[variant])
                   + f" | {result[variant + '_map_match']:.3f}"
                   + f" | {result[variant + '_gap']:.3f} |")
  return "\n".join(lines) + "\n"
