"""Measuring and reporting a comparison of systems on one test set: the translate path's
quality and speed (`measure`, timed by `padir.timing`), the task's texts, and the report
(results.json, results.md, tradeoff.png, learning_curves.png). `padir demo`,
`benchmarks/multi30k_report.py` and the other benchmarks share it.

Systems (`systems`): `ar_greedy`, `ar_beam4` (the teacher, KV cache) and `padir_raw@K`,
`padir_distilled@K` (each student with K = 1, 2, 4, 8 refinement iterations). Each goes through
the translate path (`padir.translator`: text -> ids -> jitted decode -> text) and gets
  bleu, chrf, stutter_rate, length_ratio   `padir.evaluation.score_hypotheses` (sacreBLEU)
  mean_iterations           PaDIR: decoder passes per sentence (rows stop when they converge)
  sentences_per_s_batch64   the test split at batch 64, sentences / wall second, after a warm-up
                            run over the split (compilation excluded)
  latency_ms_batch1         wall ms of one sentence a call (`timing.interleaved_latency_ms`, every
                            system called in turn on each sentence, so a load change hits them
                            alike): the fastest of LATENCY_REPEATS calls per sentence, the median
                            over the first `num_latency_sentences` test sentences
  speedup_batch1            AR greedy's latency / the system's
"""
import dataclasses
import datetime
import itertools
import json
import logging
import os
import statistics
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from padir import files
from padir import tables
from padir import timing
# The timer's old name here, for the scripts kept under docs/benchmarks/.
from padir.timing import wall_seconds  # pylint: disable=unused-import,g-importing-member

if TYPE_CHECKING:  # Imported where used: importing this module stays light (no gin, sacrebleu).
  from padir import translator as translator_lib

logger = logging.getLogger(__name__)

ITERATIONS = (1, 2, 4, 8)
EVAL_BATCH_SIZE = 64
# Batch-1 latency: each timed sentence is translated this many times and its fastest time kept
# (the rest is the machine's noise); the median over the sentences is reported.
LATENCY_REPEATS = 5
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
TRADEOFF_PNG = "tradeoff.png"
LEARNING_CURVES_PNG = "learning_curves.png"
RESULT_FIELDS = ("name", "model", "iterations", "bleu", "chrf", "stutter_rate",
                 "latency_ms_batch1", "sentences_per_s_batch64")


def clock(seconds: float) -> str:
  """Seconds as H:MM:SS."""
  return str(datetime.timedelta(seconds=round(seconds)))


def measure(translator: "translator_lib.Translator", sources: Sequence[str],
            references: Sequence[str], decoder_params: Mapping[str, Any]
            ) -> Tuple[Dict[str, Any], List[str]]:
  """Quality and batch-64 throughput of one system (see the module docstring). Returns (metrics,
  hypotheses). `translator` decodes EVAL_BATCH_SIZE sentences a call."""
  from padir import evaluation  # pylint: disable=g-import-not-at-top
  # Compiles every shape the timed run meets: each length bucket, and the last batch's rows.
  translator.predict(sources, decoder_params)
  start = time.perf_counter()
  predictions = translator.predict(sources, decoder_params)
  throughput = len(sources) / (time.perf_counter() - start)
  hypotheses = [p.text for p in predictions]
  scores = evaluation.score_hypotheses(hypotheses, references)
  iterations = [float(p.aux["iterations"]) for p in predictions if "iterations" in p.aux]
  return {
      **scores,
      "mean_iterations": statistics.fmean(iterations) if iterations else None,
      "sentences_per_s_batch64": throughput,
  }, hypotheses


def one_a_call(translator: "translator_lib.Translator") -> "translator_lib.Translator":
  """A copy of `translator` that decodes one sentence a call (batch-1 latency)."""
  return type(translator)(translator.model, translator.params,
                          dataclasses.replace(translator.options, batch_size=1),
                          decode_config=translator.decode_config)


