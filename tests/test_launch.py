"""Sweeps (`launch.sweeps`), the local runner (`launch.local`, `launch.trial`, `launch.summary`)
and the XManager launcher's dry run (`launch.xm_launch`)."""
import csv
import dataclasses
import os
import shlex
import socket

import pytest

from launch import local
from launch import sweeps
from launch import trial as trial_lib
from launch import xm_launch
from launch.sweeps import GIN_FILE, GinExpr, Sweep, product, sweep, union, zipit
from padir import files

ITERATIONS = "decoding.PadirDecodeConfig.num_decode_iterations"
BASE = ["models/padir_tiny.gin", "runs/train.gin"]


# ------------------------------------------------------------------------------------------------
# Sweep definitions.


def test_product_zip_union_and_names():
  grid = product(sweep("DECODER_INPUT_SCHEME", ["random", "mask"]),
                 sweep("models.TrainingRecipe.num_train_stages", [1, 2]))
  assert [sweeps.point_name(p) for p in grid] == [
      "DECODER_INPUT_SCHEME=random,num_train_stages=1",
      "DECODER_INPUT_SCHEME=random,num_train_stages=2",
      "DECODER_INPUT_SCHEME=mask,num_train_stages=1",
      "DECODER_INPUT_SCHEME=mask,num_train_stages=2"]
  pairs = zipit(sweep("a.x", [1, 2]), sweep("b.y", ["p", "q"]))
  assert [sweeps.describe(p) for p in pairs] == [{"a.x": "1", "b.y": "p"},
                                                {"a.x": "2", "b.y": "q"}]
  one_at_a_time = union(sweep("a.x", [1, 2]), sweep("a.x", [2, 3]), sweep("b.y", ["p"]))
  assert [sweeps.point_name(p) for p in one_at_a_time] == ["x=1", "x=2", "x=3", "y=p"]
  # Equal short names keep their full names; labels name values; GinExpr is verbatim.
  point = product(sweep("a.rate", [1]), sweep("b.rate", {"low": GinExpr("%LOW")}))[0]
  assert sweeps.point_name(point) == "a.rate=1,b.rate=low"
  assert [s.gin_value() for s in point] == ["1", "%LOW"]


@pytest.mark.parametrize("make, message", [
    (lambda: product(sweep("a.x", [1]), sweep("a.x", [2])), "same name twice"),
    (lambda: zipit(sweep("a.x", [1, 2]), sweep("b.y", [1])), "equal length"),
    (lambda: sweep("not a name", [1]), "not a gin binding name"),
    (lambda: sweep("a.x", []), "no values"),
    (lambda: Sweep("s", BASE, "t", train=sweep("a.x", [1]), decode=sweep("a.x", [2])),
     "both train and decode"),
    (lambda: Sweep("s", BASE, "t", decode=sweep(GIN_FILE, ["f.gin"])), "put it in train"),
    (lambda: Sweep("s", BASE, "t", train=sweep("a.x", ["p/q", "p_q"])), "same name"),
    (lambda: Sweep("s", BASE, "t", train=[1, 2]), "expected points"),
])
def test_bad_sweeps_are_refused(make, message):
  with pytest.raises(sweeps.SweepError, match=message):
    make()


def test_trials_share_training_and_commands():
  s = Sweep("s", BASE, "builtin_padir",
            train=[{"DECODER_INPUT_SCHEME": "mask"},
                   {"DECODER_INPUT_SCHEME": "mask", GIN_FILE: "/d/task.gin"}],
            decode=sweep(ITERATIONS, [1, 4]), bindings={"TRAIN_STEPS": 10},
            eval_max_examples=5)
  runs, trials = s.runs(), s.trials()
  assert len(runs) == 2 and len(trials) == 4
  assert [t.run for t in trials] == [runs[0], runs[0], runs[1], runs[1]]
  assert s.parameters() == ["DECODER_INPUT_SCHEME", GIN_FILE, ITERATIONS]
  assert s.train_args(runs[1], "/r/m", ["--gin.SEED=1"]) == [
      "--gin_file=models/padir_tiny.gin", "--gin_file=runs/train.gin",
      "--gin_file=/d/task.gin", "--gin.TRAIN_STEPS=10", '--gin.DECODER_INPUT_SCHEME="mask"',
      "--gin.SEED=1", "--model_dir=/r/m"]
  assert s.eval_args(trials[1], "/r/m", "/r/e", watch=True) == [
      "--checkpoint_dir=/r/m", "--task=builtin_padir", "--split=test", "--output=/r/e",
      "--module=tasks.builtin", "--max_examples=5", f"--gin.{ITERATIONS}=4", "--watch"]


