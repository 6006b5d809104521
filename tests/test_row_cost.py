"""benchmarks/row_cost.py: the report of a tiny run, and its flag check."""
import json

import pytest

from benchmarks import row_cost


def test_row_cost_reports_every_shape_and_row_count(tmp_path):
  assert row_cost.main(["--rows", "1,3", "--shapes", "256x512,512x256", "--repeats", "3",
                        "--output", str(tmp_path)]) == 0
  report = json.loads((tmp_path / "row_cost.json").read_text())
  assert [(r["d_in"], r["rows"]) for r in report["results"]] == [(256, 1), (256, 3), (512, 1),
                                                                  (512, 3)]
  assert [r["one_row_products"] for r in report["results"] if r["rows"] == 1] == [1.0, 1.0]
  assert all(r["seconds"] > 0 and r["flop_rate"] > 0 for r in report["results"])
  assert "| 512 → 256 | 3 |" in (tmp_path / "row_cost.md").read_text()


def test_a_product_below_the_resolution_has_no_one_row_unit():
  results = [{"d_in": 8, "d_out": 8, "rows": 1, "seconds": 1e-12, "flop_rate": 1.0,
              "one_row_products": None}]
  report = {"machine": {"processor": "cpu"}, "date": "today", "command": "c",
            "load_average": [], "repeats": 1, "results": results}
  assert "| 8 → 8 | 1 | < 0.1 | — |  |" in row_cost.markdown(report)


def test_row_cost_needs_the_one_row_unit():
  with pytest.raises(SystemExit):
    row_cost.main(["--rows", "2,4"])
