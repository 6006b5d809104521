"""`padir distill`: the command line of `padir.distill`."""
import argparse
import sys
from typing import Sequence

from padir import cli
from padir import distill as distill_lib
from padir import gin_utils
from padir import metrics as metrics_lib


USAGE = """\
padir distill --teacher_dir DIR (--task NAME [--split train] | --input_tsv F | --source_file F)
              --output DIR [--shard_size N] [--decode_method beam|greedy] [--beam_size 4]
              [--max_repeats 3]
              [--name NAME] [--checkpoint_step N] [--gin_file F ...] [--gin.NAME=VALUE ...]

Translates the sources with an AR teacher into DIR/distilled.tsv (source<TAB>translation) and
registers it as the tasks NAME_ar / NAME_padir. Re-run the same command to resume.
"""


@cli.command("distill")
def main(argv: Sequence[str]) -> int:
  gin_files, gin_bindings, rest = gin_utils.parse_gin_flags(argv)
  parser = argparse.ArgumentParser(prog="padir distill", usage=USAGE)
  parser.add_argument("--teacher_dir", required=True, help="the AR teacher's --model_dir")
  parser.add_argument("--checkpoint_step", type=int, default=None, help="default: the newest")
  parser.add_argument("--task", help="a registered seqio task whose source texts to distill")
  parser.add_argument("--split", default="train")
  parser.add_argument("--module", action="append", default=None,
                      help="module registering --task (repeatable; default tasks.builtin)")
  parser.add_argument("--input_tsv", help="a source<TAB>target TSV (its sources are used)")
  parser.add_argument("--source_file", help="a text file, one source sentence a line")
  parser.add_argument("--output", required=True, help="output directory")
  parser.add_argument("--shard_size", type=int, default=10_000)
  parser.add_argument("--decode_method", default="beam", choices=distill_lib.DECODE_METHODS)
  parser.add_argument("--beam_size", type=int, default=4)
  parser.add_argument("--max_repeats", type=int, default=3,
                      help="leave out translations with an n-gram (n <= 4 words) repeated this "
                           "many times in a row (into dropped.tsv); 0 keeps all")
  parser.add_argument("--name", default=None,
                      help="corpus name of the registered tasks (default: from the sources)")
  args = parser.parse_args(rest)
  metrics_lib.log_to_stderr()
  sources = distill_lib.Sources(task=args.task, split=args.split, input_tsv=args.input_tsv,
                                source_file=args.source_file,
                                task_modules=tuple(args.module or ["tasks.builtin"]))
  result = distill_lib.distill(args.teacher_dir, sources, args.output,
                               shard_size=args.shard_size, decode_method=args.decode_method,
                               beam_size=args.beam_size, max_repeats=args.max_repeats,
                               name=args.name, checkpoint_step=args.checkpoint_step,
                               gin_files=gin_files, gin_bindings=gin_bindings, progress=True)
  print(f"wrote {result.tsv} ({result.num_examples} pairs, teacher step {result.teacher_step}; "
        f"{result.num_dropped} looped translations left out)")
  print(f"registered tasks: {result.ar_task} {result.padir_task}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
