"""`benchmarks.decode_speed`'s report: the headline numbers, decode_speed.md, decode_speed.png."""
import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

from benchmarks import roofline


def _fmt(x: Optional[float], digits: int = 1) -> str:
  return "—" if x is None else f"{x:.{digits}f}"


def headline(results: List[Dict[str, Any]], sweep: List[Dict[str, Any]],
             batch_sizes: Sequence[int]) -> List[Dict[str, Any]]:
  """The numbers a reader looks for first: PaDIR@4 and @1 against AR greedy at batch 1 and @4 at
  the largest batch (speedups, by length beam), and each system's latency growth over the
  length sweep. Measured only: comparing them with a goal is the caller's business."""

  def speedup(batch_size, iterations, length_beam=1):
    for r in results:
      if (r["system"] == "padir" and r["batch_size"] == batch_size
          and r["iterations"] == iterations and r["length_beam"] == length_beam):
        return r["speedup_vs_ar_greedy"]
    return None

  numbers = []
  large = 64 if 64 in batch_sizes else max(batch_sizes)
  points = [("batch 1: PaDIR@4 vs AR greedy", 1, 4), ("batch 1: PaDIR@1 vs AR greedy", 1, 1)]
  if large > 1:
    points.append((f"batch {large}: PaDIR@4 vs AR greedy", large, 4))
  for name, bs, k in points:
    for lb in (1, 3):
      value = speedup(bs, k, lb)
      if value is not None:
        numbers.append({"point": f"{name} (length beam {lb}): speedup", "measured": value})
  by_system: Dict[str, List[Dict[str, Any]]] = {}
  for s in sweep:
    by_system.setdefault(s["system"], []).append(s)
  for system, rows in by_system.items():
    rows = sorted(rows, key=lambda r: r["target_length"])
    if len(rows) >= 2:
      numbers.append({
          "point": f"length scaling {rows[0]['target_length']} -> {rows[-1]['target_length']} "
                   f"tokens: {system} latency growth",
          "measured": rows[-1]["latency_ms_p50"] / rows[0]["latency_ms_p50"]})
  return numbers


def write_markdown(path: str, report: Dict[str, Any]):
  lines = [f"# Decoding speed: AR vs PaDIR ({report['model']['preset']}, "
           f"{report['model']['dtype']})", ""]
  m = report["machine"]
  lines += [f"- Date: {report['date']}",
            f"- Command: `{report['command']}`",
            f"- Machine: {m['platform']} / {m['device_kind']} ({m['cpu_count']} CPU cores, "
            f"{m['processor']}, load average at start {m['load_average_at_start']}), "
            f"jax {m['jax']}",
            f"- Model: `{report['model']['preset']}` {report['model']['standard']}; "
            f"deep-shallow variant {report['model'].get('deep_shallow')}; vocabulary "
            f"{report['model']['vocab_size']}",
            "- Weights: " + "; ".join(f"{k}: {v}" for k, v in report["weights"].items()),
            f"- Sentences: {report['sentences']['source']}; mean source/target length "
            f"{report['sentences']['mean_source_length']:.1f}/"
            f"{report['sentences']['mean_target_length']:.1f} pieces",
            f"- Batch sizes: {report['batch_sizes']} (largest: {report['largest_batch']['how']})",
            f"- Protocol: {report['protocol']}", ""]
  lines += ["## Headline numbers", "", "| point | measured |", "|---|---:|"]
  lines += [f"| {h['point']} | {h['measured']:.2f}x |" for h in report["headline"]]
  lines += ["", "## Results", "",
            "Speedup = AR greedy (standard model) median latency / the system's, at the same "
            "batch size; > 1 is faster than AR greedy.", ""]
  header = ("| batch | system | iterations | length beam | T | latency p50 (ms) | p90 (ms) | "
            "ms / sentence | sentences/s | speedup vs AR greedy |")
  lines += [header, "|" + "---|" * 10]
  for r in report["results"]:
    lines.append(
        f"| {r['batch_size']} | {r['system']} | {r['iterations'] or '—'} | {r['length_beam']} | "
        f"{r['target_length']} | {r['latency_ms_p50']:.1f} | {r['latency_ms_p90']:.1f} | "
        f"{r['latency_ms_per_sentence_p50']:.2f} | {r['sentences_per_s']:.1f} | "
        f"{_fmt(r['speedup_vs_ar_greedy'], 2)}x |")
  if report["length_sweep"]:
    lines += ["", "## Length scaling (batch 1, source length = target length)", "",
              "| system | iterations | target length | latency p50 (ms) | p90 (ms) |",
              "|---|---|---|---|---|"]
    for s in report["length_sweep"]:
      lines.append(f"| {s['system']} | {s['iterations'] or '—'} | {s['target_length']} | "
                   f"{s['latency_ms_p50']:.1f} | {s['latency_ms_p90']:.1f} |")
  if report.get("roofline"):
    roof = report["roofline"]
    lines += ["", "## Roofline: one AR greedy step and one PaDIR pass", "",
              f"This run's dense {roof.get('matmul_dtype', 'float32')} matmul rate "
              f"{roof['matmul_flop_s'] / 1e9:.1f} GFLOP/s "
              f"and memory bandwidth {roof['memory_bytes_s'] / 1e9:.1f} GB/s "
              "(`padir.timing`); a bound is max(FLOPs / rate, bytes / bandwidth). A pass is "
              "(latency at the most iterations - at 1) / their difference; a step is AR greedy's "
              "latency / T (the encoder included); both from each point's fastest call, as the "
              "rates are.", "",
              "| batch | length beam | T | AR step ms | its FLOP / byte bound ms | PaDIR pass ms "
              "| its FLOP / byte bound ms | pass / its bound | pass / step | PaDIR@K vs AR greedy "
              "(fastest calls) | its ceiling (K) | share of the ceiling |", "|" + "---|" * 12]
    for r in roof["rows"]:
      step, pass_ = r["ar_step"], r["padir_pass"]
      lines.append(
          f"| {r['batch_size']} | {r['length_beam']} | {r['target_length']} | "
          f"{step['measured_ms']:.2f} | {step['flop_bound_ms']:.3f} / {step['byte_bound_ms']:.3f} "
          f"| {pass_['measured_ms']:.2f} | {pass_['flop_bound_ms']:.3f} / "
          f"{pass_['byte_bound_ms']:.3f} | "
          f"{pass_['measured_ms'] / roofline.bound_ms(pass_):.2f}x | "
          f"{r['pass_over_step']:.1f} | {r['speedup_fastest']:.2f}x | {r['ceiling']:.2f}x "
          f"({r['iterations']}) | {100 * r['share_of_ceiling']:.0f} % |")
    if roof.get("row_rates"):
      lines += ["", "FLOP bounds above from the rates of the decoder's own products at each "
                "call's row count (`benchmarks/row_cost.py`, the model's dtype, the fastest of "
                f"{roof['row_rate_repeats']} calls), GFLOP/s:", "",
                "| d_in → d_out | " + " | ".join(
                    f"{n} rows" for n in sorted({r['rows'] for r in roof['row_rates']})) + " |",
                "|---|" + "---:|" * len({r["rows"] for r in roof["row_rates"]})]
      for d_in, d_out in dict.fromkeys((r["d_in"], r["d_out"]) for r in roof["row_rates"]):
        lines.append(f"| {d_in} → {d_out} | " + " | ".join(
            f"{r['flop_rate'] / 1e9:.1f}" for r in roof["row_rates"]
            if (r["d_in"], r["d_out"]) == (d_in, d_out)) + " |")
  if report.get("notes"):
    lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


