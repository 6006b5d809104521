"""The one markdown table writer of the reports (`padir eval`'s results.md, the demo's and the
benchmarks')."""
from typing import Any, Iterable, List, Sequence


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str) -> List[str]:
  """The lines of a markdown table. `align`: one character a column, 'l' (left) or 'r' (right,
  for numbers); cells are written with `str` (format numbers before)."""
  if len(align) != len(header) or set(align) - {"l", "r"}:
    raise ValueError(f"align {align!r}: one of 'l' / 'r' for each of {len(header)} columns")
  lines = ["| " + " | ".join(header) + " |",
           "|" + "".join("---:|" if a == "r" else "---|" for a in align)]
  for row in rows:
    if len(row) != len(header):
      raise ValueError(f"a row of {len(row)} cells in a table of {len(header)} columns")
    lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
  return lines
