"""`padir theory`: the paper's theory as exact experiments on small enumerable distributions.

  padir theory --experiment NAME|all --output DIR [--seed S] [--small]

Each experiment writes NAME.json (config + numbers), NAME.png and NAME.md (tables) to DIR; `all`
also writes summary.md. Experiments (one module each):

  masking_ratio     1. k-masked pseudo-likelihood: sample efficiency vs k (k = N is MLE)
  parallel_updates  2. product-form parallel updates vs exact block Gibbs: TV vs steps
  conditioning      3. TV after T parallel passes vs the strength of the conditioning field
  stutter           4. adjacent duplicates under parallel argmax refinement, +/- remasking

Pure NumPy (plus JAX, float64, for the k-MPL fits); no data, no network, no seqio/TensorFlow.
"""
import importlib
import json
import os
import time

EXPERIMENTS = ("masking_ratio", "parallel_updates", "conditioning", "stutter")


def run_experiment(name: str, output: str, seed: int, small: bool) -> dict:
  """Runs one experiment and writes NAME.json, NAME.png, NAME.md under `output`.

  Returns:
    {"name", "headline", "seconds"}.
  """
  module = importlib.import_module(f"padir.theory.{name}")
  start = time.time()
  report = module.run(seed, small)
  seconds = time.time() - start
  with open(os.path.join(output, f"{name}.json"), "w") as f:
    json.dump(report, f, indent=1)
  module.plot(report, os.path.join(output, f"{name}.png"))
  with open(os.path.join(output, f"{name}.md"), "w") as f:
    f.write(module.markdown(report) + f"\n![{name}]({name}.png)\n")
  return {"name": name, "headline": module.headline(report), "seconds": seconds}


def summary(runs: list, seed: int, small: bool) -> str:
  """summary.md: one headline and link per experiment."""
  lines = ["# PaDIR theory experiments", "",
           f"`padir theory --experiment all --seed {seed}{' --small' if small else ''}`", ""]
  for run in runs:
    lines += [f"## {run['name']} ({run['seconds']:.1f} s)", "", run["headline"], "",
              f"[{run['name']}.md]({run['name']}.md) · ![{run['name']}]({run['name']}.png)", ""]
  return "\n".join(lines)
