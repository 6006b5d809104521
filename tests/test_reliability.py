"""Reliability, in one place: each error a user can meet (docs/troubleshooting.md) names the file,
line, flag or checkpoint and what to do, as one `padir <command>: error: ...` line and a non-zero
exit status, never a traceback from inside JAX or TensorFlow; crashes lose nothing; runs are
reproducible.

Commands run in-process through their `main(argv)`; the crash test kills `padir train` in a
subprocess. Checkpoints are the session's tiny trained runs (tests/conftest.py).
"""
import glob
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import gin
import jax
import numpy as np
import pytest

from padir import checkpoints
from padir import cli
from padir import evaluation
from padir.commands import distill as distill_command
from padir.commands import eval as eval_command
from padir.commands import infer as infer_command
from padir.commands import train as train_command
from test_checkpoints import _corrupt
from test_trainer import LENGTH, REPO, RUN_GIN, VOCAB, python_env, run_python, toy_dataset_fn

TIMING_METRICS = ("steps_per_second", "tokens_per_second")
SMALL = ["--gin.TranslatorOptions.length_buckets=(16,)", "--gin.TranslatorOptions.batch_size=8"]
GREEDY = ["--gin.decoding.ARDecodeConfig.decode_method='greedy'", *SMALL]


@pytest.fixture
def command(capsys, caplog):
  """`run(main, *argv) -> (exit status, stderr)`: a command in-process, its gin config cleared
  before and after; the `padir` loggers' records go to `caplog` (not to stderr, which holds only
  what the command prints), and stderr never holds a traceback."""
  logger = logging.getLogger("padir")
  saved = logger.handlers[:]
  logger.handlers = [caplog.handler]  # The commands add a stderr handler only when none is set.

  def run(main, *argv):
    gin.clear_config()  # `padir train` locks the config it parses.
    try:
      status = main(list(argv))
    finally:
      gin.clear_config()
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return status, err

  yield run
  logger.handlers = saved


def assert_error(result, name, *fragments, status=1):
  """`result` of `command` exited with `status` after one `padir NAME: error: ...` line; the
  message (that line and the context lines after it) holds every fragment."""
  exit_status, err = result
  assert exit_status == status, err
  prefix = f"padir {name}: error: "
  assert sum(line.startswith(prefix) for line in err.splitlines()) == 1, err
  message = err[err.index(prefix):]
  for fragment in fragments:
    assert fragment in message, message


def _write(path, content):
  with open(path, "wb") as f:
    f.write(content if isinstance(content, bytes) else content.encode("utf-8"))
  return str(path)


def _task_gin(path, name, **task):
  """An experiment gin file training the tiny AR model on local parallel text (`task`: the
  arguments of `tasks.local.parallel_text_task`)."""
  lines = ["from __gin__ import dynamic_registration", "from padir import network",
           "from padir import trainer", "from tasks import local",
           "MIXTURE_OR_TASK_NAME = @local.parallel_text_task()",
           "local.parallel_text_task:", f"  name = {name!r}", "  flavour = 'ar'",
           "  max_target_length = 32"]
  lines += [f"  {key} = {value!r}" for key, value in task.items()]
  lines += ["TASK_FEATURE_LENGTHS = {'inputs': 32, 'targets': 32}",
            "network.get_config.name = 'test'", "trainer.train.eval_dataset_fn = None"]
  return _write(path, "\n".join(lines) + "\n")


def _train_argv(experiment, model_dir, *flags):
  return ["--gin_file=models/ar_tiny.gin", "--gin_file=runs/train.gin",
          f"--gin_file={experiment}", "--gin.TRAIN_STEPS=2", "--gin.BATCH_SIZE=2",
          f"--model_dir={model_dir}", *flags]


# --------------------------------------------------------------------------- data