def pyplot(path: str):
  """matplotlib.pyplot on the Agg backend, or None (a warning that `path` is not written)."""
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  except ImportError:
    logging.warning("matplotlib not installed: no %s", path)
    return None
  return plt


def write_plot(path: str, report: Dict[str, Any]) -> bool:
  plt = pyplot(path)
  if plt is None:
    return False
  fig, axes = plt.subplots(1, 2, figsize=(13, 5))
  ax = axes[0]
  series: Dict[str, List[Tuple[int, float]]] = {}
  for r in report["results"]:
    label = r["system"] if r["iterations"] is None else (
        f"{r['system']}@{r['iterations']} lb{r['length_beam']}")
    series.setdefault(label, []).append((r["batch_size"], r["speedup_vs_ar_greedy"]))
  colours = plt.get_cmap("tab20")
  for i, (label, points) in enumerate(series.items()):
    points.sort()
    style = "--" if "deep_shallow" in label else ("-" if "padir" in label else ":")
    ax.plot([p[0] for p in points], [p[1] for p in points], style, marker="o", label=label,
            color=colours(i % 20), linewidth=2.5 if label.startswith("ar_greedy") else 1.5)
  ax.axhline(1.0, color="black", linewidth=0.8)
  ax.set_xscale("log", base=2)
  ax.set_yscale("log", base=2)
  ax.set_xlabel("batch size")
  ax.set_ylabel("speedup vs AR greedy (same batch size)")
  ax.set_title(f"{report['model']['preset']} {report['model']['dtype']}, "
               f"{report['machine']['device_kind']}")
  ax.legend(fontsize=7, ncol=2)
  ax.grid(True, which="both", alpha=0.3)
  ax = axes[1]
  sweep: Dict[str, List[Tuple[int, float]]] = {}
  for s in report["length_sweep"]:
    label = s["system"] if s["iterations"] is None else f"{s['system']}@{s['iterations']}"
    sweep.setdefault(label, []).append((s["target_length"], s["latency_ms_p50"]))
  for label, points in sweep.items():
    points.sort()
    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
  ax.set_xscale("log", base=2)
  ax.set_yscale("log")
  ax.set_xlabel("target length (tokens), batch 1")
  ax.set_ylabel("latency p50 (ms)")
  ax.set_title("length scaling")
  if sweep:
    ax.legend(fontsize=8)
  ax.grid(True, which="both", alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return True