@pytest.mark.parametrize("name, runs, trials", [
    ("sweeps/builtin_decoding.py", 3, 12),
    ("sweeps/builtin_ablations.py", 12, 72),
    ("sweeps/builtin_distillation.py", 2, 8),
    ("sweeps/wmt14_ablations.py", 13, 78),
])
def test_shipped_sweeps_load(name, runs, trials):
  s = sweeps.load(name)
  assert (len(s.runs()), len(s.trials())) == (runs, trials)
  for run in s.runs():
    for f in s.train_args(run, "/m")[:4]:
      assert os.path.isfile(sweeps.resolve_path(f.split("=", 1)[1])), f


def test_load_refuses_a_file_without_sweep(tmp_path):
  path = tmp_path / "empty.py"
  path.write_text("X = 1\n")
  with pytest.raises(sweeps.SweepError, match="must define SWEEP"):
    sweeps.load(str(path))
  with pytest.raises(sweeps.SweepError, match="no such file"):
    sweeps.load(str(tmp_path / "missing.py"))


# ------------------------------------------------------------------------------------------------
# XManager.


@pytest.fixture
def no_network(monkeypatch):
  """Any attempt to open a connection fails the test."""
  def refuse(*args, **kwargs):
    raise AssertionError(f"a network connection was attempted: {args}")
  monkeypatch.setattr(socket.socket, "connect", refuse)
  monkeypatch.setattr(socket, "create_connection", refuse)


def _jobs(output: str):
  """[(kind, title, requirements, command argv)] from the dry run's listing."""
  jobs, lines = [], output.splitlines()
  for i, line in enumerate(lines):
    if line.startswith("["):
      kind, title = line.split("] ", 1)[1].split(" ", 1)
      block = lines[i + 1:i + 4]
      req = next(b for b in block if b.startswith("  requirements: "))
      command = next(b for b in block if b.startswith("  command: "))
      jobs.append((kind, title, req.split(": ", 1)[1],
                   shlex.split(command.split(": ", 1)[1])))
  return jobs


def test_wmt14_dry_run_lists_every_job(capsys, no_network):
  assert xm_launch.main(["--sweep", "sweeps/wmt14_ablations.py", "--platform", "tpu",
                         "--root", "/gcs/b/wmt14", "--data_dir", "/gcs/b/data",
                         "--dry_run", "--gin.TRAIN_STEPS=1000"]) == 0
  out = capsys.readouterr().out
  assert out.startswith("sweep wmt14_ablations: 91 jobs (13 train, 78 eval)")
  jobs = _jobs(out)
  assert len(jobs) == 91
  s = sweeps.load("sweeps/wmt14_ablations.py")
  trains = [j for j in jobs if j[0] == "train"]
  evals = [j for j in jobs if j[0] == "eval"]
  assert [t[1] for t in trains] == [r.name for r in s.runs()]
  assert [e[1] for e in evals] == [t.name for t in s.trials()]
  for kind, title, req, argv in trains:
    assert req.startswith("xm.JobRequirements(tpu_v4=xm.Topology('2x2x2')")
    assert argv[:2] == ["padir", "train"] and argv[-1] == "--multihost"
    assert "--gin_file=models/padir_base.gin" in argv and "--gin.TRAIN_STEPS=1000" in argv
    assert f"--model_dir=/gcs/b/wmt14/{title}/model" in argv
  assert '--gin.decoding.RefinementScheme.remasking_scheme="logits_sum"' in trains[4][3]
  assert any(a.endswith("/task.gin") for a in trains[-1][3])  # raw vs distilled
  for kind, title, req, argv in evals:
    assert "tpu_v4=xm.Topology('2x2x1')" in req
    run, decode = title.split("/")
    command = argv
    assert command[:2] == ["padir", "eval"] and "--watch" in command
    assert f"--checkpoint_dir=/gcs/b/wmt14/{run}/model" in command
    assert f"--output=/gcs/b/wmt14/{run}/eval/{decode}" in command
    assert "--task=wmt14_en_de_padir" in command and "--module=tasks.wmt" in command
  assert "PADIR_DATA_DIR=/gcs/b/data" in out


