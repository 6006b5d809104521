"""Files written whole or not at all (a temporary file renamed into place), so that a job killed
mid-write never leaves a torn results file, settings file or table behind."""
import json
import os
from typing import Any


def write_text(path: str, text: str) -> None:
  """Writes `text` to `path` atomically."""
  tmp = f"{path}.tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)


def write_json(path: str, value: Any) -> None:
  """Writes `value` as indented JSON to `path` atomically."""
  write_text(path, json.dumps(value, indent=2) + "\n")


def read_json(path: str, default: Any = None) -> Any:
  """The JSON value in `path`, or `default` when the file does not exist."""
  if not os.path.exists(path):
    return default
  with open(path, encoding="utf-8") as f:
    return json.load(f)
