"""`padir.Translator` and `padir infer` on the session's tiny trained checkpoints: line alignment
(empty, whitespace-only and overlong lines), gin overrides of the saved config, teacher
reranking, the CLI round trip, and errors that name the checkpoint dir."""
import dataclasses
import json
import logging
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import padir
from padir import checkpoints
from padir import decoding
from padir import gin_utils
from padir import translator as translator_lib
from padir.commands import infer as infer_command

SMALL = ["TranslatorOptions.batch_size = 4", "TranslatorOptions.length_buckets = (8, 16)"]
GREEDY = SMALL + ["ARDecodeConfig.decode_method = 'greedy'"]
LINES = ["a dog sees the cat .", "", "   ", "the big dog will see a small cat in the house .",
         "\t \t", " ".join(["the small cat"] * 10), "the dogs saw a bird .", "a cat .",
         "a dog sees the cat ."]
EMPTY = {1, 2, 4}


@pytest.fixture(scope="module")
def ar_translator(tiny_ar_dir):
  return padir.Translator.from_checkpoint(tiny_ar_dir, gin_bindings=GREEDY)


def test_translate_keeps_line_alignment(ar_translator, caplog):
  with caplog.at_level(logging.WARNING, logger="padir.translator"):
    predictions = ar_translator.predict(LINES)
  assert len(predictions) == len(LINES)
  for i, prediction in enumerate(predictions):
    if i in EMPTY:  # Not run through the model.
      assert prediction.text == "" and prediction.aux == {} and prediction.tokens.size == 0
    else:
      assert set(prediction.aux) == {"scores"} and "\n" not in prediction.text
  assert sum(p.text != "" for p in predictions) >= 3  # Greedy emits pieces.
  assert "of 9 input lines were longer than 15 pieces" in caplog.text
  texts = [p.text for p in predictions]
  assert texts[0] == texts[-1]
  # Another input order gives the same translation of every line (results are unsorted).
  assert ar_translator.translate(LINES[::-1])[::-1] == texts
  # Without aux (translate's path: the compiled function returns the tokens alone) the same.
  bare = ar_translator.predict(LINES, with_aux=False)
  assert [p.text for p in bare] == texts and all(p.aux == {} for p in bare)
  assert [p.tokens.tolist() for p in bare] == [p.tokens.tolist() for p in predictions]


def test_bad_decoder_params_are_named(ar_translator):
  with pytest.raises(ValueError, match="bogus"):
    ar_translator.translate(["a cat ."], {"bogus": 1})


def test_decode_config_is_bound_at_predict_time(ar_translator, tiny_padir_dir):
  """The saved config records the training run's decoding defaults (unscoped, so a plain flag
  overrides them) and no decode-time model argument."""
  assert ar_translator.decode_config.decode_method == "greedy"
  with open(os.path.join(tiny_padir_dir, checkpoints.CONFIG_FILE)) as f:
    saved = f.read()
  assert "DECODE_CONFIG = @decoding.PadirDecodeConfig" in saved
  assert "\ndecoding.PadirDecodeConfig.num_decode_iterations = " in saved
  assert "PadirModel.num_decode_iterations" not in saved
  translator = padir.Translator.from_checkpoint(tiny_padir_dir, gin_bindings=[
      "PadirDecodeConfig.num_decode_iterations = 3"])
  assert translator.decode_config == decoding.PadirDecodeConfig(
      **{**dataclasses.asdict(padir.Translator.from_checkpoint(tiny_padir_dir).decode_config),
         "num_decode_iterations": 3})
  with pytest.raises(gin_utils.GinFlagError, match="DECODE_CONFIG.*top_k_lengths=0"):
    padir.Translator.from_checkpoint(tiny_padir_dir, gin_bindings=[
        "PadirDecodeConfig.top_k_lengths = 0"])


def test_a_config_of_an_earlier_version_still_loads(tiny_padir_dir, tmp_path, caplog):
  """Decode-time options bound as model arguments (the layout before decode configs) are read
  as decode config bindings; the file is left as it is."""
  old_dir = tmp_path / "old_run"
  shutil.copytree(tiny_padir_dir, old_dir)
  config_path = old_dir / checkpoints.CONFIG_FILE
  lines = []
  for line in config_path.read_text().splitlines():
    if line.startswith("DECODE_CONFIG") or line == "from padir import decoding":
      continue
    if line.startswith("trainer.train.decode_config"):
      continue
    if line.startswith("decoding.PadirDecodeConfig."):
      line = "MODEL/models.PadirModel." + line[len("decoding.PadirDecodeConfig."):]
    lines.append(line)
  lines.append("MODEL/models.PadirModel.num_decode_iterations = 5")
  lines.append("train/preprocessors.padir_noise.init_scheme = 'mask'")  # A removed parameter.
  old_text = "\n".join(lines) + "\n"
  config_path.write_text(old_text)
  with caplog.at_level(logging.WARNING, logger="padir.translator"):
    translator = padir.Translator.from_checkpoint(str(old_dir), gin_bindings=[
        "PadirDecodeConfig.length_beam = 3"])
  assert "of an earlier version" in caplog.text
  assert translator.decode_config.num_decode_iterations == 5
  assert translator.decode_config.length_beam == 3
  assert config_path.read_text() == old_text
  text, moved = translator_lib.upgrade_config(old_text)
  assert "decoding.PadirDecodeConfig.num_decode_iterations = 5" in moved
  assert "train/preprocessors.padir_noise.init_scheme = 'mask'" in moved
  assert "init_scheme" not in text
  assert translator_lib.upgrade_config(text) == (text, [])


