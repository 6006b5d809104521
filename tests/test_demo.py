"""`padir demo` at the reduced size: every stage runs, every system gets every field, the report
files exist, a second run reuses the finished stages (fast, the same results), and the raw-data
student can be added to a finished run."""
import dataclasses
import math
import os
import shutil
import time

import pytest

from padir import demo
from padir import files
from padir import pipeline
from padir import reporting
from padir.commands import demo as demo_command

SYSTEMS = ["ar_greedy", "ar_beam4"] + [f"padir_distilled@{k}" for k in demo.ITERATIONS]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
  """A reduced demo, run twice in one workdir: (workdir, first results, seconds of the second)."""
  workdir = str(tmp_path_factory.mktemp("demo") / "work")
  assert demo_command.main(["--workdir", workdir, "--size", "reduced"]) == 0
  first = files.read_json(os.path.join(workdir, reporting.RESULTS_JSON))
  stages = files.read_json(os.path.join(workdir, pipeline.STAGES_FILE))
  start = time.perf_counter()
  assert demo_command.main(["--workdir", workdir, "--size", "reduced"]) == 0
  seconds = time.perf_counter() - start
  assert files.read_json(os.path.join(workdir, pipeline.STAGES_FILE)) == stages  # Nothing re-ran.
  return workdir, first, seconds


def test_every_system_has_every_field(demo_run):
  _, results, _ = demo_run
  rows = results["systems"]
  assert [r["name"] for r in rows] == SYSTEMS
  for row in rows:
    for field in reporting.RESULT_FIELDS:
      assert field in row, (row["name"], field)
    assert row["model"] == ("ar" if row["name"].startswith("ar_") else "padir")
    if row["model"] == "ar":
      assert row["iterations"] is None
    else:
      assert row["iterations"] == int(row["name"].split("@")[1])
    for field in ("bleu", "chrf", "stutter_rate", "latency_ms_batch1",
                  "sentences_per_s_batch64", "speedup_batch1"):
      assert math.isfinite(row[field]), (row["name"], field, row[field])
    assert 0 <= row["bleu"] <= 100 and 0 <= row["chrf"] <= 100
    assert 0 <= row["stutter_rate"] <= 1
    assert row["latency_ms_batch1"] > 0 and row["sentences_per_s_batch64"] > 0
  assert results["checks"]["every_field"]
  assert set(results["stages"]) == set(demo.STAGES) - {"student_raw"}