def systems(teacher_dir: str, student_dirs: Mapping[str, str],
            padir_decoder_params: Optional[Mapping[str, Any]] = None,
            iterations: Sequence[int] = ITERATIONS):
  """(name, model, iterations, model dir, decoder_params) of every evaluated system, each
  student at each of `iterations`; `padir_decoder_params` are added to every student's."""
  yield "ar_greedy", "ar", None, teacher_dir, {"decode_method": "greedy"}
  yield "ar_beam4", "ar", None, teacher_dir, {"decode_method": "beam", "beam_size": 4}
  for data_name, model_dir in student_dirs.items():
    for k in iterations:
      yield (f"padir_{data_name}@{k}", "padir", k, model_dir,
             {**(padir_decoder_params or {}), "num_decode_iterations": k})


def evaluate_systems(sources: Sequence[str], references: Sequence[str], teacher_dir: str,
                     student_dirs: Mapping[str, str], *, hypotheses_dir: str,
                     num_latency_sentences: int,
                     length_buckets: Optional[Sequence[int]] = None,
                     padir_decoder_params: Optional[Mapping[str, Any]] = None,
                     iterations: Sequence[int] = ITERATIONS) -> List[Dict[str, Any]]:
  """Every system (`systems`) on one test set, one after the other in this process; writes
  `hypotheses_dir/SYSTEM.txt`. Returns the rows of results.json's `systems`."""
  # pylint: disable-next=g-import-not-at-top,redefined-outer-name
  from padir import translator as translator_lib
  options = [f"TranslatorOptions.batch_size = {EVAL_BATCH_SIZE}"]
  if length_buckets:
    options.append(f"TranslatorOptions.length_buckets = {tuple(length_buckets)}")
  translators: Dict[str, "translator_lib.Translator"] = {}
  rows, calls = [], {}
  for name, model, k, model_dir, decoder_params in systems(teacher_dir, student_dirs,
                                                          padir_decoder_params, iterations):
    if model_dir not in translators:
      translators[model_dir] = translator_lib.Translator.from_checkpoint(
          model_dir, gin_bindings=options)
    metrics, hypotheses = measure(translators[model_dir], sources, references, decoder_params)
    translator_lib.write_lines(os.path.join(hypotheses_dir, f"{name}.txt"), hypotheses)
    rows.append({"name": name, "model": model, "iterations": k, **metrics})
    logger.info("%-20s BLEU %6.2f  chrF %6.2f  stutter %.4f  batch-64 %7.1f sentences/s", name,
                metrics["bleu"], metrics["chrf"], metrics["stutter_rate"],
                metrics["sentences_per_s_batch64"])
    single = one_a_call(translators[model_dir])
    calls[name] = lambda source, t=single, p=decoder_params: t.translate([source], p)
  # Batch-1 latency, the systems called in turn sentence by sentence (a load change hits all).
  latency = timing.interleaved_latency_ms(calls, sources[:num_latency_sentences],
                                          LATENCY_REPEATS)
  for row in rows:
    row["latency_ms_batch1"] = latency[row["name"]]["ms"]
    logger.info("%-20s batch-1 %8.2f ms", row["name"], row["latency_ms_batch1"])
  greedy = rows[0]["latency_ms_batch1"]
  for row in rows:
    row["speedup_batch1"] = greedy / row["latency_ms_batch1"]
  return rows


def task_texts(task: str, split: str) -> Tuple[List[str], List[str]]:
  """(sources, references) of a task split, as its raw text."""
  from padir import data  # pylint: disable=g-import-not-at-top  (seqio only when running)
  examples = list(data.iterate_examples(task, split))
  return [e["inputs_text"] for e in examples], [e["targets_text"] for e in examples]