BAD_DATA = {  # case: (files to write, task arguments, what the error names)
    "missing file": ({}, {"tsv": "{d}/missing.tsv"}, ["{d}/missing.tsv", "does not exist"]),
    "missing folder": ({}, {"folder": "{d}/nowhere", "src": "en", "tgt": "de"},
                       ["folder {d}/nowhere does not exist"]),
    "missing vocabulary": ({"ok.tsv": "a b\tc d\n"},
                           {"tsv": "{d}/ok.tsv", "vocabulary": "{d}/none.model"},
                           ["SentencePiece model {d}/none.model not found", "padir vocab"]),
    "misaligned files": ({"train.en": "a\nb\nc\n", "train.de": "x\ny\n"},
                         {"folder": "{d}", "src": "en", "tgt": "de"},
                         ["{d}/train.en has 3 lines but {d}/train.de has 2"]),
    "invalid UTF-8": ({"bad.tsv": b"a b\tc d\ne \xff f\tg\n"}, {"tsv": "{d}/bad.tsv"},
                      ["{d}/bad.tsv:2: invalid UTF-8"]),
    "TSV line without a tab": ({"notab.tsv": "a b\tc d\ne f g\n"}, {"tsv": "{d}/notab.tsv"},
                               ["{d}/notab.tsv:2: expected 'source<TAB>target', found 0 tabs"]),
}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_training_data_is_named(case, tiny_corpus, tmp_path, command):
  files, task, fragments = BAD_DATA[case]
  for name, content in files.items():
    _write(tmp_path / name, content)
  fill = lambda text: text.format(d=tmp_path)
  task = {"vocabulary": os.path.join(tiny_corpus["data_dir"], "spm.model"), **task}
  experiment = _task_gin(tmp_path / "task.gin", "reliability_" + re.sub(r"\W", "_", case),
                         **{key: fill(value) for key, value in task.items()})
  assert_error(command(train_command.main, *_train_argv(experiment, tmp_path / "run")), "train",
               *map(fill, fragments))


def test_bad_translation_inputs_are_named(tiny_ar_dir, tmp_path, command):
  missing = str(tmp_path / "missing.txt")
  assert_error(command(infer_command.main, "--checkpoint_dir", tiny_ar_dir, "--input", missing,
                       "--output", "-"), "infer", missing)
  bad = _write(tmp_path / "bad.txt", b"a dog .\n\xc3\x28\n")
  assert_error(command(infer_command.main, "--checkpoint_dir", tiny_ar_dir, "--input", bad,
                       "--output", "-"), "infer", f"{bad}:2: invalid UTF-8")
  assert_error(command(distill_command.main, "--teacher_dir", tiny_ar_dir, "--source_file", missing,
                       "--output", str(tmp_path / "d")), "distill", f"{missing} does not exist")
  notab = _write(tmp_path / "notab.tsv", "a dog .\tein hund .\na cat .\n")
  assert_error(command(distill_command.main, "--teacher_dir", tiny_ar_dir, "--input_tsv", notab,
                       "--output", str(tmp_path / "d")),
               "distill", f"{notab}:2: expected 'source<TAB>target', found 0 tabs")


def test_odd_and_overlong_lines_keep_one_output_line_each(tiny_ar_dir, tmp_path, command,
                                                          caplog):
  lines = ["a dog sees the cat .", "", "   ", "\t \t", "\x00\x01\x07\x7f", "\x1b[31ma cat\x1b[0m",
           "\u2028", "\x0b\x0c\x1c\x1d\x1e\x85", "a\rdog", "a cat . " * 40, "\ufeff\u200b",
           "a\x00dog 😀 ."]
  source = _write(tmp_path / "source.txt", "\n".join(lines) + "\n")
  output = tmp_path / "hypotheses.txt"
  status, err = command(infer_command.main, "--checkpoint_dir", tiny_ar_dir, "--input", source,
                        "--output", str(output), *GREEDY)
  assert status == 0, err
  hypotheses = output.read_text(encoding="utf-8").split("\n")
  assert len(hypotheses) == len(lines) + 1 and hypotheses[-1] == ""  # One line per input line.
  assert all(hypotheses[i] == "" for i in (1, 2, 3, 6, 7, 10))  # Only whitespace: empty.
  assert f"1 of {len(lines)} input lines were longer than 15 pieces and were truncated" in (
      caplog.text)
  # Strict: the overlong line is an error naming it.
  assert_error(command(infer_command.main, "--checkpoint_dir", tiny_ar_dir, "--input", source,
                       "--output", str(output), *GREEDY,
                       "--gin.TranslatorOptions.truncate_long_lines=False"),
               "infer", "longer than 15 pieces", "line(s) 10;", "truncate_long_lines = True")


# --------------------------------------------------------------------------- configuration


