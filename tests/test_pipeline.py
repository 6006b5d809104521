"""`padir.pipeline`'s resumable stages, and `benchmarks/multi30k.py` on them (its commands
replaced by a recorder: the pipeline's logic, not hours of training)."""
import pytest

from benchmarks import multi30k
from padir import files
from padir import pipeline


def test_finished_stages_are_recorded_and_skipped(tmp_path):
  calls = []
  stages = pipeline.Stages(str(tmp_path), {"a": 10, "b": 20})
  assert stages.run("a", lambda: calls.append("a") or {"pairs": 3})
  assert not stages.all_done()
  record = files.read_json(str(tmp_path / pipeline.STAGES_FILE))
  assert record["a"]["pairs"] == 3 and record["a"]["budget_s"] == 10 and "b" not in record

  again = pipeline.Stages(str(tmp_path), {"a": 10, "b": 20})  # A new run, the same workdir.
  assert not again.run("a", lambda: calls.append("a again"))
  assert again.run("b", lambda: calls.append("b"))
  assert calls == ["a", "b"] and again.all_done()


def test_a_failing_stage_is_not_recorded(tmp_path):
  stages = pipeline.Stages(str(tmp_path), {"a": 10})
  with pytest.raises(ZeroDivisionError):
    stages.run("a", lambda: 1 / 0)
  assert not pipeline.Stages(str(tmp_path), {"a": 10}).done("a")


def test_multi30k_runs_its_stages_once_and_resumes(tmp_path, monkeypatch):
  root = tmp_path / "m30k"
  root.mkdir()
  (root / "teacher.done").write_text("2026-11-29T23:19:00Z\n")  # The shell script's marker.
  commands, fail = [], {"stage": "student_raw"}

  def call(command, cwd, env):
    assert cwd == multi30k.REPO and env["JAX_NUM_CPU_DEVICES"]
    commands.append(command)
    return 3 if fail["stage"] and f"--model_dir={root}/{fail['stage']}" in command else 0

  monkeypatch.setattr(multi30k.subprocess, "call", call)
  argv = ["--root", str(root), "--student_seconds", "60"]
  assert multi30k.main(argv) == 1  # student_raw failed: evaluate did not run.
  assert [c[3] for c in commands] == ["distill", "train", "train"]
  assert "--gin.trainer.train.max_train_seconds=60.0" in commands[1]
  assert f"--gin_file={root}/distilled/task.gin" in commands[1]
  stages = files.read_json(str(root / pipeline.STAGES_FILE))
  assert set(stages) == {"teacher", "distill", "student_distilled"}
  assert stages["teacher"]["marker"] == str(root / "teacher.done")
  assert stages["distill"]["command"].split()[3:5] == ["distill", "--teacher_dir"]

  commands.clear()
  fail["stage"] = None
  assert multi30k.main(argv) == 0  # Resumes: the failed stage, the CTC student, the report.
  assert [c[3] for c in commands[:2]] + commands[2][2:3] == [
      "train", "train", "benchmarks.multi30k_report"]
  assert "--gin_file=models/ctc_tiny.gin" in commands[1]
  assert commands[2][-2:] == ["--students", "distilled,raw,ctc_distilled"]
  assert set(files.read_json(str(root / pipeline.STAGES_FILE))) == {
      "teacher", "distill", "student_distilled", "student_raw", "student_ctc_distilled",
      "evaluate"}
  commands.clear()
  assert multi30k.main(argv) == 0 and commands == []
  with pytest.raises(SystemExit):
    multi30k.parse_args(["--students", "distilled,nonsense"])
