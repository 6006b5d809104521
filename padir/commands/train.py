"""`padir train`: the command line of `padir.trainer.train`."""
import argparse
import logging
import sys
from typing import Sequence

from padir import cli
from padir import gin_utils
from padir import metrics as metrics_lib
from padir import trainer


USAGE = """\
padir train --gin_file=FILE [--gin_file=FILE ...] [--gin.NAME=VALUE ...] --model_dir=DIR

Trains the model the gin files configure (T5X-style flags), e.g.
  padir train --gin_file=gin/models/ar_tiny.gin --gin_file=gin/runs/train.gin \\
    --gin.MIXTURE_OR_TASK_NAME="'my_task'" --gin.TRAIN_STEPS=1000 --model_dir=/tmp/ar_tiny
Run the same command again to resume from the newest checkpoint in --model_dir.
"""


@cli.command("train")
def main(argv: Sequence[str]) -> int:
  gin_files, gin_bindings, rest = gin_utils.parse_gin_flags(argv)
  parser = argparse.ArgumentParser(prog="padir train", usage=USAGE)
  parser.add_argument("--model_dir", help="run directory (sets the gin macro MODEL_DIR)")
  parser.add_argument("--multihost", action="store_true",
                      help="call jax.distributed.initialize() (initialize_distributed.enabled)")
  args = parser.parse_args(rest)
  if not gin_files:
    parser.error("at least one --gin_file is needed (a model and a run config)")
  if args.model_dir:
    gin_bindings = [f"MODEL_DIR = {args.model_dir!r}"] + list(gin_bindings)
  metrics_lib.log_to_stderr()
  try:
    gin_utils.parse_gin(gin_files, gin_bindings)
    trainer.initialize_distributed(**({"enabled": True} if args.multihost else {}))
    trainer.train(**({"model_dir": args.model_dir} if args.model_dir else {}))
  except trainer.Preempted as e:
    logging.getLogger(__name__).warning("%s", e)
    return 128 + e.signum
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