def test_gin_typos_name_the_file_or_binding(tiny_ar_dir, tmp_path, command):
  typo = _write(tmp_path / "typo.gin", "from __gin__ import dynamic_registration\n"
                "from padir import trainer\n\ntrainer.train.log_evry = 3\n")
  unknown = _write(tmp_path / "unknown.gin", "train.log_every = 3\ntrian.seed = 1\n")
  run = lambda *flags: command(train_command.main, "--gin_file=models/ar_tiny.gin",
                               "--gin_file=runs/train.gin", *flags)
  assert_error(run(f"--gin_file={typo}"), "train", f"gin file {typo}",
               "Configurable 'trainer.train' doesn't have a parameter named 'log_evry'",
               f'In file "{typo}", line 4', status=2)
  assert_error(run(f"--gin_file={unknown}"), "train", f"gin file {unknown}",
               "No configurable matching 'trian'", f'In file "{unknown}", line 2', status=2)
  assert_error(run("--gin.train.batch_sise=3"), "train", "--gin binding 'train.batch_sise = 3'",
               "doesn't have a parameter named 'batch_sise'", status=2)
  assert_error(run(f"--gin_file={tmp_path}/none.gin"), "train",
               f"--gin_file={tmp_path}/none.gin: no such file", status=2)
  assert_error(command(infer_command.main, "--checkpoint_dir", tiny_ar_dir, "--input", typo,
                       "--output", "-", "--gin.TranslatorOptions.batch_sise=4"),
               "infer", "'TranslatorOptions.batch_sise = 4'", "batch_sise", status=2)


def test_impossible_training_settings_are_named(tiny_corpus, tmp_path, command):
  experiment = _task_gin(tmp_path / "task.gin", "reliability_ok",
                         vocabulary=os.path.join(tiny_corpus["data_dir"], "spm.model"),
                         tsv=_write(tmp_path / "ok.tsv", "a b\tc d\n" * 4))
  run = lambda *flags: command(train_command.main, *_train_argv(experiment, tmp_path / "run", *flags))
  assert_error(run("--gin.MESH_SHAPE=(3, 1)"), "train", "train.mesh_shape=(3, 1)",
               f"must equal the {jax.device_count()} devices", status=2)
  assert_error(run("--gin.NUM_MICROBATCHES=3"), "train", "batch_size=2 is not divisible",
               "num_microbatches", status=2)
  assert_error(run("--gin.MIXTURE_OR_TASK_NAME='tinytest_arr'"), "train",
               "no seqio task or mixture named 'tinytest_arr'; did you mean ['tinytest_ar'")


