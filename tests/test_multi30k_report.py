"""benchmarks/multi30k_report.py, the pipeline's last stage, on the session's tiny runs: every
system evaluated into ROOT/results, and a missing run named."""
import json
import os

from benchmarks import multi30k_report


def test_report_of_a_pipeline_root(tiny_ar_dir, tiny_padir_dir, tiny_corpus, tmp_path):
  root = tmp_path / "root"
  root.mkdir()
  os.symlink(tiny_ar_dir, root / "teacher")
  os.symlink(tiny_padir_dir, root / "student_raw")
  os.symlink(tiny_padir_dir, root / "student_distilled")
  assert multi30k_report.main(["--root", str(root), "--task", tiny_corpus["ar_task"],
                               "--module", "tasks.builtin", "--split", "test",
                               "--latency_sentences", "2"]) == 0
  with open(root / "results" / "results.json") as f:
    results = json.load(f)
  names = [row["name"] for row in results["systems"]]
  assert names[:2] == ["ar_greedy", "ar_beam4"] and "padir_distilled@8" in names
  assert results["test_split"] == "test" and results["test_sentences"] == 20
  assert all(row["latency_ms_batch1"] > 0 for row in results["systems"])
  assert (root / "results" / "tradeoff.png").exists()


def test_missing_run_is_named(tmp_path, capsys):
  assert multi30k_report.main(["--root", str(tmp_path)]) == 1
  assert f"{tmp_path}/teacher does not exist" in capsys.readouterr().err
