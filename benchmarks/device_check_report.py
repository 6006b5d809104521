"""`benchmarks.device_check`'s report: the headline against the CPU reference, device_check.md
and device_check.png."""
import argparse
from typing import Any, Dict, List, Mapping, Optional, Sequence

from benchmarks import roofline
from padir import files


def _speedup(decode: Mapping[str, Any], batch: int, iterations: int, length_beam: int = 1):
  for r in decode["results"]:
    if (r["system"] == "padir" and r["batch_size"] == batch and r["iterations"] == iterations
        and r["length_beam"] == length_beam):
      return r["speedup_vs_ar_greedy"]
  return None


def _latency(decode: Mapping[str, Any], system: str, batch: int) -> Optional[float]:
  for r in decode["results"]:
    if r["system"] == system and r["batch_size"] == batch:
      return r["latency_ms_p50"]
  return None


def headline(records: Sequence[Mapping[str, Any]], args: argparse.Namespace
             ) -> List[Dict[str, Any]]:
  """The numbers a reader looks for first, at the largest decoding / training size of the plan
  (`base` on the GPU): PaDIR's speedups over AR greedy, the train steps' MFU, whether the tokens
  equal the CPU reference; a missing part's is None ('not measured'). Measured only: comparing
  them with a goal is the caller's business."""
  ok = {r["name"]: r["result"] for r in records if r["status"] == "ok"}
  numbers = []
  size = args.decode_sizes[0] if args.decode_sizes else None
  large = max(args.batch_sizes)

  def add(point, value, unit="x"):
    numbers.append({"point": point, "measured": value, "unit": unit})

  k4 = 4 if 4 in args.iterations else max(args.iterations)  # The dry run's few iterations.
  for dtype in args.dtypes:
    decode = ok.get(f"decode:{size}:{dtype}")
    for label, batch, k in ((f"PaDIR@{k4} vs AR greedy, batch 1", 1, k4),
                            ("PaDIR@1 vs AR greedy, batch 1", 1, 1),
                            (f"PaDIR@{k4} vs AR greedy, batch {large}", large, k4)):
      add(f"{size} {dtype}: {label}", _speedup(decode, batch, k) if decode else None)
  for size_ in args.train_sizes[:1]:
    for kind in ("ar", "padir"):
      train = ok.get(f"train:{size_}:{kind}")
      value = train and (train["mfu_nominal"] if train["mfu_nominal"] is not None
                         else train["share_of_measured_bf16_rate"])
      add(f"{size_} {args.train_dtype}: {kind} train step MFU", value, unit="%")
  correct = ok.get("correctness")
  add("float32 tokens = the CPU reference (AR greedy, PaDIR@4 lb1/lb3; precision highest)",
      None if correct is None else float(correct["match"]), unit="")
  return numbers


def fmt(x: Optional[float], unit: str = "x") -> str:
  if x is None:
    return "not measured"
  if unit == "%":
    return f"{100 * x:.1f} %"
  if unit == "":
    return "yes" if x else "**no**"
  return f"{x:.2f}x"


def _same(comparison: Mapping[str, Any]) -> str:
  return "same" if comparison["match"] else f"**differs** {comparison['first_difference']}"


def _variant(decode: Mapping[str, Any]) -> str:
  attention = decode.get("attention", "einsum")
  return decode["dtype"] + ("" if attention == "einsum" else f", {attention} attention")


