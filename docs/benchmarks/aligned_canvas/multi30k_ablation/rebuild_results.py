"""Rebuilds results.json / results.md / tradeoff.png of the 2026-12-07 ablation report from its log
and hypotheses. The report (`python -m benchmarks.multi30k_report ... --output
runs/m30k/results_ablation`) evaluated every system, then failed while plotting learning curves
for a one-checkpoint student dir, before writing its results (fixed since: the results are now
written first). Scores are recomputed from the hypotheses; the speeds are the log's lines;
mean_iterations was not logged (None).

  python docs/benchmarks/aligned_canvas/multi30k_ablation/rebuild_results.py \
      runs/m30k/results_ablation.log runs/m30k/results_ablation
"""
import os
import re
import sys

import tasks.multi30k  # pylint: disable=unused-import  (registers the task)
from padir import evaluation, files, reporting, timing

LINE = re.compile(r"INFO padir.reporting\] (\S+)\s+BLEU\s+([\d.]+).*batch-1\s+([\d.]+) ms\s+"
                  r"batch-64\s+([\d.]+) sentences/s")


def main(log_path: str, output: str) -> None:
  _, references = reporting.task_texts("multi30k_en_de_ar", "test_2016_flickr")
  rows = []
  with open(log_path, encoding="utf-8") as f:
    for match in map(LINE.search, f):
      if not match:
        continue
      name, logged_bleu, latency, throughput = match.groups()
      with open(os.path.join(output, "hypotheses", f"{name}.txt"), encoding="utf-8") as h:
        hypotheses = h.read().split("\n")[:len(references)]
      scores = evaluation.score_hypotheses(hypotheses, references)
      assert abs(scores["bleu"] - float(logged_bleu)) < 0.006, (name, scores["bleu"])
      model = "ar" if name.startswith("ar_") else "padir"
      rows.append({"name": name, "model": model,
                   "iterations": None if model == "ar" else int(name.rsplit("@", 1)[1]),
                   **scores, "mean_iterations": None, "latency_ms_batch1": float(latency),
                   "sentences_per_s_batch64": float(throughput)})
  greedy = rows[0]["latency_ms_batch1"]
  for row in rows:
    row["speedup_batch1"] = greedy / row["latency_ms_batch1"]
  results = {
      "title": "multi30k_en_de_ar test_2016_flickr: the student ablation (rebuilt from the log)",
      "command": ("python -m benchmarks.multi30k_report --root runs/m30k --students ctc400,"
                  "noglance400,beam400,mp820,ctc750,beam750,ctc850 --iterations 1,2,4 "
                  "--padir_decoder_params '{\"blank_penalty\": 2.0}' --output "
                  "runs/m30k/results_ablation"),
      "date": "2026-12-07 08:33-08:58 UTC", "machine": timing.machine(),
      "load_average": {"evaluate_start": [2.04, 2.43, 3.14], "evaluate_end": None},
      "test_task": "multi30k_en_de_ar", "test_split": "test_2016_flickr",
      "test_sentences": len(references), "padir_decoder_params": {"blank_penalty": 2.0},
      "latency_sentences": 100, "systems": rows, "checks": reporting.checks(rows)}
  files.write_json(os.path.join(output, reporting.RESULTS_JSON), results)
  files.write_text(os.path.join(output, reporting.RESULTS_MD), reporting.systems_markdown(results))
  reporting.tradeoff_plot(rows, os.path.join(output, reporting.TRADEOFF_PNG), results["title"])


if __name__ == "__main__":
  main(*sys.argv[1:])