def test_gpu_requirements_and_errors(capsys, no_network):
  assert xm_launch.main(["--sweep", "sweeps/builtin_decoding.py", "--platform", "gpu",
                         "--root", "/r", "--train_accelerator", "h100=4", "--dry_run"]) == 0
  jobs = _jobs(capsys.readouterr().out)
  assert "h100=4.0" in jobs[0][2] and "--multihost" not in jobs[0][3]
  assert "a100=1.0" in jobs[1][2]
  assert xm_launch.main(["--sweep", "sweeps/builtin_decoding.py", "--platform", "gpu",
                         "--root", "/r", "--train_accelerator", "tpu_v4=2x2", "--dry_run"]) == 2
  assert "is not a GPU" in capsys.readouterr().err


def test_missing_xmanager_names_the_extra(capsys, monkeypatch):
  monkeypatch.setattr(xm_launch, "xm", None)
  monkeypatch.setattr(xm_launch, "_XM_IMPORT_ERROR", ImportError("No module named 'xmanager'"),
                      raising=False)
  assert xm_launch.main(["--sweep", "sweeps/builtin_decoding.py", "--platform", "tpu",
                         "--root", "/r", "--dry_run"]) == 2
  assert "pip install -e '.[xm]'" in capsys.readouterr().err


def test_jobs_added_to_an_experiment(no_network):
  from xmanager import xm_mock  # pylint: disable=g-import-not-at-top
  from xmanager.xm import utils  # pylint: disable=g-import-not-at-top
  s = sweeps.load("sweeps/builtin_decoding.py")
  jobs = xm_launch.build_jobs(s, "/r", "tpu", "tpu_v4=2x2x1", "tpu_v4=2x2x1", {"A": "1"})
  executors = []

  def make_executor(requirements):
    executors.append(requirements)
    return xm_mock.MockExecutor()

  with xm_mock.MockExperiment() as experiment:
    xm_launch.add_jobs(experiment, xm_mock.MockExecutable(), jobs, make_executor)
  assert experiment.work_unit_count == len(jobs) == 15
  launched = experiment.launched_jobs
  assert [j.name for j in launched] == [j.kind for j in jobs]
  assert launched[0].args.to_list(utils.ARGV_ESCAPER) == jobs[0].args
  assert launched[0].env_vars == {"A": "1"}
  assert executors == [j.requirements for j in jobs]


# ------------------------------------------------------------------------------------------------
# The local runner.


def fake_run_group(plan):
  """A worker that 'runs' each trial: BLEU = iterations; one training run fails."""
  if "fail" in plan.name:
    raise RuntimeError("worker crashed")
  records = []
  for t in plan.evals:
    iterations = float(t.gin_bindings[0].split("=")[1])
    record = dict(t.record, status="done", step=3, bleu=iterations, chrf=2 * iterations,
                  stutter_rate=0.01, length_ratio=1.0, mean_iterations=iterations,
                  num_examples=5, bleu_signature="sig", speed={"ms_per_sentence": 1.5})
    os.makedirs(t.output_dir, exist_ok=True)
    files.write_json(os.path.join(t.output_dir, trial_lib.TRIAL_FILE), record)
    records.append(record)
  return records


def test_execute_in_worker_processes_reports_failures(tmp_path):
  s = Sweep("s", BASE, "t", train=sweep("DECODER_INPUT_SCHEME", ["ok", "fail"]),
            decode=sweep(ITERATIONS, [1, 2]))
  plans = local.build_plans(s, str(tmp_path))
  results = local.execute(plans, parallel=2, run_fn=fake_run_group)
  assert sorted(r["status"] for r in results.values()) == ["done", "done", "failed", "failed"]
  assert "worker crashed" in results["DECODER_INPUT_SCHEME=fail/num_decode_iterations=1"]["error"]
  assert [len(p.evals) for p in local.pending(plans)] == [2]  # Only the failed run is left.


