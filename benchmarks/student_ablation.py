"""The student recipe on the demo corpus, one factor at a time, at one training budget.

  python -m benchmarks.student_ablation --demo runs/demo --runs runs/student_ablation \
      --output docs/benchmarks/student_ablation

Needs a finished `padir demo` workdir (its teacher, `teacher_init/` and the distilled data).
Every variant is a PaDIR student on the distilled training data, warm-started from the teacher
at the demo's `student_init_step` and trained for the demo's `student_steps` (or `--steps`)
with the demo recipe (experiments/builtin_padir.gin) changed in one way; `recipe` is the recipe
itself and `old_recipe` every change undone at once. Decode-only variants reuse the recipe's
run. For each variant, on the demo's 512 test sentences (sacreBLEU):
  bleu@K          BLEU at K = 1, 2, 4, 8 mask-predict iterations
  length_*        the predicted length (top-1, before any length beam) against the reference's
                  token count: exact, within 1, within 2
  curve           BLEU at 4 iterations at every saved step (the learning curve)
  minutes         training wall minutes
and two length baselines, from the training data alone: the most frequent target length, and
a least-squares line of target length on source length. Writes OUTPUT/results.json,
results.md and learning_curves.png (the students' model dirs go to RUNS); a variant whose
result is there already is reused.
"""
import argparse
import dataclasses
import os
import shlex
import sys
import time
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from padir import demo
from padir import distill as distill_lib
from padir import evaluation
from padir import files
from padir import metrics as metrics_lib
from padir import reporting
from padir import tables
from padir import timing
from padir import translator as translator_lib

ITERATIONS = reporting.ITERATIONS
CURVE_ITERATIONS = 4
SAVE_EVERY = 250


@dataclasses.dataclass(frozen=True)
class Variant:
  """One row: what changes from the recipe, in training bindings and decoding settings."""
  name: str
  what: str
  bindings: Tuple[str, ...] = ()
  decoder_params: Tuple[Tuple[str, Any], ...] = ()
  trained_as: Optional[str] = None  # Decode-only: the variant whose run it decodes.


_CLASSIFIER = "models.PadirModel.length_predictor = 'classifier'"
_ALL_MASK_NOISE = ("preprocessors.padir_noise.correct_prob = 0.0",
                   "preprocessors.padir_noise.random_prob = 0.0")
_NO_MASK_INIT = "trainer.warm_start.init_special_embeddings = False"
_NO_RELPOS_MAP = "trainer.warm_start.map_causal_relpos = False"
_UNBUCKETED = ("train/data.get_dataset.length_buckets = None",
               "train/data.get_dataset.input_length_buckets = None")
_NO_GLAT = "models.PadirModel.glancing_ratio = 0.0"
_ONE_LENGTH = (("top_k_lengths", 1),)
_ADAM_PARAMETRISATION = ("optimizers.adamw.learning_rate_multipliers = "
                         "{'token_embedder/embedding': 8.0, '.*/query/kernel': 0.25}")

