"""Today's code decodes a demo recorded before the restructuring (issue 31's packages, the one
initial-decoder-input definition, the dominant-variant corpus): BLEU of every system on the test
set, to compare with the run's own results.md.

  PYTHONPATH=. python docs/benchmarks/behaviour_unchanged/reevaluate_old_demo.py runs/demo2_eval 32

WORKDIR is a `padir demo` workdir of 2026-12-07 01:40 (uniform variants; `padir demo` then
evaluated with one 32-piece source bucket, the second argument: the AR decode length is 1.5x
the bucket, so the bucket moves AR's BLEU). Its corpus is registered over today's
`builtin_demo` (which now has dominant variants and another SentencePiece model).
"""
import logging
import sys

logging.disable(logging.WARNING)
import tasks.builtin  # pylint: disable=g-import-not-at-top,unused-import  (today's registration)
from padir import evaluation  # pylint: disable=g-import-not-at-top
from padir import parallel_text
from padir import reporting
from padir import translator as translator_lib

REJECTER = {"rejecter": "constant_fraction", "rejecter_fraction": 0.25}  # the run's command


def main(workdir: str, buckets: str) -> None:
  parallel_text.register_builtin("builtin_demo", num_train=10_240, num_validation=512,
                                 num_test=512, max_words=10, max_target_length=32, overwrite=True)
  sources, references = reporting.task_texts("builtin_demo_ar", "test")
  systems = [("ar_greedy", "teacher", {"decode_method": "greedy"}),
             ("ar_beam4", "teacher", {"decode_method": "beam", "beam_size": 4})]
  systems += [(f"padir_{kind}@{k}", f"student_{kind}", dict(REJECTER, num_decode_iterations=k))
              for kind in ("raw", "distilled") for k in (1, 2, 4, 8)]
  translators = {}
  print("| system | BLEU | chrF |\n|---|---:|---:|")
  for name, model_dir, params in systems:
    if model_dir not in translators:
      translators[model_dir] = translator_lib.Translator.from_checkpoint(
          f"{workdir}/{model_dir}", gin_bindings=[f"TranslatorOptions.length_buckets = ({buckets},)"])
    scores = evaluation.score_hypotheses(translators[model_dir].translate(sources, params),
                                         references)
    print(f"| {name} | {scores['bleu']:.2f} | {scores['chrf']:.2f} |", flush=True)


if __name__ == "__main__":
  main(*sys.argv[1:3])