SCHEME = "decoding.RefinementScheme.decoder_input_scheme"


def _tiny_sweep_file(tmp_path, corpus) -> str:
  """A real sweep over the tiny test corpus: one training run, 2 decodings."""
  from conftest import TINY_MAX_LENGTH  # pylint: disable=g-import-not-at-top
  base = tmp_path / "base.gin"
  base.write_text("\n".join([
      "from __gin__ import dynamic_registration",
      "from padir import network",
      "from padir import preprocessors",
      "from padir import trainer",
      f"MIXTURE_OR_TASK_NAME = '{corpus['padir_task']}'",
      f"TASK_FEATURE_LENGTHS = {{'inputs': {TINY_MAX_LENGTH}, 'targets': {TINY_MAX_LENGTH}}}",
      "network.get_config.name = 'test'",
      "network.get_config.dropout_rate = 0.0",
      "trainer.train.eval_dataset_fn = None",
      "trainer.train.progress_bar = False",
      "TRAIN_STEPS = 3", "BATCH_SIZE = 8", "SAVE_EVERY = 3",
  ]) + "\n")
  path = tmp_path / "tiny_sweep.py"
  path.write_text("\n".join([
      "from launch.sweeps import Sweep, sweep",
      "SWEEP = Sweep(",
      "    name='tiny',",
      f"    gin_files=['models/padir_tiny.gin', 'runs/train.gin', {str(base)!r}],",
      f"    train=sweep('{SCHEME}', ['mask']),",
      f"    decode=sweep('{ITERATIONS}', [1, 2]),",
      f"    eval_task={corpus['padir_task']!r},",
      "    eval_max_examples=6)",
  ]) + "\n")
  return str(path)


@pytest.mark.slow
def test_a_real_trial_then_the_summary(tmp_path, tiny_corpus, capsys):
  """train + eval + speed through the padir entry points (in this process, as a worker runs
  them), then `launch.local` finds everything done and writes the summary."""
  sweep_file = _tiny_sweep_file(tmp_path, tiny_corpus)
  root = str(tmp_path / "root")
  [plan] = local.build_plans(sweeps.load(sweep_file), root)
  plan = dataclasses.replace(plan, speed_sentences=4, speed_repeats=1)
  records = trial_lib.run_group(plan)
  assert [r["status"] for r in records] == ["done", "done"], records
  for record, iterations in zip(records, (1, 2)):
    assert record["step"] == 3 and record["num_examples"] == 6
    assert record["settings"] == {SCHEME: "mask", ITERATIONS: str(iterations)}
    assert record["mean_iterations"] <= iterations
    assert record["speed"]["sentences"] == 4 and record["speed"]["ms_per_sentence"] > 0
    assert record["commands"]["eval"].startswith("padir eval --checkpoint_dir=")
  assert os.path.isfile(os.path.join(root, "decoder_input_scheme=mask", "train.log"))  # Short.

  capsys.readouterr()
  assert local.main(["--sweep", sweep_file, "--root", root]) == 0
  assert "2 trial(s) over 1 training run(s); 0 to run" in capsys.readouterr().out
  with open(os.path.join(root, "summary.csv")) as f:
    rows = list(csv.DictReader(f))
  assert [r[ITERATIONS] for r in rows] == ["1", "2"]
  assert [float(r["bleu"]) for r in rows] == [r["bleu"] for r in records]
  assert all(float(r["ms_per_sentence"]) > 0 and r["status"] == "done" for r in rows)
  summary = open(os.path.join(root, "summary.md")).read()
  assert f"| {SCHEME} | {ITERATIONS} | BLEU" in summary
  assert records[0]["commands"]["train"] in summary
  assert os.path.isfile(os.path.join(root, "plots", f"{ITERATIONS}.png"))
  assert not os.path.exists(os.path.join(root, "plots", f"{SCHEME}.png"))
  # Other training arguments in the same root are refused, run by run and trial by trial.
  other = local.build_plans(sweeps.load(sweep_file), root, ["--gin.SEED=1"])
  with pytest.raises(ValueError, match="other arguments"):
    local.check_runs(other)
  with pytest.raises(ValueError, match="other commands"):
    local.pending(other)
