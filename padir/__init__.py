"""PaDIR: T5-style encoder-decoders trained as generative masked LMs, decoded by parallel refinement.

`import padir` stays light: it never imports seqio or TensorFlow (only the data modules and
`tasks/` do). Heavier entry points are imported lazily.
"""

__version__ = "0.1.0"


def __getattr__(name):
  if name == "Translator":
    from padir.translator import Translator  # pylint: disable=g-import-not-at-top
    return Translator
  raise AttributeError(f"module 'padir' has no attribute {name!r}")