VARIANTS = (
    Variant("recipe", "experiments/builtin_padir.gin as it is"),
    Variant("one_length", "decode 1 length instead of the top 3", decoder_params=_ONE_LENGTH,
            trained_as="recipe"),
    Variant("no_keep_visible", "refinement re-predicts every position, not only re-masked ones",
            decoder_params=(("keep_visible", False),), trained_as="recipe"),
    Variant("classifier_length", "[LENGTH]-token length classifier instead of the offset head",
            (_CLASSIFIER,)),
    Variant("all_mask_noise", "noised positions: all [MASK_i] (CMLM), not 80 % [MASK_i], 10 % "
            "kept, 10 % random", _ALL_MASK_NOISE),
    Variant("no_mask_init", "[MASK_i] / [MASK] / [LENGTH] rows left random at the warm start",
            (_NO_MASK_INIT,)),
    Variant("no_relpos_map", "teacher's causal position biases copied as they are",
            (_NO_RELPOS_MAP,)),
    Variant("unbucketed", "fixed 32-long rows instead of length-bucketed batches",
            _UNBUCKETED),
    Variant("no_glat", "no glancing: every row trained on the data noise", (_NO_GLAT,)),
    Variant("glat_all_rows", "glancing on every row (no data noise at all)",
            ("models.PadirModel.glancing_fraction = 1.0",)),
    Variant("deep_decoder", "4 decoder layers instead of 2 (layers 3-4 start fresh, not from the "
            "teacher)", ("network.get_config.num_decoder_layers = 4",)),
    Variant("deep_encoder", "4 encoder layers instead of 2 (layers 3-4 start fresh, not from the "
            "teacher); the encoder runs once per sentence, not once per iteration",
            ("network.get_config.num_encoder_layers = 4",)),
    Variant("deep_shallow", "4 encoder layers and 1 decoder layer instead of 2 + 2 (deep "
            "encoder / shallow decoder, Kasai et al. 2021; encoder layers 3-4 start fresh): a "
            "refinement pass costs one decoder layer",
            ("network.get_config.num_encoder_layers = 4",
             "network.get_config.num_decoder_layers = 1")),
    Variant("shallow_decoder", "1 decoder layer instead of 2 (the teacher's first; the encoder "
            "as it is): a refinement pass costs one decoder layer",
            ("network.get_config.num_decoder_layers = 1",)),
    Variant("adam_parametrisation", "T5's parametrisation corrected for Adam, as the Multi30k "
            "recipes: embedding steps x8 (sqrt(d_model)), query kernel steps x1/4 "
            "(sqrt(head_dim))", (_ADAM_PARAMETRISATION,)),
    Variant("length_loss_0.1", "length loss weight 0.1 instead of 1 (fairseq's NAT "
            "--length-loss-factor)", ("models.PadirModel.length_loss_weight = 0.1",)),
    Variant("old_recipe", "every change undone: classifier, random rows, copied biases, fixed "
            "rows, no glancing, 1 length, every position re-predicted",
            (_CLASSIFIER, _NO_MASK_INIT, _NO_RELPOS_MAP, *_UNBUCKETED, _NO_GLAT),
            decoder_params=(*_ONE_LENGTH, ("keep_visible", False))),
)


def train_variant(variant: Variant, model_dir: str, demo_dir: str, steps: int,
                  size: demo.DemoSize) -> float:
  """Trains (or resumes) one variant's student; returns its wall minutes in this call."""
  started = time.time()
  demo.train(["models/padir_tiny.gin", demo.PADIR_GIN,
              os.path.join(demo_dir, "distilled", distill_lib.TASK_GIN)],
             model_dir, steps, size,
             [f"trainer.train.init_checkpoint = {os.path.join(demo_dir, 'teacher_init')!r}",
              f"SAVE_EVERY = {SAVE_EVERY}", "KEEP_CHECKPOINTS = None", *variant.bindings])
  return (time.time() - started) / 60


def _bleu(translator: translator_lib.Translator, sources: Sequence[str],
          references: Sequence[str], decoder_params: Mapping[str, Any]) -> float:
  hypotheses = translator.translate(sources, dict(decoder_params))
  return evaluation.score_hypotheses(hypotheses, references)["bleu"]


def length_accuracy(predicted: np.ndarray, gold: np.ndarray) -> Dict[str, float]:
  """Exact / within-1 / within-2 shares of `predicted` against `gold` ([N] each)."""
  error = np.abs(np.asarray(predicted) - np.asarray(gold))
  return {"length_exact": float(np.mean(error == 0)), "length_within_1": float(np.mean(error <= 1)),
          "length_within_2": float(np.mean(error <= 2))}


def token_lengths(vocabulary, lines: Sequence[str]) -> np.ndarray:
  """[N] pieces of each line + EOS: the length a model predicts."""
  return np.asarray([len(vocabulary.encode(line)) + 1 for line in lines])