def test_batch_size_not_divisible_by_the_data_axis(tmp_path):
  gin_file = _write(tmp_path / "toy.gin", RUN_GIN)
  result = run_python(f"""
  import sys
  from padir import cli
  sys.exit(cli.main(["train", "--gin_file={gin_file}", "--model_dir={tmp_path / 'run'}",
                     "--gin.train.batch_size=3"]))
  """, {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
  assert ("padir train: error: batch_size=3 is not divisible by the mesh's data axis (2 x 1 = 2)"
          in result.stderr)


# --------------------------------------------------------------------------- checkpoints


def test_missing_or_empty_checkpoint_dirs_are_named(tiny_ar_dir, tiny_corpus, tmp_path,
                                                    command):
  untrained = tmp_path / "untrained"  # A model dir whose training saved no checkpoint yet.
  (untrained / checkpoints.CHECKPOINTS_SUBDIR).mkdir(parents=True)
  shutil.copy(os.path.join(tiny_ar_dir, checkpoints.CONFIG_FILE), untrained)
  (tmp_path / "empty").mkdir()
  source = _write(tmp_path / "source.txt", "a dog .\n")
  for directory, fragment in ((tmp_path / "nowhere", "does not exist"),
                              (tmp_path / "empty", "has no config.gin"),
                              (untrained, "no complete checkpoint")):
    assert_error(command(infer_command.main, "--checkpoint_dir", str(directory), "--input",
                         source, "--output", "-"),
                 "infer", f"checkpoint dir {directory}", fragment)
    assert_error(command(eval_command.main, "--checkpoint_dir", str(directory), "--task",
                         tiny_corpus["ar_task"], "--output", str(tmp_path / "eval")),
                 "eval", f"checkpoint dir {directory}", fragment)
  assert_error(command(eval_command.main, "--checkpoint_dir", tiny_ar_dir, "--task",
                       "tinytest_arr", "--output", str(tmp_path / "eval")),
               "eval", "no seqio task or mixture named 'tinytest_arr'")


def test_checkpoint_of_another_model_config_names_the_parameters(tiny_ar_dir, tmp_path,
                                                                 command):
  # Training resumed in a model dir with another model config (a toy model).
  toy = _write(tmp_path / "toy.gin", RUN_GIN)
  train = lambda *flags: command(train_command.main, f"--gin_file={toy}", f"--model_dir={tmp_path}",
                                 "--gin.train.num_train_steps=2", *flags)
  assert train()[0] == 0
  assert_error(train("--gin.train.num_train_steps=4", "--gin.ToyModel.dim=24"), "train",
               f"checkpoint {tmp_path}/checkpoints/2 was written by a different model config",
               "params/embedding: checkpoint (32, 16) vs model (32, 24)")
  # Inference with a model config that differs from the checkpoint's.
  source = _write(tmp_path / "source.txt", "a dog .\n")
  assert_error(command(infer_command.main, "--checkpoint_dir", tiny_ar_dir, "--input", source,
                       "--output", "-", "--gin.network.get_config.mlp_dim=48"),
               "infer", "was written by a different model config",
               "params/decoder/layers_0/mlp/wi_0/kernel: checkpoint (32, 64) vs model (32, 48)")


def test_corrupted_checkpoint_falls_back_to_the_previous_one(tiny_ar_dir, tmp_path, command,
                                                             caplog):
  # Inference: the newest checkpoint is unreadable, a newer save was cut short.
  model_dir = tmp_path / "run"
  shutil.copytree(tiny_ar_dir, model_dir)
  _corrupt(model_dir / "checkpoints" / "20")
  (model_dir / "checkpoints" / "30.orbax-checkpoint-tmp-1234" / "params").mkdir(parents=True)
  source = _write(tmp_path / "source.txt", "a dog sees the cat .\n")
  status, err = command(infer_command.main, "--checkpoint_dir", str(model_dir), "--input", source,
                        "--output", str(tmp_path / "out.txt"), *GREEDY)
  assert status == 0, err
  assert f"checkpoint {model_dir}/checkpoints/20 is unreadable" in caplog.text
  assert "falling back to the previous one" in caplog.text
  assert f"translated 1 lines with {model_dir} (step 10)" in caplog.text
  # Training (a toy model): resumes from the previous one and saves the lost step again.
  toy = _write(tmp_path / "toy.gin", RUN_GIN)
  train = lambda: command(train_command.main, f"--gin_file={toy}", f"--model_dir={tmp_path}/toy",
                          "--gin.train.num_train_steps=4", "--gin.train.save_checkpoint_every=2")
  assert train()[0] == 0
  straight, _ = checkpoints.load_params(f"{tmp_path}/toy")
  _corrupt(tmp_path / "toy" / "checkpoints" / "4")
  caplog.clear()
  assert train()[0] == 0
  assert "checkpoints/4 is unreadable" in caplog.text
  assert "deleting the unreadable checkpoint" in caplog.text
  assert f"resumed from {tmp_path}/toy/checkpoints at step 2" in caplog.text
  params, step = checkpoints.load_params(f"{tmp_path}/toy")
  assert step == 4
  jax.tree.map(np.testing.assert_allclose, params, straight)


# --------------------------------------------------------------------------- crashes


def paced_dataset_fn(*, pause_from: int, seconds: float, **kwargs):
  """`test_trainer.toy_dataset_fn`'s batches, with a pause before each one from batch
  `pause_from` on when the run starts from scratch: time for a test to kill it between two
  checkpoints. A resumed run is not slowed down."""
  batches = toy_dataset_fn(**kwargs)
  if kwargs["skip_batches"]:
    return batches

  def paced():
    for index, batch in enumerate(batches):
      if index >= pause_from:
        time.sleep(seconds)
      yield batch

  return paced()


# The tiny AR model (`test` network, dropout on) on toy batches: no TensorFlow to import.
CRASH_GIN = f"""
from __gin__ import dynamic_registration
from padir import models
from padir import network
from padir import special_tokens
from padir import trainer
import test_reliability

VOCABULARY = None
models.ARModel.special_tokens = @special_tokens.SpecialTokens()
special_tokens.SpecialTokens:
  num_pieces = {VOCAB}
  max_target_length = {LENGTH}
network.get_config.name = 'test'

trainer.train:
  model = %MODEL
  model_dir = %MODEL_DIR
  train_dataset_fn = @test_reliability.paced_dataset_fn
  batch_size = 4
  num_train_steps = 24
  save_checkpoint_every = 8
  log_every = 4
  eval_every = None
  progress_bar = False
test_reliability.paced_dataset_fn:
  pause_from = 8  # Checkpoint 8 is saved before batch 8.
  seconds = 1.0
"""


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
  """`padir train` (CRASH_GIN) in a subprocess, SIGKILLed after its first checkpoint, then run
  again with the same flags (in-process: cheaper); and the same run uninterrupted. Returns the
  model dirs (killed, uninterrupted)."""
  root = tmp_path_factory.mktemp("killed")
  flags = ["--gin_file=models/ar_tiny.gin", f"--gin_file={_write(root / 'crash.gin', CRASH_GIN)}"]
  killed = str(root / "killed")
  first_checkpoint = os.path.join(checkpoints.checkpoint_dir(killed), "8")
  with open(root / "killed.log", "w") as log:
    process = subprocess.Popen(
        [sys.executable, "-m", "padir.cli", "train", *flags, f"--model_dir={killed}"],
        env=python_env(), cwd=REPO, stdout=log, stderr=log)
    deadline = time.time() + 300
    while not os.path.isdir(first_checkpoint):  # Renamed into place once complete.
      assert process.poll() is None and time.time() < deadline, (root / "killed.log").read_text()
      time.sleep(0.05)
    process.kill()
    assert process.wait() == -9
  assert os.listdir(checkpoints.checkpoint_dir(killed)) == ["8"]
  straight = str(root / "straight")
  for argv in ([f"--model_dir={killed}"],
               [f"--model_dir={straight}", "--gin.test_reliability.paced_dataset_fn.seconds=0"]):
    gin.clear_config()
    assert train_command.main(flags + argv) == 0
  gin.clear_config()
  return killed, straight


def test_sigkilled_training_resumes_to_the_same_parameters(killed_run):
  killed, straight = killed_run
  with open(os.path.join(killed, checkpoints.RUN_INFO_FILE)) as f:
    assert json.load(f)["start_step"] == 8  # The last complete checkpoint.
  params, step = checkpoints.load_params(killed)
  straight_params, straight_step = checkpoints.load_params(straight)
  assert step == straight_step == 24
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               params, straight_params)


@gin.configurable
def interrupting_dataset_fn(*, interrupt_at: int, **kwargs):
  """`test_trainer.toy_dataset_fn`'s batches; Ctrl-C (SIGINT to this process) while making batch
  `interrupt_at`."""
  for index, batch in enumerate(toy_dataset_fn(**kwargs), start=kwargs["skip_batches"]):
    if index == interrupt_at:
      os.kill(os.getpid(), signal.SIGINT)
    yield batch


def test_ctrl_c_saves_a_checkpoint_and_the_same_command_resumes(tmp_path, command, caplog):
  toy = _write(tmp_path / "toy.gin", RUN_GIN)
  run = lambda: command(train_command.main, f"--gin_file={toy}", f"--model_dir={tmp_path}",
                        "--gin.train.num_train_steps=8",
                        "--gin.train.train_dataset_fn=@interrupting_dataset_fn",
                        "--gin.interrupting_dataset_fn.interrupt_at=3")
  assert run()[0] == 130
  assert "stopped by SIGINT at step 4; a checkpoint was saved" in caplog.text
  assert checkpoints.load_params(str(tmp_path))[1] == 4
  assert run()[0] == 0
  assert f"resumed from {tmp_path}/checkpoints at step 4" in caplog.text
  assert checkpoints.load_params(str(tmp_path))[1] == 8


def test_nonfinite_steps_are_skipped_or_stop_training_with_a_message(tmp_path, command):
  toy = _write(tmp_path / "toy.gin", RUN_GIN)
  run = lambda name, *flags: command(
      train_command.main, f"--gin_file={toy}", f"--model_dir={tmp_path / name}",
      "--gin.train.num_train_steps=4", "--gin.train.save_checkpoint_every=2",
      "--gin.toy_dataset_fn.nan_at=2", *flags)  # Batch 2: step 3.
  assert run("skip")[0] == 0
  with open(tmp_path / "skip" / "metrics.jsonl") as f:
    last = [json.loads(line) for line in f][-1]
  assert last["step"] == 4 and last["skipped_steps"] == 1 and np.isfinite(last["loss"])
  assert_error(run("stop", "--gin.train.skip_nonfinite_steps=False"), "train",
               "non-finite loss or gradients at step 3", "the last checkpoint is step 2",
               "train.skip_nonfinite_steps = True")
  assert checkpoints.load_params(str(tmp_path / "stop"))[1] == 2


def test_interrupted_eval_ends_with_the_same_outputs(tiny_ar_dir, tiny_corpus, tmp_path,
                                                     command, monkeypatch):
  output = tmp_path / "eval"
  argv = ["eval", "--checkpoint_dir", tiny_ar_dir, "--task", tiny_corpus["ar_task"], "--split",
          "test", "--output", str(output), "--checkpoint_step", "all", "--max_examples", "3",
          *GREEDY]
  files = lambda: {os.path.basename(p): open(p).read() for p in glob.glob(f"{output}/*")
                   if not p.endswith(checkpoints.RUN_INFO_FILE)}  # It holds the time.
  assert command(cli.main, *argv)[0] == 0
  straight = files()
  info = json.loads((output / checkpoints.RUN_INFO_FILE).read_text())
  assert info["seed"] == 0 and info["packages"]["jax"] == jax.__version__
  assert "MODEL = @models.ARModel()" in straight[checkpoints.CONFIG_FILE]
  shutil.rmtree(output)

  evaluate = evaluation.evaluate

  def interrupted_at_step_20(translator_, *args, **kwargs):  # Ctrl-C while decoding step 20.
    if translator_.step == 20:
      raise KeyboardInterrupt
    return evaluate(translator_, *args, **kwargs)

  monkeypatch.setattr(evaluation, "evaluate", interrupted_at_step_20)
  status, err = command(cli.main, *argv)
  assert status == 130 and "padir eval: interrupted" in err
  assert "step_10.json" in os.listdir(output) and "step_20.json" not in os.listdir(output)
  monkeypatch.setattr(evaluation, "evaluate", evaluate)
  assert command(cli.main, *argv)[0] == 0
  assert files() == straight


# --------------------------------------------------------------------------- reproducibility


def _metrics(run_dir):
  """metrics.jsonl without the timings."""
  with open(os.path.join(run_dir, "metrics.jsonl")) as f:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_METRICS} for line in f]


