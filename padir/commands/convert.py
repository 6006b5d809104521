"""`padir convert`: the command line of `padir.t5_import`."""
import argparse
import os
import sys
from typing import Optional, Sequence

from padir import cli
from padir import t5_import


@cli.command("convert")
def main(argv: Optional[Sequence[str]] = None) -> int:
  """`padir convert --source PATH --output DIR`."""
  parser = argparse.ArgumentParser(
      prog="padir convert",
      description="Convert a T5X or Hugging Face T5 / T5.1.1 / mT5 checkpoint to this project's "
                  "checkpoint (DIR/checkpoints/0) and a gin file of its network "
                  "(DIR/network.gin). The source can also be given directly as "
                  "trainer.train.init_checkpoint.")
  parser.add_argument("--source", required=True, metavar="PATH",
                      help="a T5X checkpoint_<step> directory (or the directory holding them) or "
                           "a Hugging Face save_pretrained folder")
  parser.add_argument("--output", required=True, metavar="DIR", help="an empty or new directory")
  args = parser.parse_args(argv)
  checkpoint = t5_import.convert(args.source, args.output)
  print(f"wrote {args.output}: {len(checkpoint.params)} arrays ({checkpoint.format}, step "
        f"{checkpoint.step}, vocabulary {checkpoint.vocab_size}); network in "
        f"{os.path.join(args.output, t5_import.NETWORK_GIN)}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