def checks(rows: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
  """The comparison's headline facts, measured (no goal: whether they are good enough is the
  reader's call): every field present; the best student BLEU among the points faster than AR
  greedy at batch 1, and its difference to AR greedy; the distilled student's difference to AR
  greedy at one pass; whether the distilled student is at least as good as the raw one at every
  K; the students' mean BLEU at each K evaluated."""
  bleu = {row["name"]: row["bleu"] for row in rows}
  ks = sorted({row["iterations"] for row in rows if row["model"] != "ar"})
  greedy_ms = next(row["latency_ms_batch1"] for row in rows if row["name"] == "ar_greedy")
  # Every student evaluated ("raw", "distilled", or any name a benchmark gave): padir_{name}@K.
  students = sorted({row["name"][len("padir_"):].rsplit("@", 1)[0] for row in rows
                     if row["model"] != "ar"})
  mean_by_k = ([statistics.fmean([bleu[f"padir_{d}@{k}"] for d in students])
                for k in ks] if students else None)
  distilled = ({k: bleu[f"padir_distilled@{k}"] for k in ks}
               if "distilled" in students else None)
  fast = [row for row in rows if row["model"] != "ar" and row["latency_ms_batch1"] < greedy_ms]
  best = max(fast, key=lambda row: row["bleu"], default=None)
  gap = None if best is None else best["bleu"] - bleu["ar_greedy"]
  return {
      "every_field": all(row.get(f) is not None or (f == "iterations" and row["model"] == "ar")
                         for row in rows for f in RESULT_FIELDS),
      "best_fast_point": None if best is None else best["name"],
      "best_fast_point_minus_ar_greedy": gap,
      "distilled_at_1_minus_ar_greedy": (None if distilled is None
                                         else distilled[1] - bleu["ar_greedy"]),
      "distilled_at_least_raw": (all(distilled[k] >= bleu[f"padir_raw@{k}"] for k in ks)
                                 if distilled is not None and "raw" in students else None),
      "students_iterations": ks,
      "students_mean_bleu_by_iterations": mean_by_k,
  }


def write_report(output_dir: str, name: str, report: Mapping[str, Any], text: str) -> None:
  """A benchmark's results: OUTPUT_DIR/NAME.json (`report`) and NAME.md (`text`, also printed)."""
  os.makedirs(output_dir, exist_ok=True)
  files.write_json(os.path.join(output_dir, f"{name}.json"), report)
  files.write_text(os.path.join(output_dir, f"{name}.md"), text)
  print(text)


def systems_markdown(results: Mapping[str, Any]) -> str:
  """results.md of a comparison of systems (`evaluate_and_report`): how they were made, the
  table, the stages and the checks."""
  m = results["machine"]
  rows = results["systems"]
  lines = [
      f"# {results['title']}: AR teacher -> distillation -> PaDIR students",
      "",
      f"- command: `{results['command']}`",
      f"- date: {results['date']}; machine: {m['cpu_count']} CPU cores ({m['processor']}), "
      f"JAX {m['jax']} on {m['platform']}; load average at the start of evaluation "
      f"{results['load_average']['evaluate_start']}, at its end "
      f"{results['load_average']['evaluate_end']}",
      f"- test set: {results['test_sentences']} sentences of `{results['test_task']}` "
      f"({results['test_split']}); "
      f"sacreBLEU `{rows[0]['bleu_signature']}`, `{rows[0]['chrf_signature']}`",
      f"- speed, one process, this machine: batch-1 latency = median over "
      f"{results['latency_sentences']} test sentences translated one a call (each sentence's "
      f"fastest of {LATENCY_REPEATS}, the systems called in turn); throughput = the "
      f"test set at batch {EVAL_BATCH_SIZE}; both through the translate path (text -> text), "
      "compilation excluded",
      *([f"- training: {results['training']}"] if "training" in results else []),
      "",
      *tables.markdown_table(
          ("system", "BLEU", "chrF", "stutter %", "length ratio", "latency ms (batch 1)",
           "speedup (batch 1)", "sentences/s (batch 64)"),
          [(r["name"], f"{r['bleu']:.2f}", f"{r['chrf']:.2f}", f"{100 * r['stutter_rate']:.2f}",
            f"{r['length_ratio']:.3f}", f"{r['latency_ms_batch1']:.1f}",
            f"{r['speedup_batch1']:.2f}x", f"{r['sentences_per_s_batch64']:.1f}")
           for r in rows], "lrrrrrrr"),
  ]
  if "stages" in results:
    lines += ["", *tables.markdown_table(
        ("stage", "wall time", "CPU seconds", "budget"),
        [(stage, clock(r["wall_s"]), f"{r['cpu_s']:.0f}", clock(r["budget_s"]))
         for stage, r in results["stages"].items()], "lrrr")]
  c = results["checks"]
  mean = " -> ".join(f"{b:.2f}" for b in c["students_mean_bleu_by_iterations"] or [])
  gap = c["best_fast_point_minus_ar_greedy"]
  lines += [
      "",
      f"- every system has every field: {_yes(c['every_field'])}",
      f"- best student point faster than AR greedy at batch 1: "
      f"{c['best_fast_point'] or 'none'}"
      + ("" if gap is None else f" ({gap:+.2f} BLEU to AR greedy)"),
      "- distilled@1 against AR greedy: " + ("n/a" if c["distilled_at_1_minus_ar_greedy"] is None
                                             else f"{c['distilled_at_1_minus_ar_greedy']:+.2f} BLEU"),
      f"- distilled student at least as good as the raw-data one at every K: "
      f"{_yes(c['distilled_at_least_raw'])}",
      f"- students' mean BLEU at K = {', '.join(map(str, c.get('students_iterations', ITERATIONS)))}: {mean}",
  ]
  return "\n".join(lines) + "\n"


def _yes(value: Optional[bool]) -> str:
  return "n/a" if value is None else "yes" if value else "**no**"


def plot_groups(rows: Sequence[Mapping[str, Any]]) -> Dict[str, List[Mapping[str, Any]]]:
  """The plot's series: 'ar' (the AR systems), then each student by the name before "@K"
  (padir_raw, padir_distilled, padir_beam750, ...), in the rows' order."""
  groups = {"ar": [r for r in rows if r["name"].startswith("ar_")]}
  for r in rows:
    if not r["name"].startswith("ar_"):
      groups.setdefault(r["name"].split("@")[0], []).append(r)
  return groups


def tradeoff_plot(rows: Sequence[Mapping[str, Any]], path: str, title: str = "padir demo") -> None:
  """BLEU vs batch-1 latency, one point per system; each student's K joined by a line."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  figure = Figure(figsize=(7, 5))
  ax = figure.subplots()
  for (model_name, points), marker in zip(plot_groups(rows).items(), itertools.cycle("so^vDP*X")):
    ax.plot([r["latency_ms_batch1"] for r in points], [r["bleu"] for r in points],
            marker=marker, linestyle="" if model_name == "ar" else "-", label=model_name)
    for r in points:
      ax.annotate(r["name"].split("_", 1)[1] if model_name == "ar" else f"K={r['iterations']}",
                  (r["latency_ms_batch1"], r["bleu"]), textcoords="offset points",
                  xytext=(4, 4), fontsize=8)
  ax.set_xscale("log")
  ax.set_xlabel("latency, batch 1 (ms per sentence, median; log scale)")
  ax.set_ylabel("BLEU (test)")
  ax.set_title(f"{title}: quality vs batch-1 latency")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend()
  figure.tight_layout()
  figure.savefig(path + ".tmp.png", dpi=120)
  os.replace(path + ".tmp.png", path)


def training_curve(model_dir: str) -> Dict[str, List[float]]:
  """A run's curves from its metrics.jsonl: `steps`, `minutes` (of training, summed from each
  train log row's steps/s) and `accuracy` of its train rows; `validation_minutes` and
  `validation_accuracy` of its validation rows (placed at the minutes of their step). Empty
  curves for a dir without a training log (e.g. one made to hold a single checkpoint)."""
  curve = {"steps": [], "minutes": [], "accuracy": [], "validation_minutes": [],
           "validation_accuracy": []}
  path = os.path.join(model_dir, "metrics.jsonl")
  if not os.path.isfile(path):
    logger.warning("%s: no training log, so no learning curve", path)
    return curve
  with open(path, encoding="utf-8") as f:
    rows = [json.loads(line) for line in f if line.strip()]
  minutes, step = 0.0, 0
  for row in rows:
    if row.get("split") == "train" and row.get("steps_per_second"):
      minutes += (row["step"] - step) / row["steps_per_second"] / 60
      step = row["step"]
      for key, value in (("steps", step), ("minutes", minutes), ("accuracy", row["accuracy"])):
        curve[key].append(value)
    elif row.get("split") == "validation" and "accuracy" in row:
      curve["validation_minutes"].append(minutes)
      curve["validation_accuracy"].append(row["accuracy"])
  return curve


def learning_curves_plot(teacher_dir: str, student_dirs: Mapping[str, str], path: str,
                         student_init_step: Optional[int], title: str) -> None:
  """Token accuracy against training minutes: the teacher, and each student from the teacher's
  minutes at `student_init_step` (None: its last step), where its warm start took it. Train
  rows as lines (the students' on masked positions), validation rows as points."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  teacher = training_curve(teacher_dir)
  init = teacher["steps"][-1] if student_init_step is None else student_init_step
  offset = next((m for s, m in zip(teacher["steps"], teacher["minutes"]) if s >= init),
                teacher["minutes"][-1] if teacher["minutes"] else 0.0)
  figure = Figure(figsize=(7, 5))
  ax = figure.subplots()
  for name, model_dir, start in [("ar_teacher", teacher_dir, 0.0),
                                 *[(f"padir_{n}", d, offset) for n, d in student_dirs.items()]]:
    curve = teacher if model_dir == teacher_dir else training_curve(model_dir)
    line, = ax.plot([start + m for m in curve["minutes"]], curve["accuracy"], label=name)
    if curve["validation_accuracy"]:
      ax.plot([start + m for m in curve["validation_minutes"]], curve["validation_accuracy"],
              "o", color=line.get_color(), label=f"{name} (validation)")
  start_label = "last checkpoint" if student_init_step is None else f"step {init}"
  ax.set_xlabel(f"training minutes (students: from the teacher's {start_label}, where they "
                "start)")
  ax.set_ylabel("token accuracy (train batches; students: masked positions)")
  ax.set_title(f"{title}: learning curves")
  ax.grid(True, alpha=0.3)
  ax.legend()
  figure.tight_layout()
  figure.savefig(path + ".tmp.png", dpi=120)
  os.replace(path + ".tmp.png", path)


def evaluate_and_report(output_dir: str, teacher_dir: str, student_dirs: Mapping[str, str],
                        task: str, split: str, *, command: str, title: str,
                        num_latency_sentences: int,
                        length_buckets: Optional[Sequence[int]] = None,
                        extra: Optional[Mapping[str, Any]] = None,
                        before_writing: Optional[Callable[[Dict[str, Any]], Any]] = None,
                        student_init_step: Optional[int] = None,
                        padir_decoder_params: Optional[Mapping[str, Any]] = None,
                        iterations: Sequence[int] = ITERATIONS) -> Dict[str, Any]:
  """Evaluates every system on `task`/`split` and writes `output_dir`/{results.json, results.md,
  tradeoff.png, learning_curves.png, hypotheses/} (the demo's last stage;
  benchmarks/multi30k.py's too). `student_init_step`: the teacher's step where the students
  started (None: its last); `padir_decoder_params`: decoding options of every student;
  `iterations`: the students' numbers of passes."""
  sources, references = task_texts(task, split)
  load_start = timing.load_average()
  rows = evaluate_systems(sources, references, teacher_dir, student_dirs,
                          hypotheses_dir=os.path.join(output_dir, "hypotheses"),
                          num_latency_sentences=num_latency_sentences,
                          length_buckets=length_buckets, padir_decoder_params=padir_decoder_params,
                          iterations=iterations)
  results = {
      "title": title, "command": command, **(extra or {}),
      "date": timing.now(),
      "machine": timing.machine(),
      "load_average": {"evaluate_start": load_start, "evaluate_end": timing.load_average()},
      "test_task": task, "test_split": split, "test_sentences": len(sources),
      "padir_decoder_params": dict(padir_decoder_params or {}),
      "latency_sentences": min(num_latency_sentences, len(sources)), "systems": rows,
      "checks": checks(rows),
  }
  if before_writing is not None:
    before_writing(results)
  # The measurements first: a failing plot must not lose them.
  files.write_text(os.path.join(output_dir, RESULTS_MD), systems_markdown(results))
  files.write_json(os.path.join(output_dir, RESULTS_JSON), results)
  tradeoff_plot(rows, os.path.join(output_dir, TRADEOFF_PNG), title)
  learning_curves_plot(teacher_dir, student_dirs, os.path.join(output_dir, LEARNING_CURVES_PNG),
                       student_init_step, title)
  return results
