"""`padir vocab`: the command line of `padir.vocab`."""
import argparse
import sys
from typing import Optional, Sequence

import sentencepiece as spm

from padir import cli
from padir import vocab as vocab_lib


@cli.command("vocab")
def main(argv: Optional[Sequence[str]] = None) -> int:
  """`padir vocab --input FILE [FILE ...] --vocab_size N --output PREFIX`."""
  parser = argparse.ArgumentParser(
      prog="padir vocab",
      description="Train a joint SentencePiece vocabulary (PAD=0 EOS=1 UNK=2 BOS=3) from plain "
                  "or gzip text files, one sentence a line.")
  parser.add_argument("--input", nargs="+", required=True, metavar="FILE",
                      help="text files (.gz allowed); give both languages for a joint vocabulary")
  parser.add_argument("--vocab_size", type=int, required=True, metavar="N")
  parser.add_argument("--output", required=True, metavar="PREFIX",
                      help="writes PREFIX.model and PREFIX.vocab")
  parser.add_argument("--model_type", default="unigram", choices=["unigram", "bpe"])
  parser.add_argument("--character_coverage", type=float, default=1.0)
  parser.add_argument("--input_sentence_size", type=int, default=2_000_000,
                      help="sample at most this many sentences")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--verbose", action="store_true", help="show SentencePiece's log")
  args = parser.parse_args(argv)
  path = vocab_lib.train_sentencepiece(args.input, args.vocab_size, args.output,
                             model_type=args.model_type, character_coverage=args.character_coverage,
                             input_sentence_size=args.input_sentence_size, seed=args.seed,
                             verbose=args.verbose)
  pieces = spm.SentencePieceProcessor(model_file=path).GetPieceSize()
  print(f"wrote {path} ({pieces} pieces; PAD=0 EOS=1 UNK=2 BOS=3)")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
