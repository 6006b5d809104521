"""Checkpoint manager behaviour: keep-K, atomic steps, fallback from a corrupted checkpoint,
errors naming mismatched parameters, params-only loading, the run record."""
import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from padir import checkpoints
from padir.commands import average as average_command


def _trees(dim=4, value=1.0):
  params = {"encoder": {"layers_0": {"kernel": jnp.full((3, dim), value)}},
            "token_embedder": {"embedding": jnp.full((8, dim), value)}}
  train_state = {"opt_state": ({"count": jnp.int32(0)}, {"mu": jax.tree.map(jnp.zeros_like,
                                                                              params)}),
                 "step": jnp.int32(0), "skipped_steps": jnp.int32(0)}
  return params, train_state


def _abstract(tree):
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def _save_steps(directory, steps, keep=None):
  manager = checkpoints.make_manager(directory, keep=keep)
  for step in steps:
    params, train_state = _trees(value=float(step))
    assert checkpoints.save(manager, step, params, dict(train_state, step=jnp.int32(step)))
  manager.wait_until_finished()
  return manager


def _corrupt(step_dir):
  """Overwrites every stored array chunk of the step with garbage."""
  for root, _, files in os.walk(step_dir):
    if os.path.basename(root) == "d":
      for name in files:
        with open(os.path.join(root, name), "wb") as f:
          f.write(b"\0garbage")


def test_keep_k_and_incomplete_steps_are_not_checkpoints(tmp_path):
  directory = str(tmp_path / "checkpoints")
  manager = _save_steps(directory, [1, 2, 3, 4], keep=2)
  assert not checkpoints.save(manager, 4, *_trees())  # An existing step is left alone.
  manager.close()
  assert sorted(os.listdir(directory)) == ["3", "4"]
  # A save killed midway leaves only a temporary directory: never a step, cleaned on restart.
  os.makedirs(os.path.join(directory, "5.orbax-checkpoint-tmp-1234", "params"))
  manager = checkpoints.make_manager(directory, keep=2)
  params, train_state = _trees()
  _, restored_state, step = checkpoints.restore_latest(manager, _abstract(params),
                                                       _abstract(train_state))
  assert step == 4 and int(restored_state["step"]) == 4
  manager.close()
  assert sorted(os.listdir(directory)) == ["3", "4"]


def test_corrupted_latest_falls_back_to_previous(tmp_path, caplog):
  directory = str(tmp_path / "checkpoints")
  _save_steps(directory, [1, 2]).close()
  _corrupt(os.path.join(directory, "2"))
  # Params-only loading (eval / infer).
  loaded, step = checkpoints.load_params(str(tmp_path))
  assert step == 1 and isinstance(loaded["token_embedder"]["embedding"], np.ndarray)
  # Training: also deletes the unreadable checkpoint, so that the step is saved again.
  params, train_state = _trees()
  manager = checkpoints.make_manager(directory)
  with caplog.at_level(logging.WARNING, logger="padir"):
    restored_params, _, step = checkpoints.restore_latest(
        manager, _abstract(params), _abstract(train_state))
  assert step == 1 and manager.all_steps() == [1]
  np.testing.assert_array_equal(restored_params["encoder"]["layers_0"]["kernel"], 1.0)
  assert "checkpoints/2 is unreadable" in caplog.text and "falling back" in caplog.text
  assert "deleting the unreadable checkpoint" in caplog.text
  # Nothing readable at all: an error, never a silent fresh start.
  _corrupt(os.path.join(directory, "1"))
  with pytest.raises(checkpoints.NoUsableCheckpointError, match="no readable checkpoint"):
    checkpoints.restore_latest(manager, _abstract(params), _abstract(train_state))
  manager.close()


def test_another_model_config_names_paths_and_shapes(tmp_path):
  directory = str(tmp_path / "checkpoints")
  _save_steps(directory, [1]).close()
  manager = checkpoints.make_manager(directory)
  params, train_state = _trees(dim=6)
  params["decoder"] = {"kernel": jnp.zeros((2, 2))}
  with pytest.raises(checkpoints.CheckpointMismatchError) as error:
    checkpoints.restore_latest(manager, _abstract(params), _abstract(train_state))
  message = str(error.value)
  assert "params/encoder/layers_0/kernel: checkpoint (3, 4) vs model (3, 6)" in message
  assert "params/decoder/kernel: in the model (2, 2), not in the checkpoint" in message
  assert "train_state/opt_state/1/mu/encoder/layers_0/kernel" in message
  # Same parameters, another optimizer: says so.
  params, train_state = _trees()
  train_state["opt_state"] = ({"count": jnp.int32(0)},)
  with pytest.raises(checkpoints.CheckpointMismatchError, match="did the optimizer change"):
    checkpoints.restore_latest(manager, _abstract(params), _abstract(train_state))
  manager.close()


