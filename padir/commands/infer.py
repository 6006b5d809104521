"""`padir infer`: the command line of `padir.translator`."""
import argparse
import logging
import sys
from typing import Sequence

from padir import cli
from padir import gin_utils
from padir import metrics as metrics_lib
from padir import translator as translator_lib


USAGE = """\
padir infer --checkpoint_dir DIR --input FILE|- --output FILE|- [--checkpoint_step N]
            [--gin_file F ...] [--gin.NAME=VALUE ...]

Translates one sentence a line with a `padir train` checkpoint; one output line per input line,
in order (empty input lines give empty lines). Decoding options are gin overrides, e.g.
  --gin.PadirDecodeConfig.num_decode_iterations=8  --gin.ARDecodeConfig.decode_method="'greedy'"
  --gin.TranslatorOptions.batch_size=16  --gin.TeacherReranking.checkpoint_dir="'runs/ar'"
"""


@cli.command("infer")
def main(argv: Sequence[str]) -> int:
  gin_files, gin_bindings, rest = gin_utils.parse_gin_flags(argv)
  parser = argparse.ArgumentParser(prog="padir infer", usage=USAGE)
  parser.add_argument("--checkpoint_dir", required=True, help="a `padir train` --model_dir")
  parser.add_argument("--checkpoint_step", type=int, default=None, help="default: the newest")
  parser.add_argument("--input", required=True, help="UTF-8 text (.gz allowed), or - for stdin")
  parser.add_argument("--output", required=True, help="translations, or - for stdout")
  args = parser.parse_args(rest)
  metrics_lib.log_to_stderr()
  translator = translator_lib.Translator.from_checkpoint(
      args.checkpoint_dir, args.checkpoint_step, gin_bindings, gin_files)
  lines = translator_lib.read_lines(args.input)
  translator_lib.write_lines(args.output, translator.translate(lines, progress=True))
  logging.getLogger(__name__).info("translated %d lines with %s (step %d)", len(lines),
                                   translator.model_dir, translator.step)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
