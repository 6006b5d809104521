"""benchmarks/row_cost.py: the report of a tiny run, and its flag check."""
import json

import pytest

from benchmarks import row_cost


def test_row_cost_reports_every_shape_and_row_count(tmp_path):
  assert row_cost.main(["--rows", "1,3", "--shapes", "8x16,16x8", "--repeats", "2",
                        "--output", str(tmp_path)]) == 0
  report = json.loads((tmp_path / "row_cost.json").read_text())
  assert [(r["d_in"], r["rows"]) for r in report["results"]] == [(8, 1), (8, 3), (16, 1),
                                                                  (16, 3)]
  assert report["results"][0]["one_row_products"] == 1.0
  assert all(r["seconds"] > 0 and r["flop_rate"] > 0 for r in report["results"])
  assert "| 16 → 8 | 3 |" in (tmp_path / "row_cost.md").read_text()


def test_row_cost_needs_the_one_row_unit():
  with pytest.raises(SystemExit):
    row_cost.main(["--rows", "2,4"])