def test_same_seed_and_config_give_bit_identical_metrics(killed_run, tiny_ar_dir, tmp_path,
                                                         command):
  killed, straight = killed_run  # The tiny model on toy batches, in two processes.
  assert [m["step"] for m in _metrics(killed)] == [4, 8, 12, 16, 20, 24]
  assert _metrics(killed) == _metrics(straight)
  with open(os.path.join(straight, checkpoints.RUN_INFO_FILE)) as f:
    info = json.load(f)
  assert info["seed"] == 0 and info["packages"]["jax"] == jax.__version__
  with open(os.path.join(straight, checkpoints.CONFIG_FILE)) as f:
    assert "trainer.train.seed = 0" in f.read()
  # The session's tiny AR run again for 10 steps (seqio data: shuffling, tokenizing, batching).
  experiment = os.path.join(os.path.dirname(tiny_ar_dir), "experiment.gin")
  assert command(train_command.main, "--gin_file=models/ar_tiny.gin", "--gin_file=runs/train.gin",
                 f"--gin_file={experiment}", "--gin.TRAIN_STEPS=10", "--gin.BATCH_SIZE=16",
                 f"--model_dir={tmp_path}")[0] == 0
  assert _metrics(tmp_path) == _metrics(tiny_ar_dir)[:1]


def test_distill_dir_has_the_run_record(tiny_ar_dir, tmp_path, command):
  source = _write(tmp_path / "source.txt", "a dog sees the cat .\n")
  output = tmp_path / "distilled"
  assert command(distill_command.main, "--teacher_dir", tiny_ar_dir, "--source_file", source,
                 "--output", str(output), "--decode_method", "greedy", *SMALL)[0] == 0
  info = json.loads((output / checkpoints.RUN_INFO_FILE).read_text())
  assert info["seed"] == 0 and info["packages"]["jax"] == jax.__version__
  assert info["teacher_step"] == 20 and info["decoder_params"] == {"decode_method": "greedy"}
  assert "MODEL = @models.ARModel()" in (output / checkpoints.CONFIG_FILE).read_text()