def write_markdown(path: str, report: Mapping[str, Any]) -> None:
  m = report.get("machine") or {}
  lines = ["# Accelerator check (benchmarks/device_check.py)", "",
           f"- Date: {report['date']}",
           f"- Command: `{report['command']}`",
           f"- Machine: {m.get('platform', '?')} / {m.get('device_kind', '?')} "
           f"(x{m.get('device_count', '?')}), {m.get('cpu_count', '?')} CPU cores, "
           f"Python {m.get('python', '?')}, jax {m.get('jax', '?')}",
           f"- Budget {report['budget_s']:.0f} s; wall {report['wall_s']:.0f} s "
           f"(every part in its own process: compilation included)", ""]
  rates = report.get("rates")
  if rates:
    lines += [f"- Measured: dense matmul [{rates['matmul_size']}]^2 float32 (default "
              f"precision) {rates['matmul_flop_s']['float32'] / 1e12:.2f} TFLOP/s, bfloat16 "
              f"{rates['matmul_flop_s']['bfloat16'] / 1e12:.2f} TFLOP/s; memory read "
              f"{rates['memory_bytes_s'] / 1e9:.0f} GB/s; nominal bfloat16 peak "
              + (f"{rates['nominal_bf16_peak_flop_s'] / 1e12:.0f} TFLOP/s"
                 if rates.get("nominal_bf16_peak_flop_s") else "unknown for this device"), ""]
  lines += ["## Headline numbers", "", "| point | measured |", "|---|---:|"]
  lines += [f"| {h['point']} | {fmt(h['measured'], h['unit'])} |" for h in report["headline"]]
  lines += ["", "## Parts", "", "| part | status | seconds | note |", "|---|---|---:|---|"]
  for r in report["parts"]:
    note = r.get("error", "") if r["status"] != "ok" else ""
    lines.append(f"| {r['name']} | {r['status']} | {r.get('seconds', 0):.0f} | "
                 f"{note.splitlines()[0][:160] if note else ''} |")
  decodes = [r["result"] for r in report["parts"]
             if r["status"] == "ok" and r["name"].startswith("decode:")]
  if decodes:
    iterations = sorted({x["iterations"] for d in decodes for x in d["results"]
                         if x["iterations"]})
    beams = sorted({x["length_beam"] for d in decodes for x in d["results"]
                    if x["system"] == "padir"})
    lines += ["", "## Decoding: speedup of PaDIR@k over AR greedy (same batch)", "",
              "Protocol: benchmarks/decode_speed.py (its PROTOCOL, in each part's "
              "decode_speed.md); random weights; " + decodes[0]["sentences"] + ".", "",
              "| size | dtype | batch | AR greedy ms | AR beam 4 ms | "
              + " | ".join(f"@{k} lb{b}" for b in beams for k in iterations) + " |",
              "|" + "---|" * (5 + len(beams) * len(iterations))]
    for d in decodes:
      for batch in sorted({x["batch_size"] for x in d["results"]}):
        cells = [fmt(_speedup(d, batch, k, b)) for b in beams for k in iterations]
        greedy, beam = _latency(d, "ar_greedy", batch), _latency(d, "ar_beam4", batch)
        lines.append(f"| {d['size']} | {_variant(d)} | {batch} | "
                     f"{'—' if greedy is None else f'{greedy:.2f}'} | "
                     f"{'—' if beam is None else f'{beam:.2f}'} | " + " | ".join(cells) + " |")
    lines += ["", "### Roofline: one AR greedy step and one PaDIR pass", "",
              "| size | dtype | batch | length beam | AR step ms (bound) | PaDIR pass ms (bound) "
              "| pass / step |", "|---|---|---|---|---|---|---|"]
    for d in decodes:
      for r in d["roofline"].get("rows", []):
        step, pass_ = r["ar_step"], r["padir_pass"]
        lines.append(f"| {d['size']} | {_variant(d)} | {r['batch_size']} | {r['length_beam']} | "
                     f"{step['measured_ms']:.3f} ({roofline.bound_ms(step):.3f}) | "
                     f"{pass_['measured_ms']:.3f} ({roofline.bound_ms(pass_):.3f}) | "
                     f"{r['pass_over_step']:.2f} |")
  trains = [r["result"] for r in report["parts"]
            if r["status"] == "ok" and r["name"].startswith("train:")]
  if trains:
    lines += ["", "## Training step (synthetic full rows, Adafactor, state donated)", "",
              "| size | kind | dtype | batch x length | s / step | target tokens / s | TFLOP/s "
              "(XLA) | MFU (nominal peak) | of measured bf16 rate |", "|" + "---|" * 9]
    for t in trains:
      mfu = "—" if t["mfu_nominal"] is None else f"{100 * t['mfu_nominal']:.1f} %"
      share = ("—" if t["share_of_measured_bf16_rate"] is None
               else f"{100 * t['share_of_measured_bf16_rate']:.1f} %")
      lines.append(f"| {t['size']} | {t['kind']} | {t['dtype']} | {t['batch_size']} x "
                   f"{t['length']} | {t['s_per_step']:.4f} | {t['tokens_per_s']:.0f} | "
                   f"{t['achieved_flop_s'] / 1e12:.2f} | {mfu} | {share} |")
  correct = next((r for r in report["parts"] if r["name"] == "correctness"), None)
  if correct and correct["status"] == "ok":
    c = correct["result"]
    lines += ["", "## Correctness (float32, the stored CPU reference)", "",
              f"Same batch: {c['same_batch']}; same weights (checksums): {c['same_weights']}.", "",
              "| system | precision highest | JAX default precision |", "|---|---|---|"]
    for name in c["highest"]:
      lines.append(f"| {name} | {_same(c['highest'][name])} | {_same(c['default'][name])} |")
  failures = [r for r in report["parts"] if r["status"] != "ok" and r.get("log_tail")]
  if failures:
    lines += ["", "## Failures (end of each log)", ""]
    for r in failures:
      lines += [f"### {r['name']}: {r['status']}", "", "```",
                "\n".join(r["log_tail"].splitlines()[-25:]), "```", ""]
  files.write_text(path, "\n".join(lines) + "\n")


def write_plot(path: str, report: Mapping[str, Any]) -> bool:
  from benchmarks import decode_speed_report  # pylint: disable=g-import-not-at-top
  plt = decode_speed_report.pyplot(path)
  if plt is None:
    return False
  decodes = [r["result"] for r in report["parts"]
             if r["status"] == "ok" and r["name"].startswith("decode:")]
  batches = sorted({x["batch_size"] for d in decodes for x in d["results"]}) or [1]
  fig, axes = plt.subplots(1, len(batches), figsize=(6 * len(batches), 4.5), squeeze=False)
  for ax, batch in zip(axes[0], batches):
    for d in decodes:
      points = sorted((x["iterations"], x["speedup_vs_ar_greedy"]) for x in d["results"]
                      if x["system"] == "padir" and x["batch_size"] == batch
                      and x["length_beam"] == 1)
      if points:
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                linestyle="-" if d["dtype"] == "bfloat16" else "--",
                label=f"{d['size']} {_variant(d)}")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("PaDIR iterations (length beam 1)")
    ax.set_ylabel("speedup vs AR greedy")
    ax.set_title(f"batch {batch}, {(report.get('machine') or {}).get('device_kind', '?')}")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_lines()[1:]:  # Beside the line at 1.
      ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return True
