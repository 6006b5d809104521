"""T5X-style gin flags: `--gin_file=FILE` (repeatable) and `--gin.NAME=VALUE` bindings.

Gin binds at the edges: entry points call `parse_gin_flags` then `parse_gin`; library code only
declares `@gin.configurable` constructors and functions.
"""
import contextlib
import logging
import os
from typing import Iterator, List, Sequence, Tuple

import gin

from padir import errors

# Search path for relative gin files: the repository's gin/ folder, then the working directory.
GIN_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gin")


class GinFlagError(errors.UsageError):
  """A bad --gin_file / --gin.NAME=VALUE flag, named in the message."""


def parse_gin_flags(argv: Sequence[str]) -> Tuple[List[str], List[str], List[str]]:
  """Splits argv into (gin_files, gin_bindings, other_args).

  Accepts `--gin_file=F`, `--gin_file F`, `--gin.NAME=VALUE`, `--gin_bindings=NAME=VALUE`.
  """
  files, bindings, rest = [], [], []
  args = list(argv)
  i = 0
  while i < len(args):
    arg = args[i]
    if arg == "--gin_file" or arg == "--gin_bindings":
      if i + 1 >= len(args):
        raise GinFlagError(f"{arg} needs a value")
      (files if arg == "--gin_file" else bindings).append(args[i + 1])
      i += 2
      continue
    if arg.startswith("--gin_file="):
      files.append(arg.split("=", 1)[1])
    elif arg.startswith("--gin_bindings="):
      bindings.append(arg.split("=", 1)[1])
    elif arg.startswith("--gin."):
      if "=" not in arg:
        raise GinFlagError(f"flag {arg!r}: expected --gin.NAME=VALUE")
      name, value = arg[len("--gin."):].split("=", 1)
      bindings.append(f"{name} = {value}")
    else:
      rest.append(arg)
    i += 1
  return files, bindings, rest


def resolve_gin_file(path: str) -> str:
  """Finds a gin file as given, or relative to the repository's gin/ folder."""
  for candidate in (path, os.path.join(GIN_ROOT, path),
                    os.path.join(GIN_ROOT, path[len("gin/"):]) if path.startswith("gin/") else None):
    if candidate and os.path.isfile(candidate):
      return candidate
  raise GinFlagError(f"--gin_file={path}: no such file (looked here and under {GIN_ROOT})")


class _DropPackageLookups(logging.Filter):
  """gin looks an `include 'models/ar.gin'` up as a Python package resource before the search
  path, and logs 'Path not found' at ERROR level when there is no such package: drop those."""

  def filter(self, record: logging.LogRecord) -> bool:
    return record.msg != "Path not found: %s"


@contextlib.contextmanager
def _quiet_package_lookups() -> Iterator[None]:
  quiet = _DropPackageLookups()
  logging.getLogger().addFilter(quiet)
  try:
    yield
  finally:
    logging.getLogger().removeFilter(quiet)


def parse_gin(files: Sequence[str], bindings: Sequence[str], finalize: bool = True) -> str:
  """Parses gin files and bindings; errors name the file or binding. Returns the operative-free
  config string of what was parsed (for saving beside a run)."""
  gin.add_config_file_search_path(GIN_ROOT)
  resolved = [resolve_gin_file(f) for f in files]
  for f in resolved:
    try:
      with _quiet_package_lookups():
        gin.parse_config_file(f)
    except Exception as e:  # gin raises several types; keep its message, add the file.
      raise GinFlagError(f"gin file {f}: {e}") from e
  for b in bindings:
    try:
      gin.parse_config(b)
    except Exception as e:
      raise GinFlagError(f"--gin binding {b!r}: {e}") from e
  if finalize:
    gin.finalize()
  return gin.config_str()
