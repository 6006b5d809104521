"""Multi-host training with JAX's own multi-process runtime, on localhost.

Two `padir train --multihost` processes (CPU, 2 virtual devices each, `jax.distributed` with a
coordinator on 127.0.0.1; gloo collectives, JAX's CPU default) train the `test` network on a
tiny built-in corpus over one (data 2, model 2) mesh of the 4 devices, each process reading its
own shard of every global batch. Both must report the same validation losses (a global reduction
over both processes' data), and the checkpoint they wrote together must restore in this single
process.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from padir import checkpoints

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_PROCESSES = 2
DEVICES_PER_PROCESS = 2
TRAIN_STEPS = 4
TIMEOUT_SECONDS = 420
VALIDATION = re.compile(r"validation at step (\d+): (?:.*, )?loss ([^,\s]+)")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _experiment(path, data_dir: str, max_length: int) -> str:
  """A gin file: the corpus in `data_dir` as a PaDIR task, the `test` network, short run."""
  path.write_text("\n".join([
      "from __gin__ import dynamic_registration",
      "from padir import network",
      "from padir import preprocessors",
      "from padir import trainer",
      "from tasks import local",
      "MIXTURE_OR_TASK_NAME = @local.parallel_text_task()",
      "local.parallel_text_task:",
      "  name = 'multihost_test'",
      f"  folder = {data_dir!r}",
      "  src = 'src'",
      "  tgt = 'tgt'",
      f"  vocabulary = {os.path.join(data_dir, 'spm.model')!r}",
      f"  max_target_length = {max_length}",
      "  flavour = 'padir'",
      f"TASK_FEATURE_LENGTHS = {{'inputs': {max_length}, 'targets': {max_length}}}",
      "network.get_config.name = 'test'",
      "network.get_config.dropout_rate = 0.0",
      f"TRAIN_STEPS = {TRAIN_STEPS}",
      "BATCH_SIZE = 8",
      "MESH_SHAPE = (2, 2)  # data across the processes, model within each",
      f"SAVE_EVERY = {TRAIN_STEPS}",
      "EVAL_EVERY = 2",
      "EVAL_STEPS = 1",
      "trainer.train.log_every = 2",
      "trainer.train.progress_bar = False",
  ]) + "\n")
  return str(path)


def _kill(processes) -> None:
  for p in processes:
    if p.poll() is None:
      os.killpg(p.pid, signal.SIGKILL)
  for p in processes:
    p.wait()


@pytest.mark.slow
def test_two_processes_train_one_model(tmp_path, tiny_corpus):
  from conftest import TINY_MAX_LENGTH  # pylint: disable=g-import-not-at-top
  experiment = _experiment(tmp_path / "experiment.gin", tiny_corpus["data_dir"], TINY_MAX_LENGTH)
  model_dir = str(tmp_path / "model")
  port = _free_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=(
      os.environ.get("XLA_FLAGS", "") +
      f" --xla_force_host_platform_device_count={DEVICES_PER_PROCESS}").strip())
  processes, logs = [], []
  try:
    for i in range(NUM_PROCESSES):
      logs.append(open(tmp_path / f"process_{i}.log", "w+"))
      processes.append(subprocess.Popen(
          [sys.executable, "-m", "padir.cli", "train", "--gin_file=models/padir_tiny.gin",
           "--gin_file=runs/train.gin", f"--gin_file={experiment}", "--multihost",
           f"--gin.initialize_distributed.coordinator_address='127.0.0.1:{port}'",
           f"--gin.initialize_distributed.num_processes={NUM_PROCESSES}",
           f"--gin.initialize_distributed.process_id={i}", f"--model_dir={model_dir}"],
          cwd=REPO, env=env, stdout=logs[-1], stderr=subprocess.STDOUT,
          start_new_session=True))
    deadline = time.time() + TIMEOUT_SECONDS
    while time.time() < deadline and any(p.poll() is None for p in processes):
      if any(p.poll() not in (None, 0) for p in processes):
        break  # One failed: the other would wait for it until its own timeout.
      time.sleep(1)
  finally:
    _kill(processes)
  outputs = []
  for log in logs:
    log.seek(0)
    outputs.append(log.read())
    log.close()
  codes = [p.returncode for p in processes]
  assert codes == [0] * NUM_PROCESSES, "\n\n".join(
      f"process {i} exited with {c}:\n{out[-4000:]}" for i, (c, out) in enumerate(
          zip(codes, outputs)))

  losses = [{int(s): float(v) for s, v in VALIDATION.findall(out)} for out in outputs]
  assert sorted(losses[0]) == [2, TRAIN_STEPS], outputs[0][-2000:]
  assert losses[1] == losses[0]
  assert all(np.isfinite(v) for v in losses[0].values())
  with open(os.path.join(model_dir, checkpoints.RUN_INFO_FILE)) as f:
    run_info = json.load(f)
  assert run_info["process_count"] == NUM_PROCESSES
  assert len(run_info["devices"]) == NUM_PROCESSES * DEVICES_PER_PROCESS
  assert run_info["mesh_shape"] == {"data": 2, "model": 2}

  params, step = checkpoints.load_params(model_dir)
  assert step == TRAIN_STEPS
  kernel = params["encoder"]["layers_0"]["attention"]["query"]["kernel"]
  assert kernel.shape[0] == 32 and np.isfinite(kernel).all()