def test_report_files(demo_run):
  workdir, results, _ = demo_run
  with open(os.path.join(workdir, reporting.RESULTS_MD)) as f:
    markdown = f.read()
  assert results["systems"][0]["bleu_signature"] in markdown
  for name in SYSTEMS:
    assert f"| {name} |" in markdown
  for png in (reporting.TRADEOFF_PNG, reporting.LEARNING_CURVES_PNG):
    with open(os.path.join(workdir, png), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  teacher = reporting.training_curve(os.path.join(workdir, "teacher"))
  assert teacher["steps"][-1] == demo.SIZES["reduced"].teacher_steps
  assert teacher["minutes"] == sorted(teacher["minutes"]) and teacher["minutes"][0] > 0
  for name in SYSTEMS:
    with open(os.path.join(workdir, "hypotheses", f"{name}.txt")) as f:
      assert len(f.read().splitlines()) == results["test_sentences"]


def test_distillation_translates_sources_that_no_split_holds(demo_run):
  """The distillation translates fresh sources of the corpus's language: on its own training
  split a teacher returns the memorised (multi-modal) references, which distils nothing."""
  workdir, _, _ = demo_run
  size = demo.SIZES["reduced"]
  with open(os.path.join(workdir, demo.DISTILL_SOURCES)) as f:
    sources = f.read().splitlines()
  assert len(sources) == size.num_distill_sources
  ar_task, _ = demo.prepare_corpus(size)
  known = {s for split in ("train", "validation", "test")
           for s in reporting.task_texts(ar_task, split)[0]}
  assert not known & set(sources)
  distilled = files.read_json(os.path.join(workdir, "distilled", "distill.json"))
  assert distilled["sources"]["source_file"].endswith(demo.DISTILL_SOURCES)


def test_second_run_reuses_finished_stages(demo_run):
  workdir, results, seconds = demo_run
  assert seconds < 30, f"the second run took {seconds:.0f} s: stages were not reused"
  assert files.read_json(os.path.join(workdir, reporting.RESULTS_JSON)) == results


def test_reevaluate_keeps_the_models_and_records_the_decoding_options(demo_run, tmp_path):
  workdir = str(tmp_path / "work")
  shutil.copytree(demo_run[0], workdir)
  checkpoints = os.path.join(workdir, "student_distilled", "checkpoints")
  before = {name: os.path.getmtime(os.path.join(checkpoints, name))
            for name in os.listdir(checkpoints)}
  assert demo_command.main(["--workdir", workdir, "--size", "reduced", "--reevaluate",
                            "--padir_decoder_params", '{"rejecter_fraction": 0.5}']) == 0
  results = files.read_json(os.path.join(workdir, reporting.RESULTS_JSON))
  assert results["padir_decoder_params"] == {"rejecter_fraction": 0.5}
  assert "--reevaluate" in results["command"] and results["date"] != demo_run[1]["date"]
  assert {name: os.path.getmtime(os.path.join(checkpoints, name))
          for name in os.listdir(checkpoints)} == before


def test_refuses_a_workdir_of_another_size(demo_run, capsys):
  workdir, _, _ = demo_run
  assert demo_command.main(["--workdir", workdir, "--size", "default"]) == 1
  assert "other settings" in capsys.readouterr().err


def test_student_ablation_on_the_demo(demo_run, tmp_path):
  """benchmarks/student_ablation.py on the reduced demo: a trained and a decode-only variant,
  the JSON, the markdown table and the learning-curve plot."""
  from benchmarks import student_ablation  # pylint: disable=g-import-not-at-top
  workdir, _, _ = demo_run
  output = str(tmp_path / "ablation")
  assert student_ablation.main(["--demo", workdir, "--runs", str(tmp_path / "runs"),
                                "--output", output, "--variants", "recipe,one_length",
                                "--steps", "4"]) == 0
  results = files.read_json(os.path.join(output, "results.json"))
  assert set(results["variants"]) == {"recipe", "one_length"}
  assert results["variants"]["one_length"]["trained_as"] == "recipe"
  for row in results["variants"].values():
    for k in student_ablation.ITERATIONS:
      assert 0 <= row[f"bleu@{k}"] <= 100
    assert 0 <= row["length_exact"] <= row["length_within_1"] <= row["length_within_2"] <= 1
    assert row["curve"]  # BLEU at each saved step.
  for baseline in results["length_baselines"].values():
    assert 0 <= baseline["length_exact"] <= baseline["length_within_2"] <= 1
  with open(os.path.join(output, "results.md")) as f:
    assert "| one_length |" in f.read()
  with open(os.path.join(output, "learning_curves.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert student_ablation.main(["--demo", workdir, "--variants", "nonsense"]) == 1


def test_checks_with_and_without_the_raw_student():
  def rows(bleu, latency):
    return [{"name": name, "model": "ar" if name.startswith("ar") else "padir",
             "iterations": None if name.startswith("ar") else int(name.rsplit("@", 1)[1]),
             "bleu": b, "chrf": 1.0, "stutter_rate": 0.0,
             "latency_ms_batch1": latency.get(name, 1.0), "sentences_per_s_batch64": 1.0}
            for name, b in bleu.items()]

  bleu = {"ar_greedy": 30.0, "ar_beam4": 32.0}
  bleu.update({f"padir_distilled@{k}": 25.0 + k for k in reporting.ITERATIONS})
  # Only @1 and @2 are faster than AR greedy (latency 1.0): the best of them is @2.
  latency = {"padir_distilled@1": 0.5, "padir_distilled@2": 0.7}
  alone = reporting.checks(rows(bleu, latency))
  assert alone["distilled_at_least_raw"] is None
  assert alone["students_mean_bleu_by_iterations"] == [26.0, 27.0, 29.0, 33.0]
  assert alone["best_fast_point"] == "padir_distilled@2"
  assert alone["best_fast_point_minus_ar_greedy"] == -3.0
  bleu.update({f"padir_raw@{k}": 27.0 for k in reporting.ITERATIONS})
  latency["padir_raw@1"] = 0.4
  bleu["padir_raw@1"] = 29.5
  both = reporting.checks(rows(bleu, latency))
  assert both["distilled_at_least_raw"] is False
  assert both["best_fast_point"] == "padir_raw@1"
  assert both["best_fast_point_minus_ar_greedy"] == -0.5
  assert reporting.checks(rows(bleu, {}))["best_fast_point"] is None
  assert "n/a" in reporting._yes(None)  # pylint: disable=protected-access
  # A benchmark's student of another name (benchmarks/multi30k_report.py --students ctc45).
  other = {"ar_greedy": 30.0, "ar_beam4": 32.0}
  other.update({f"padir_ctc45@{k}": 20.0 + k for k in reporting.ITERATIONS})
  named = reporting.checks(rows(other, {"padir_ctc45@1": 0.5}))
  assert named["students_mean_bleu_by_iterations"] == [21.0, 22.0, 24.0, 28.0]
  assert named["distilled_at_1_minus_ar_greedy"] is None and named["distilled_at_least_raw"] is None
  assert named["best_fast_point"] == "padir_ctc45@1"
  # Students evaluated at some K only (multi30k_report --iterations 1,2).
  some = {name: b for name, b in other.items() if not name.endswith(("@4", "@8"))}
  some_checks = reporting.checks(rows(some, {}))
  assert some_checks["students_mean_bleu_by_iterations"] == [21.0, 22.0]
  assert some_checks["students_iterations"] == [1, 2]


def test_the_student_is_an_aligned_canvas_model(demo_run):
  workdir, results, _ = demo_run
  with open(os.path.join(workdir, "student_distilled", "config.gin")) as f:
    assert "ctc.CTCModel" in f.read()
  assert not os.path.exists(os.path.join(workdir, "student_raw"))
  assert "best_fast_point_minus_ar_greedy" in results["checks"]


def test_the_raw_data_student_joins_a_finished_run(demo_run, tmp_path, capsys):
  """--raw_student on a finished default run trains that student alone (the rest is reused) and
  evaluates both; the workdir then refuses to run without it."""
  workdir = str(tmp_path / "work")
  shutil.copytree(demo_run[0], workdir)
  before = files.read_json(os.path.join(workdir, pipeline.STAGES_FILE))
  assert demo_command.main(["--workdir", workdir, "--size", "reduced", "--raw_student"]) == 0
  results = files.read_json(os.path.join(workdir, reporting.RESULTS_JSON))
  names = [r["name"] for r in results["systems"]]
  assert names == SYSTEMS[:2] + [f"padir_{data}@{k}" for data in ("raw", "distilled")
                                 for k in demo.ITERATIONS]
  stages = files.read_json(os.path.join(workdir, pipeline.STAGES_FILE))
  assert set(stages) == set(demo.STAGES)
  assert {s: stages[s] for s in ("teacher", "distill", "student_distilled")} == {
      s: before[s] for s in ("teacher", "distill", "student_distilled")}  # Reused.
  with open(os.path.join(workdir, "student_raw", "config.gin")) as f:
    assert "ctc.CTCModel" in f.read()
  assert results["checks"]["distilled_at_least_raw"] is not None
  assert demo_command.main(["--workdir", workdir, "--size", "reduced"]) == 1
  assert "raw_student True" in capsys.readouterr().err


def test_demo_size_checks_the_students_start():
  size = demo.SIZES["reduced"]
  with pytest.raises(ValueError, match="student_init_step"):
    dataclasses.replace(size, student_init_step=size.teacher_steps + 1)
  with pytest.raises(ValueError, match="student_steps"):
    dataclasses.replace(size, student_steps=0)


def test_a_model_dir_without_a_training_log_has_empty_curves(tmp_path):
  """A dir made to hold one checkpoint of a run (benchmarks name one student per step) has no
  metrics.jsonl: its learning curve is empty instead of failing the report after evaluating."""
  curve = reporting.training_curve(str(tmp_path))
  assert curve and all(values == [] for values in curve.values())


def test_the_plot_has_a_series_per_student_whatever_its_name(tmp_path):
  rows = [dict(name=name, bleu=20.0 + i, latency_ms_batch1=10.0 + i, iterations=k)
          for i, (name, k) in enumerate([("ar_greedy", None), ("ar_beam4", None),
                                         ("padir_beam750@1", 1), ("padir_beam750@2", 2),
                                         ("padir_raw@1", 1)])]
  groups = reporting.plot_groups(rows)
  assert {k: [r["name"] for r in v] for k, v in groups.items()} == {
      "ar": ["ar_greedy", "ar_beam4"], "padir_beam750": ["padir_beam750@1", "padir_beam750@2"],
      "padir_raw": ["padir_raw@1"]}
  reporting.tradeoff_plot(rows, str(tmp_path / "tradeoff.png"))
  assert (tmp_path / "tradeoff.png").stat().st_size > 0
