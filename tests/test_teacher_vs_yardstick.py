"""benchmarks/teacher_vs_yardstick.py on hand-made run records: the curves land at the right
minutes, and the JSON, markdown and plot are written."""
import json

from benchmarks import teacher_vs_yardstick


def test_the_comparison_reads_both_runs_and_writes_its_report(tmp_path):
  yardstick = tmp_path / "yardstick"
  yardstick.mkdir()
  (yardstick / "result.json").write_text(json.dumps(
      {"steps": 900, "train_seconds": 3600.4, "target_tokens_per_s": 1100.0,
       "test_2016_flickr_bleu": 30.5}))
  (yardstick / "log.txt").write_text(
      "ep 1 step 100 loss 6.1 tok/s 931\nVAL@300 901s BLEU 12.50\nVAL@600 1802s BLEU 25.00\n"
      "FINAL steps 900 epochs 5 test2016 BLEU 30.50\n")
  teacher = tmp_path / "teacher"
  teacher.mkdir()
  (teacher / "train_time.json").write_text(json.dumps({"250": 600.0, "500": 1200.0}))
  (teacher / "metrics.jsonl").write_text("\n".join(json.dumps(row) for row in [
      {"step": 250, "split": "train", "tokens_per_second": 1200.0},
      {"step": 250, "split": "validation", "accuracy": 0.5},
      {"step": 500, "split": "train", "tokens_per_second": 1400.0}]) + "\n")
  validation = tmp_path / "validation"
  validation.mkdir()
  (validation / "results.json").write_text(json.dumps({"evaluations": [
      {"step": 500, "bleu": 28.0}, {"step": 250, "bleu": 20.0}]}))
  out = tmp_path / "out"

  assert teacher_vs_yardstick.main([
      "--yardstick", str(yardstick), "--teacher", str(teacher), "--teacher_validation",
      str(validation), "--teacher_test_bleu", "31.0", "--output", str(out)]) == 0
  report = json.loads((out / "teacher_vs_yardstick.json").read_text())
  assert [(p["step"], p["minutes"], p["validation_bleu"]) for p in report["teacher"]["curve"]] == [
      (250, 10.0, 20.0), (500, 20.0, 28.0)]
  assert report["teacher"]["target_tokens_per_s"] == 1300.0
  assert report["teacher"]["test_bleu"] == 31.0 and report["teacher"]["steps"] == 500
  assert [(p["step"], round(p["minutes"], 2)) for p in report["yardstick"]["curve"]] == [
      (300, 15.02), (600, 30.03)]
  assert report["yardstick"]["test_bleu"] == 30.5
  markdown = (out / "teacher_vs_yardstick.md").read_text()
  assert "| teacher | 500 | 20.0 | 1300 | 31.00 |" in markdown
  assert "| yardstick | 600 | 30.0 | 25.00 |" in markdown
  assert (out / "teacher_vs_yardstick.png").stat().st_size > 0