def test_load_params_paths_steps_and_shardings(tmp_path):
  directory = str(tmp_path / "checkpoints")
  _save_steps(directory, [1, 2]).close()
  params, _ = _trees()
  for path, step, expected in [(str(tmp_path), None, 2), (directory, 1, 1),
                               (os.path.join(directory, "1"), None, 1)]:
    loaded, loaded_step = checkpoints.load_params(path, step=step)
    assert loaded_step == expected
    np.testing.assert_array_equal(loaded["encoder"]["layers_0"]["kernel"], float(expected))
  loaded, _ = checkpoints.load_params(str(tmp_path), abstract_params=_abstract(params))
  assert isinstance(loaded["encoder"]["layers_0"]["kernel"], jax.Array)
  with pytest.raises(FileNotFoundError, match="no checkpoint for step 7"):
    checkpoints.load_params(str(tmp_path), step=7)
  with pytest.raises(FileNotFoundError):
    checkpoints.load_params(str(tmp_path / "nowhere"))


def test_run_record(tmp_path, caplog):
  checkpoints.write_run_record(str(tmp_path), gin_config="a.b = 1\n", seed=7,
                               extra={"batch_size": 8})
  info = json.loads((tmp_path / "run_info.json").read_text())
  assert info["seed"] == 7 and info["batch_size"] == 8
  assert info["packages"]["orbax-checkpoint"] and info["packages"]["flax"]
  with caplog.at_level(logging.WARNING, logger="padir"):
    checkpoints.write_run_record(str(tmp_path), gin_config="a.b = 2\n", seed=7)
  assert "gin config differs" in caplog.text
  assert (tmp_path / "config.gin").read_text() == "a.b = 2\n"
  kept = [n for n in os.listdir(tmp_path) if n.startswith("config.gin.")]
  assert len(kept) == 1 and (tmp_path / kept[0]).read_text() == "a.b = 1\n"



class _Vocabulary:
  def __init__(self, model: bytes, path: str):
    self.sp_model, self.sentencepiece_model_file = model, path


def test_a_run_loaded_with_another_vocabulary_is_named(tmp_path):
  trained = _Vocabulary(b"the corpus of training", "/data/a/spm.model")
  checkpoints.write_run_record(str(tmp_path), gin_config="", seed=0,
                               extra={"vocabulary": checkpoints.vocabulary_record(trained)})
  checkpoints.check_vocabulary(str(tmp_path), trained)  # The same model: no error.
  checkpoints.check_vocabulary(str(tmp_path), object())  # Not SentencePiece: nothing to compare.
  with pytest.raises(checkpoints.VocabularyMismatchError,
                     match=r"run_info.json.*/data/a/spm.model.*/data/b/spm.model"):
    checkpoints.check_vocabulary(str(tmp_path), _Vocabulary(b"another corpus", "/data/b/spm.model"))
  checkpoints.check_vocabulary(str(tmp_path / "a run of before the record"), trained)

def test_average_writes_the_mean_of_the_last_checkpoints(tmp_path, capsys):
  from padir import average  # pylint: disable=g-import-not-at-top
  run = tmp_path / "run"
  _save_steps(str(run / checkpoints.CHECKPOINTS_SUBDIR), [100, 200, 300]).close()
  (run / checkpoints.CONFIG_FILE).write_text("# the run's config\n")
  output = tmp_path / "avg"
  assert average_command.main(["--model_dir", str(run), "--last", "2", "--output", str(output)]) == 0
  params, step = checkpoints.load_params(str(output))
  assert step == 300
  np.testing.assert_allclose(params["encoder"]["layers_0"]["kernel"], 250.0)
  assert (output / checkpoints.CONFIG_FILE).read_text() == "# the run's config\n"
  assert json.loads((output / average.AVERAGED_FILE).read_text())["steps"] == [200, 300]
  # Nothing written is replaced; a missing step and too many checkpoints are named.
  assert average_command.main(["--model_dir", str(run), "--steps", "100,300", "--output",
                       str(output)]) == 1
  assert "already holds checkpoints" in capsys.readouterr().err
  assert average_command.main(["--model_dir", str(run), "--steps", "100,250", "--output",
                       str(tmp_path / "b")]) == 1
  assert "--steps [250] not saved" in capsys.readouterr().err
  assert average_command.main(["--model_dir", str(run), "--last", "4", "--output",
                       str(tmp_path / "c")]) == 1
  assert "only 3 checkpoints" in capsys.readouterr().err
  np.testing.assert_allclose(checkpoints.load_params(str(output))[0]["encoder"]["layers_0"]
                             ["kernel"], 250.0)