def evaluate_variant(variant: Variant, model_dir: str, sources: Sequence[str],
                     references: Sequence[str]) -> Dict[str, Any]:
  """BLEU at each K, the length accuracy and the learning curve of one variant's run."""
  result: Dict[str, Any] = {"curve": {}}
  decoder_params = dict(variant.decoder_params)
  translator = translator_lib.Translator.from_checkpoint(
      model_dir, gin_bindings=[f"TranslatorOptions.batch_size = {reporting.EVAL_BATCH_SIZE}",
                               f"TranslatorOptions.length_buckets = {demo.LENGTH_BUCKETS}"])
  for step in evaluation.available_steps(model_dir):
    translator.load_step(step)
    result["curve"][str(step)] = _bleu(
        translator, sources, references,
        {**decoder_params, "num_decode_iterations": CURVE_ITERATIONS})
  for k in ITERATIONS:
    result[f"bleu@{k}"] = _bleu(translator, sources, references,
                                {**decoder_params, "num_decode_iterations": k})
  predictions = translator.predict(sources, {"top_k_lengths": 1, "num_decode_iterations": 1})
  result.update(length_accuracy([int(p.aux["lengths"]) for p in predictions],
                                token_lengths(translator.vocabulary, references)))
  return result


def length_baselines(task: str, sources: Sequence[str], references: Sequence[str],
                     vocabulary) -> Dict[str, Dict[str, float]]:
  """The two baselines' length accuracy on the test set, fitted on the training split."""
  train_sources, train_references = reporting.task_texts(task, "train")
  train_src = token_lengths(vocabulary, train_sources)
  train_tgt = token_lengths(vocabulary, train_references)
  scale, bias = np.polyfit(train_src, train_tgt, 1)
  gold = token_lengths(vocabulary, references)
  return {
      "most_frequent_length": length_accuracy(
          np.full_like(gold, np.bincount(train_tgt).argmax()), gold),
      "linear_fit_on_source_length": length_accuracy(
          np.round(scale * token_lengths(vocabulary, sources) + bias), gold),
  }


def ablation_markdown(results: Mapping[str, Any]) -> str:
  """results.md: how it was run, a row per variant and length baseline, the learning curves."""
  m = results["machine"]
  lines = [f"- command: `{results['command']}`",
           f"- date: {results['date']}; machine: {m['cpu_count']} CPU cores ({m['processor']}), "
           f"JAX {m['jax']} on {m['platform']}; load average at the end "
           f"{[round(x, 2) for x in results['load_average']]}",
           f"- {results['test_sentences']} test sentences of `{results['test_task']}`; students "
           f"trained {results['steps']} steps on the distilled data from the teacher at step "
           f"{results['init_step']}; sacreBLEU `{results['bleu_signature']}`",
           ""]
  rows = [(name, row["what"], *(f"{row[f'bleu@{k}']:.2f}" for k in ITERATIONS),
           f"{row['length_exact']:.3f}", f"{row['length_within_1']:.3f}",
           f"{row['length_within_2']:.3f}", f"{row['minutes']:.1f}")
          for name, row in results["variants"].items()]
  rows += [(name, "length baseline (training data only)", *[""] * len(ITERATIONS),
            f"{row['length_exact']:.3f}", f"{row['length_within_1']:.3f}",
            f"{row['length_within_2']:.3f}", "")
           for name, row in results["length_baselines"].items()]
  lines += tables.markdown_table(
      ("variant", "change", *(f"BLEU@{k}" for k in ITERATIONS), "length exact", "±1", "±2",
       "train min"), rows, "ll" + "r" * (len(ITERATIONS) + 4))
  lines += ["", f"BLEU@{CURVE_ITERATIONS} by training step (learning curves):", ""]
  steps = sorted({int(s) for row in results["variants"].values() for s in row["curve"]})
  lines += tables.markdown_table(
      ("variant", *map(str, steps)),
      [(name, *(f"{row['curve'][str(s)]:.2f}" if str(s) in row["curve"] else "" for s in steps))
       for name, row in results["variants"].items()], "l" + "r" * len(steps))
  return "\n".join(lines) + "\n"