def test_padir_gin_overrides_history_and_teacher_reranking(tiny_padir_dir, tiny_ar_dir):
  translator = padir.Translator.from_checkpoint(tiny_padir_dir, gin_bindings=SMALL + [
      "decoding.PadirDecodeConfig.num_decode_iterations = 2",
      "decoding.PadirDecodeConfig.length_beam = 3",
      f"TeacherReranking.checkpoint_dir = '{tiny_ar_dir}'"])
  assert translator.decode_config.num_decode_iterations == 2
  assert translator.teacher is not None and translator.step == 20
  lines = LINES[:3] + [LINES[6]]  # Not truncated: the teacher below scores the whole source.
  predictions = translator.predict(lines, {"return_history": True})
  assert predictions[1].aux == {} and predictions[2].aux == {}
  st = translator.model.special_tokens
  teacher = translator.teacher
  rescore = jax.jit(teacher.model.make_rescore_fn(teacher.params, teacher.length_normalize))
  for line, prediction in ((lines[0], predictions[0]), (lines[3], predictions[3])):
    aux = prediction.aux
    assert aux["history"].shape[0] == 2 and 1 <= aux["iterations"] <= 2
    # Decode length T = 1.5 x the source bucket (8 or 16), not the vocabulary's maximum.
    assert aux["history"].shape[1] in (12, 24)
    assert "model_scores" in aux and aux["best"] == np.argmax(aux["candidate_scores"])
    # The chosen candidate's score is the teacher's length-normalised log-likelihood of it.
    source = np.array([translator.vocabulary.encode(line) + [st.eos_id]], np.int32)
    tokens = np.zeros((1, aux["history"].shape[1]), np.int32)
    tokens[0, :prediction.tokens.size] = prediction.tokens
    tokens[0, prediction.tokens.size] = st.eos_id
    np.testing.assert_allclose(rescore(jnp.asarray(source), jnp.asarray(tokens))[0],
                               aux["scores"], rtol=1e-4, atol=1e-4)
  # Off unless asked for.
  assert padir.Translator.from_checkpoint(tiny_padir_dir).teacher is None


def test_infer_cli_round_trip(ar_translator, tiny_ar_dir, tmp_path, capsys):
  source = tmp_path / "source.txt"
  source.write_text("\n".join(LINES) + "\n", encoding="utf-8")
  output = tmp_path / "out" / "hypotheses.txt"
  flags = [f"--gin.{b.replace(' = ', '=')}" for b in GREEDY]
  assert infer_command.main(["--checkpoint_dir", tiny_ar_dir, "--input", str(source),
                              "--output", str(output), *flags]) == 0
  lines = output.read_text(encoding="utf-8").split("\n")
  assert lines[-1] == "" and lines[:-1] == ar_translator.translate(LINES)
  assert not os.path.exists(f"{output}.tmp")
  assert capsys.readouterr().err.count("error") == 0



def test_a_run_records_its_vocabulary_and_is_refused_another(tiny_ar_dir, tmp_path):
  moved = tmp_path / "run"
  shutil.copytree(tiny_ar_dir, moved)
  info_path = moved / checkpoints.RUN_INFO_FILE
  info = json.loads(info_path.read_text())
  assert len(info["vocabulary"]["md5"]) == 32 and info["vocabulary"]["file"].endswith(".model")
  info["vocabulary"]["md5"] = "0" * 32  # As if the task's corpus had been registered again.
  info_path.write_text(json.dumps(info))
  with pytest.raises(checkpoints.VocabularyMismatchError, match=str(info_path)):
    padir.Translator.from_checkpoint(str(moved))

def test_missing_or_empty_checkpoint_dir_is_named(tiny_ar_dir, tmp_path, capsys):
  missing = tmp_path / "nowhere"
  with pytest.raises(translator_lib.CheckpointDirError, match=str(missing)):
    padir.Translator.from_checkpoint(str(missing))
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(translator_lib.CheckpointDirError, match=f"{empty} has no config.gin"):
    padir.Translator.from_checkpoint(str(empty))
  untrained = tmp_path / "untrained"
  untrained.mkdir()
  shutil.copy(os.path.join(tiny_ar_dir, checkpoints.CONFIG_FILE), untrained)
  (untrained / checkpoints.CHECKPOINTS_SUBDIR).mkdir()
  with pytest.raises(translator_lib.CheckpointDirError,
                     match=f"{untrained}.*no complete checkpoint"):
    padir.Translator.from_checkpoint(str(untrained))
  assert infer_command.main(["--checkpoint_dir", str(missing), "--input", "-",
                              "--output", "-"]) == 1
  assert f"padir infer: error: checkpoint dir {missing} does not exist" in capsys.readouterr().err
