"""Which length candidate to keep refining after pass 1: rules compared offline, from two decodes.

  PYTHONPATH=. python docs/benchmarks/pruning_length_prior/prune_rules.py --student runs/exp/mp1500 \
      --task builtin_demo_ar --module tasks.builtin --split validation --output rules.json

Decode A: one pass, C candidates, every candidate returned with its mean token log-prob (alpha 0)
and its length's log-prob under the length predictor. Decode B: K passes (no early exit), all C
candidates refined and returned. Under mask-predict with a [MASK] canvas and argmax choice a
candidate's refinement does not depend on the others, so a rule that picks one candidate from A's
information yields that candidate's output in B: what `keep_candidates_after_first_pass=1` with
that score decodes (checked on the demo: the rule 'mean + 0.1 x length log-prob' gives the BLEU
`padir eval` gives with `length_score_weight=0.1`). sacreBLEU of each rule's choices.
"""
import argparse
import importlib
import json

import numpy as np

from padir import evaluation, reporting, translator as translator_lib


def rule_scores(first, lengths, length_log_probs, final):
  """{rule: scores [N, C]} (higher is kept); `first` pass-1 mean log-probs (-inf: invalid),
  `lengths` [N, C] pieces, `final` the K-pass scores."""
  rules = {"keep all: final score": final, "keep all: final + 0.1 x length log-prob":
           final + 0.1 * length_log_probs,
           "the likeliest length": np.broadcast_to(-np.arange(first.shape[1]), first.shape)}
  for alpha in (0.0, 0.5, 1.0, 2.0, 4.0):
    rules[f"pass 1: mean, brevity alpha {alpha}"] = first / ((5 + lengths) / 6) ** alpha
  for gamma in (0.01, 0.05):
    rules[f"pass 1: mean + {gamma} x length"] = first + gamma * lengths
  for weight in (0.02, 0.05, 0.1, 0.2, 0.5):
    rules[f"pass 1: mean + {weight} x length log-prob"] = first + weight * length_log_probs
  for weight in (0.5, 1.0, 2.0):
    rules[f"pass 1: sum + {weight} x length log-prob"] = first * lengths + weight * length_log_probs
  return {name: np.where(np.isfinite(first), s, -np.inf) for name, s in rules.items()}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--student", required=True)
  parser.add_argument("--task", required=True)
  parser.add_argument("--module", required=True)
  parser.add_argument("--split", default="validation")
  parser.add_argument("--iterations", type=int, default=4)
  parser.add_argument("--candidates", type=int, default=3)
  parser.add_argument("--output", required=True)
  args = parser.parse_args()
  importlib.import_module(args.module)
  sources, references = reporting.task_texts(args.task, args.split)
  translator = translator_lib.Translator.from_checkpoint(args.student)
  common = {"top_k_lengths": args.candidates, "return_all_candidates": True, "early_exit": False,
            "scoring": "mean", "length_score_weight": 0.0}  # The rules weigh the rest.
  first = translator.predict(sources, {**common, "num_decode_iterations": 1, "alpha": 0.0})
  final = translator.predict(sources, {**common, "num_decode_iterations": args.iterations})
  first_scores = np.stack([p.aux["candidate_scores"] for p in first])
  lengths = np.stack([(p.aux["candidates"] != 0).sum(-1) for p in first])  # EOS included.
  length_log_probs = np.stack([p.aux["candidate_length_log_probs"] for p in first])
  final_scores = np.stack([p.aux["candidate_scores"] for p in final])
  texts = [[translator.text(c) for c in p.aux["candidates"]] for p in final]
  rows = {}
  for name, scores in rule_scores(first_scores, lengths, length_log_probs, final_scores).items():
    pick = scores.argmax(1)
    rows[name] = {"bleu": evaluation.bleu([t[i] for t, i in zip(texts, pick)], references).score,
                  "mean_pieces": float(lengths[np.arange(len(pick)), pick].mean())}
    print(f"{rows[name]['bleu']:6.2f} {rows[name]['mean_pieces']:6.2f}  {name}")
  with open(args.output, "w") as f:
    json.dump({"args": vars(args), "sentences": len(sources), "rows": rows}, f, indent=1)


if __name__ == "__main__":
  main()