def curves_plot(results: Mapping[str, Any], path: str) -> None:
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  figure = Figure(figsize=(7, 5))
  ax = figure.subplots()
  for name, row in results["variants"].items():
    if row["trained_as"] != name:
      continue
    steps = sorted(int(s) for s in row["curve"])
    ax.plot(steps, [row["curve"][str(s)] for s in steps], marker="o", label=name)
  ax.set_xlabel("student training steps (after the warm start)")
  ax.set_ylabel(f"test BLEU at {CURVE_ITERATIONS} iterations")
  ax.set_title("demo corpus: the student recipe, one factor at a time")
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=8)
  figure.tight_layout()
  figure.savefig(path + ".tmp.png", dpi=120)
  os.replace(path + ".tmp.png", path)


def main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.student_ablation")
  parser.add_argument("--demo", default="runs/demo", help="a finished `padir demo` workdir")
  parser.add_argument("--runs", default="runs/student_ablation", help="the students' model dirs")
  parser.add_argument("--output", default="docs/benchmarks/student_ablation")
  parser.add_argument("--steps", type=int, default=None, help="default: the demo's student_steps")
  parser.add_argument("--variants", default=",".join(v.name for v in VARIANTS))
  args = parser.parse_args(argv)
  metrics_lib.log_to_stderr()
  demo_dir = os.path.abspath(args.demo)
  settings = files.read_json(os.path.join(demo_dir, demo.SETTINGS_FILE))
  if settings is None or not os.path.isdir(os.path.join(demo_dir, "teacher_init")):
    print(f"student_ablation: error: --demo {args.demo} holds no finished demo teacher "
          "(run `padir demo --workdir DIR` first)", file=sys.stderr)
    return 1
  size = demo.SIZES[settings["size"]]
  steps = args.steps or size.student_steps
  by_name = {v.name: v for v in VARIANTS}
  unknown = set(args.variants.split(",")) - set(by_name)
  if unknown:
    print(f"student_ablation: error: --variants: unknown {sorted(unknown)}; known: "
          f"{sorted(by_name)}", file=sys.stderr)
    return 1
  ar_task, _ = demo.prepare_corpus(size)
  sources, references = reporting.task_texts(ar_task, "test")
  os.makedirs(args.output, exist_ok=True)
  path = os.path.join(args.output, "results.json")
  results = files.read_json(path) or {"variants": {}}
  for name in args.variants.split(","):
    variant = by_name[name]
    if name in results["variants"]:
      continue
    trained_as = variant.trained_as or name
    model_dir = os.path.join(args.runs, trained_as)
    minutes = (results["variants"][trained_as]["minutes"] if variant.trained_as
               else train_variant(variant, model_dir, demo_dir, steps, size))
    row = evaluate_variant(variant, model_dir, sources, references)
    results["variants"][name] = {"what": variant.what, "bindings": list(variant.bindings),
                                 "decoder_params": dict(variant.decoder_params),
                                 "trained_as": trained_as, "minutes": minutes, **row}
    files.write_json(path, results)
  from padir import data  # pylint: disable=g-import-not-at-top  (seqio only when running)
  results.update({
      "command": " ".join(["python -m benchmarks.student_ablation", *map(shlex.quote, argv)]),
      "date": time.strftime("%Y-%m-%d"), "machine": timing.machine(),
      "load_average": os.getloadavg(), "test_task": ar_task, "test_sentences": len(sources),
      "steps": steps, "init_step": size.student_init_step,
      "bleu_signature": evaluation.score_hypotheses(["a"], ["a"])["bleu_signature"],
      "length_baselines": length_baselines(ar_task, sources, references,
                                           data.task_vocabulary(ar_task))})
  files.write_json(path, results)
  files.write_text(os.path.join(args.output, "results.md"), ablation_markdown(results))
  curves_plot(results, os.path.join(args.output, "learning_curves.png"))
  print(ablation_markdown(results))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
