"""A sweep's summary: summary.csv and summary.md (one row per trial) and a plot per swept
parameter (BLEU and decode speed against its values, one line per setting of the others)."""
import csv
import datetime
import os
import platform
from typing import Any, Dict, List, Mapping, Optional, Sequence

from launch import sweeps

METRICS = (  # (csv column, markdown header, digits)
    ("bleu", "BLEU", 2),
    ("chrf", "chrF", 2),
    ("stutter_rate", "stutter %", 2),
    ("length_ratio", "len ratio", 3),
    ("mean_iterations", "iterations", 2),
    ("ms_per_sentence", "ms/sentence", 2),
)
PLOTS_SUBDIR = "plots"


def rows(sweep: sweeps.Sweep, records: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
  """One flat row per trial: trial, each swept parameter's label ('' when not set), metrics,
  step, status."""
  out = []
  for record in records:
    settings = record.get("settings", {})
    row = {"trial": record["trial"]}
    row.update({name: settings.get(name, "") for name in sweep.parameters()})
    speed = record.get("speed") or {}
    row.update({key: speed.get(key, record.get(key)) for key, _, _ in METRICS})
    row["step"] = record.get("step")
    row["status"] = record.get("status", "failed")
    row["error"] = record.get("error", "")
    out.append(row)
  return out


def _cell(value: Optional[float], digits: int, scale: float = 1.0) -> str:
  return "-" if value is None else f"{scale * value:.{digits}f}"


def _first(records: Sequence[Mapping[str, Any]], key: str) -> Any:
  return next((r[key] for r in records if r.get(key) is not None), None)


def markdown(sweep: sweeps.Sweep, table: Sequence[Mapping[str, Any]],
             records: Sequence[Mapping[str, Any]], command: str, plots: Sequence[str]) -> str:
  params = sweep.parameters()
  speed = _first(records, "speed") or {}
  lines = [f"# Sweep {sweep.name}", "",
           f"- command: `{command}`",
           f"- date: {datetime.date.today().isoformat()}; machine: {platform.platform()}, "
           f"{os.cpu_count()} CPUs, JAX devices {speed.get('devices', '?')}",
           f"- evaluation: {sweep.eval_task} / {sweep.eval_split}, "
           f"{_first(records, 'num_examples') or '-'} examples; "
           f"sacreBLEU `{_first(records, 'bleu_signature') or '-'}`",
           f"- speed: median ms/sentence translating the first {speed.get('sentences', '-')} "
           f"sources (batches of <= {speed.get('batch_size', '-')}), compile excluded",
           "", "| " + " | ".join(params + [h for _, h, _ in METRICS] + ["status"]) + " |",
           "|" + "---|" * len(params) + "---:|" * len(METRICS) + "---|"]
  for row in table:
    cells = [str(row[p]) or "(base)" for p in params]
    cells += [_cell(row[k], d, 100.0 if k == "stutter_rate" else 1.0) for k, _, d in METRICS]
    cells.append(row["status"] if row["status"] == "done" else f"{row['status']}: {row['error']}")
    lines.append("| " + " | ".join(cells) + " |")
  if plots:
    lines += ["", "Plots: " + ", ".join(f"[{os.path.basename(p)}]({PLOTS_SUBDIR}/"
                                         f"{os.path.basename(p)})" for p in plots)]
  commands = {}
  for r in records:
    for kind, text in (r.get("commands") or {}).items():
      commands.setdefault(text, kind)
  if commands:
    lines += ["", "## Commands", ""] + [f"- `{text}`" for text in commands]
  return "\n".join(lines) + "\n"


def plot(path: str, param: str, params: Sequence[str], table: Sequence[Mapping[str, Any]]
         ) -> bool:
  """BLEU and ms/sentence against `param`'s values, a line per setting of the other
  parameters. False (nothing written) when fewer than 2 of its values have results."""
  done = [r for r in table if r["status"] == "done" and r[param] != ""]
  values = list(dict.fromkeys(r[param] for r in done))
  if len(values) < 2:
    return False
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  others = [p for p in params if p != param]
  lines: Dict[str, Dict[str, Any]] = {}
  for r in done:
    key = ", ".join(f"{p.rsplit('.', 1)[-1]}={r[p]}" for p in others if r[p] != "") or "all"
    lines.setdefault(key, {})[r[param]] = r
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for key, by_value in lines.items():
    xs = [i for i, v in enumerate(values) if v in by_value]
    for ax, metric in zip(axes, ("bleu", "ms_per_sentence")):
      ax.plot(xs, [by_value[values[i]][metric] for i in xs], marker="o", label=key)
  for ax, title in zip(axes, ("BLEU", "decode ms / sentence")):
    ax.set_xticks(range(len(values)), values)
    ax.set_xlabel(param)
    ax.set_title(title)
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize="small")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return True


def write(root: str, sweep: sweeps.Sweep, records: Sequence[Mapping[str, Any]],
          command: str) -> List[str]:
  """Writes summary.csv, summary.md and the plots into `root`; returns their paths."""
  table = rows(sweep, records)
  os.makedirs(root, exist_ok=True)
  csv_path = os.path.join(root, "summary.csv")
  with open(csv_path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(table[0]) if table else ["trial"])
    writer.writeheader()
    writer.writerows(table)
  plots = []
  params = sweep.parameters()
  for param in params:
    path = os.path.join(root, PLOTS_SUBDIR, f"{param}.png")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if plot(path, param, params, table):
      plots.append(path)
  md_path = os.path.join(root, "summary.md")
  with open(md_path, "w") as f:
    f.write(markdown(sweep, table, records, command, plots))
  return [md_path, csv_path, *plots]
