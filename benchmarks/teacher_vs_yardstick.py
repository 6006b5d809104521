"""The Multi30k AR teacher next to the yardstick (a plain Flax Transformer), same machine, same day.

    python ../shared/tools/plain_flax_transformer.py --budget_s 3600 --work_dir YARDSTICK
    padir eval --checkpoint_dir ROOT/teacher --task multi30k_en_de_ar --module tasks.multi30k \
      --split validation --max_examples 300 --checkpoint_step all --output ROOT/teacher_val300 \
      --gin.ARDecodeConfig.decode_method="'greedy'"
    python -m benchmarks.teacher_vs_yardstick --yardstick YARDSTICK --teacher ROOT/teacher \
      --teacher_validation ROOT/teacher_val300 --teacher_test_bleu 31.77 --output DIR

Both learning curves are greedy BLEU on the first 300 validation sentences against training
minutes: the yardstick's own `VAL@` lines (it counts the seconds of its train steps), the
teacher's kept checkpoints at the seconds `train_time.json` recorded for them (wall time of
`padir train`, its validation and checkpointing included). Writes `teacher_vs_yardstick.json`,
`.md` and `.png` into --output.
"""
import argparse
import json
import os
import re
import sys
from typing import Any, Dict, Optional, Sequence

if __package__ in (None, ""):  # `python benchmarks/teacher_vs_yardstick.py`
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from padir import timing  # pylint: disable=g-import-not-at-top

_VALIDATION = re.compile(r"^VAL@(\d+) (\d+)s BLEU ([\d.]+)")


def yardstick_run(work_dir: str) -> Dict[str, Any]:
  """The yardstick's result.json and its validation curve (from log.txt)."""
  with open(os.path.join(work_dir, "result.json"), encoding="utf-8") as f:
    result = json.load(f)
  curve = []
  with open(os.path.join(work_dir, "log.txt"), encoding="utf-8") as f:
    for line in f:
      match = _VALIDATION.match(line)
      if match:
        curve.append({"step": int(match[1]), "minutes": int(match[2]) / 60,
                      "validation_bleu": float(match[3])})
  return {"steps": result["steps"], "train_minutes": result["train_seconds"] / 60,
          "target_tokens_per_s": result["target_tokens_per_s"],
          "test_bleu": result.get("test_2016_flickr_bleu"), "curve": curve}


def teacher_run(model_dir: str, validation_dir: str,
                test_bleu: Optional[float]) -> Dict[str, Any]:
  """The teacher's kept checkpoints: validation BLEU (a `padir eval` output dir) at the
  training minutes of `train_time.json`."""
  with open(os.path.join(model_dir, "train_time.json"), encoding="utf-8") as f:
    seconds = {int(step): s for step, s in json.load(f).items()}
  with open(os.path.join(validation_dir, "results.json"), encoding="utf-8") as f:
    evaluations = json.load(f)["evaluations"]
  curve = sorted(({"step": e["step"], "minutes": seconds[e["step"]] / 60,
                   "validation_bleu": e["bleu"]} for e in evaluations if e["step"] in seconds),
                 key=lambda point: point["step"])
  with open(os.path.join(model_dir, "metrics.jsonl"), encoding="utf-8") as f:
    rows = [json.loads(line) for line in f if line.strip()]
  rates = [r["tokens_per_second"] for r in rows if r.get("split") == "train"
           and "tokens_per_second" in r]
  last = max(seconds)
  return {"steps": last, "train_minutes": seconds[last] / 60,
          "target_tokens_per_s": sum(rates) / len(rates) if rates else None,
          "test_bleu": test_bleu, "curve": curve}


def markdown(report: Dict[str, Any]) -> str:
  lines = ["# Multi30k AR teacher vs the yardstick (greedy BLEU)", "",
           f"- date: {report['date']}; machine: {report['machine']['processor']} "
           f"({report['machine']['cpu_count']} cores)", "",
           "| system | steps | training minutes | target tokens/s | test_2016_flickr BLEU |",
           "|---|---:|---:|---:|---:|"]
  for name in ("teacher", "yardstick"):
    run = report[name]
    rate, bleu = run["target_tokens_per_s"], run["test_bleu"]
    lines.append(f"| {name} | {run['steps']} | {run['train_minutes']:.1f} | "
                 f"{'—' if rate is None else f'{rate:.0f}'} | "
                 f"{'—' if bleu is None else f'{bleu:.2f}'} |")
  lines += ["", "Validation BLEU (first 300 sentences) by training minutes:", "",
            "| system | step | minutes | validation BLEU |", "|---|---:|---:|---:|"]
  for name in ("teacher", "yardstick"):
    for point in report[name]["curve"]:
      lines.append(f"| {name} | {point['step']} | {point['minutes']:.1f} | "
                   f"{point['validation_bleu']:.2f} |")
  return "\n".join(lines) + "\n"


def plot(report: Dict[str, Any], path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6, 4))
  for name, marker in (("teacher", "o"), ("yardstick", "s")):
    curve = report[name]["curve"]
    line, = ax.plot([p["minutes"] for p in curve], [p["validation_bleu"] for p in curve],
                    marker=marker, label=f"{name}: validation (300)")
    if report[name]["test_bleu"] is not None:
      ax.scatter([report[name]["train_minutes"]], [report[name]["test_bleu"]], marker="*", s=120,
                 color=line.get_color(), label=f"{name}: test_2016_flickr")
  ax.set_xlabel("training minutes")
  ax.set_ylabel("greedy BLEU")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.teacher_vs_yardstick",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--yardstick", required=True, help="the yardstick's --work_dir")
  parser.add_argument("--teacher", required=True, help="the teacher's model dir")
  parser.add_argument("--teacher_validation", required=True,
                      help="`padir eval` output dir of the teacher on 300 validation sentences")
  parser.add_argument("--teacher_test_bleu", type=float, default=None,
                      help="the teacher's greedy test BLEU (from benchmarks/multi30k_report.py)")
  parser.add_argument("--output", required=True)
  args = parser.parse_args(argv)
  report = {"date": timing.now(), "machine": timing.machine(),
            "teacher": teacher_run(args.teacher, args.teacher_validation, args.teacher_test_bleu),
            "yardstick": yardstick_run(args.yardstick)}
  os.makedirs(args.output, exist_ok=True)
  stem = os.path.join(args.output, "teacher_vs_yardstick")
  with open(stem + ".json", "w", encoding="utf-8") as f:
    json.dump(report, f, indent=1)
  with open(stem + ".md", "w", encoding="utf-8") as f:
    f.write(markdown(report))
  plot(report, stem + ".png")
  print(markdown(report))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
