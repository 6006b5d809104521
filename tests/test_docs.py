"""The docs' relative links: every `[text](path)` and `![alt](path)` in README.md, BENCHMARKS.md and
docs/ names a file that exists, and a `#anchor` names a heading of that file (GitHub's rule)."""
import collections
import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = sorted([REPO / "README.md", REPO / "BENCHMARKS.md", *(REPO / "docs").rglob("*.md")])
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def _prose_lines(path: pathlib.Path):
  """The lines outside fenced code blocks, inline code removed."""
  fenced = False
  for line in path.read_text(encoding="utf-8").splitlines():
    if FENCE.match(line):
      fenced = not fenced
    elif not fenced:
      yield re.sub(r"`[^`]*`", lambda m: m.group(0).strip("`") if "](" not in m.group(0) else "", line)


def _slug(heading: str) -> str:
  """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
  text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
  return text.replace(" ", "-")


def _anchors(path: pathlib.Path) -> set:
  seen, anchors = collections.Counter(), set()
  for line in _prose_lines(path):
    match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
    if match:
      slug = _slug(match.group(1))
      anchors.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
      seen[slug] += 1
  return anchors


def _links(path: pathlib.Path):
  for line in _prose_lines(path):
    for target in LINK.findall(line):
      if not re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: are not checked.
        yield target


def test_the_docs_exist():
  assert (REPO / "README.md").exists() and (REPO / "BENCHMARKS.md").exists()
  assert len(DOCS) > 2


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_name_existing_files_and_headings(doc):
  broken = []
  for target in _links(doc):
    file_part, _, anchor = target.partition("#")
    linked = (doc.parent / file_part).resolve() if file_part else doc
    if not linked.exists():
      broken.append(f"{target}: no file {linked}")
    elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
      broken.append(f"{target}: no heading #{anchor} in {linked.name}")
  assert not broken, f"{doc.relative_to(REPO)}: " + "; ".join(broken)


def test_the_slug_is_githubs():
  assert _slug("The aligned-canvas (CTC) student (issue 28) — CPU, 2026-12-06") == (
      "the-aligned-canvas-ctc-student-issue-28--cpu-2026-12-06")
  assert _slug("Multi30k En→De quality") == "multi30k-ende-quality"
