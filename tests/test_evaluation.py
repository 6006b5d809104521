"""`padir eval`: metrics on fixed hypotheses against sacreBLEU itself, the stutter rate, and the
job on the session's tiny checkpoints (all steps, per-iteration BLEU, resume, --watch)."""
import glob
import json
import os
import shutil
import threading

import pytest
import sacrebleu

from padir import data
from padir import evaluation
from padir import translator as translator_lib
from padir.commands import eval as eval_command

HYPOTHESES = ["The cat sat on the mat.", "a dog dog barked", "", "Hello , world !"]
REFERENCES = ["The cat sat on the mat.", "the dog barked loudly", "Nothing here.", "Hello, world!"]


def test_metrics_equal_sacrebleus_own():
  results = evaluation.score_hypotheses(HYPOTHESES, REFERENCES)
  bleu = sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES])
  assert results["bleu"] == pytest.approx(bleu.score, abs=1e-12)
  assert results["length_ratio"] == pytest.approx(bleu.ratio, abs=1e-12)
  assert results["chrf"] == pytest.approx(
      sacrebleu.corpus_chrf(HYPOTHESES, [REFERENCES]).score, abs=1e-12)
  assert "tok:13a" in results["bleu_signature"] and "case:mixed" in results["bleu_signature"]
  assert results["chrf_signature"].startswith("nrefs:1|case:mixed")
  assert evaluation.bleu(HYPOTHESES, REFERENCES).score == pytest.approx(bleu.score, abs=1e-12)
  with pytest.raises(ValueError, match="3 hypotheses for 4 references"):
    evaluation.score_hypotheses(HYPOTHESES[:3], REFERENCES)


def test_stutter_rate_counts_adjacent_repeats_per_pair():
  # Repeats: 1 ("the the") + 2 ("a a a"); pairs: 2 + 2 + 0 + 0 + 3.
  assert evaluation.stutter_rate(["the the cat", "a a a", "", "b", "x y x y"]) == 3 / 7
  assert evaluation.stutter_rate(["", "word"]) == 0.0
  assert evaluation.stutter_rate(["cat Cat cat."]) == 0.0  # Exact token equality.


def _read(path):
  with open(path, encoding="utf-8") as f:
    return f.read()


def test_eval_all_steps_with_per_iteration_bleu_resumes_identically(tiny_padir_dir,
                                                                     tiny_corpus, tmp_path):
  output = str(tmp_path / "eval")
  argv = ["--checkpoint_dir", tiny_padir_dir, "--task", tiny_corpus["padir_task"], "--split",
          "test", "--output", output, "--checkpoint_step", "all", "--max_examples", "6",
          "--gin.decoding.PadirDecodeConfig.num_decode_iterations=3",
          "--gin.TranslatorOptions.batch_size=4", "--gin.TranslatorOptions.length_buckets=(32,)"]
  assert eval_command.main(argv) == 0
  summary = json.loads(_read(os.path.join(output, "results.json")))
  assert summary["settings"]["task"] == tiny_corpus["padir_task"]
  assert [e["step"] for e in summary["evaluations"]] == [10, 20]
  references = [e["targets_text"] for e in data.iterate_examples(
      tiny_corpus["padir_task"], "test", max_examples=6)]
  for entry in summary["evaluations"]:
    assert entry["num_examples"] == 6 and 1.0 <= entry["mean_iterations"] <= 3.0
    assert len(entry["bleu_per_iteration"]) == 3
    assert entry["bleu_per_iteration"][-1] == pytest.approx(entry["bleu"])
    hypotheses = _read(os.path.join(output, f"step_{entry['step']}.hypotheses.txt"))
    hypotheses = hypotheses.split("\n")[:-1]
    assert len(hypotheses) == 6
    assert entry["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hypotheses, [references]).score)
  table = _read(os.path.join(output, "results.md"))
  assert "| step | BLEU | chrF |" in table and "\n| 10 |" in table and "\n| 20 |" in table

  # Interrupted after step 10: re-running gives the same files.
  outputs = lambda: {p: _read(p) for p in glob.glob(os.path.join(output, "*"))
                     if not p.endswith("run_info.json")}  # It records the time.
  before = outputs()
  for name in ("step_20.json", "step_20.hypotheses.txt", "results.json", "results.md"):
    os.remove(os.path.join(output, name))
  assert eval_command.main(argv) == 0
  assert outputs() == before
  # Other settings into the same output dir are refused.
  assert eval_command.main(argv[:-3] + ["--gin.PadirDecodeConfig.num_decode_iterations=2"]) == 1


def test_per_iteration_bleu_over_sources_in_two_length_buckets(tiny_padir_dir, tiny_corpus):
  """Batches padded to different length buckets decode to different lengths T (24 and 32)."""
  translator = translator_lib.Translator.from_checkpoint(tiny_padir_dir, gin_bindings=[
      "decoding.PadirDecodeConfig.num_decode_iterations = 2", "TranslatorOptions.batch_size = 2",
      "TranslatorOptions.length_buckets = (16, 32)"])
  examples = list(data.iterate_examples(tiny_corpus["padir_task"], "test"))
  pieces = lambda e: len(translator.vocabulary.encode(e["inputs_text"])) + 1  # With EOS.
  chosen = ([e for e in examples if pieces(e) <= 16][:2] +
            [e for e in examples if 16 < pieces(e) <= 32][:2])
  assert len(chosen) == 4
  sources = [e["inputs_text"] for e in chosen] + [""]
  references = [e["targets_text"] for e in chosen] + ["Nothing."]
  predictions = translator.predict(sources, {"return_history": True})
  assert [p.aux["history"].shape for p in predictions[:4]] == [(2, 24)] * 2 + [(2, 32)] * 2
  texts = evaluation.iteration_hypotheses(
      translator, predictions, translator.model.scheme.stutter_remasking)
  assert len(texts) == 2 and texts[-1] == [p.text for p in predictions]
  results, hypotheses = evaluation.evaluate(translator, sources, references)
  assert hypotheses == texts[-1]
  assert results["bleu_per_iteration"] == pytest.approx(
      [evaluation.bleu(t, references).score for t in texts])
  assert results["bleu_per_iteration"][-1] == pytest.approx(results["bleu"])


def _watch(checkpoint_dir, task, output, poll_seconds, max_examples):
  """`padir eval --watch` of an AR run (greedy); returns its results.json."""
  assert eval_command.main([
      "--checkpoint_dir", checkpoint_dir, "--task", task, "--split", "test",
      "--output", output, "--watch", "--poll_seconds", str(poll_seconds),
      "--watch_timeout", "120", "--max_examples", str(max_examples),
      "--gin.decoding.ARDecodeConfig.decode_method='greedy'",
      "--gin.TranslatorOptions.length_buckets=(32,)"]) == 0
  return json.loads(_read(os.path.join(output, "results.json")))


def test_eval_watch_stops_when_training_has_finished(tiny_ar_dir, tiny_corpus, tmp_path):
  assert evaluation.final_train_step(tiny_ar_dir) == 20
  summary = _watch(tiny_ar_dir, tiny_corpus["ar_task"], str(tmp_path / "watch"), 0, 4)
  assert [e["step"] for e in summary["evaluations"]] == [10, 20]
  assert all(e["mean_iterations"] is None and e["bleu_per_iteration"] is None
             for e in summary["evaluations"])
  events = glob.glob(os.path.join(tiny_ar_dir, "eval", f"{tiny_corpus['ar_task']}.test",
                                  "events.out.tfevents.*"))
  assert events


def test_eval_watch_waits_for_training_to_start(tiny_ar_dir, tiny_corpus, tmp_path):
  """The XM evaluator starts beside its training job: the model dir appears later."""
  model_dir = str(tmp_path / "starts_later")

  def start_training():  # The whole run appears at once (a copy would show half a run).
    shutil.copytree(tiny_ar_dir, model_dir + ".tmp")
    os.rename(model_dir + ".tmp", model_dir)

  threading.Timer(1.0, start_training).start()
  summary = _watch(model_dir, tiny_corpus["ar_task"], str(tmp_path / "watch"), 0.2, 2)
  assert [e["step"] for e in summary["evaluations"]] == [10, 20]


def test_eval_watch_gives_up_on_a_run_that_never_starts(tmp_path, capsys):
  missing = str(tmp_path / "never")
  assert eval_command.main(["--checkpoint_dir", missing, "--task", "x", "--split", "test",
                          "--output", str(tmp_path / "out"), "--watch", "--poll_seconds", "0.1",
                          "--watch_timeout", "0.3"]) == 1
  err = capsys.readouterr().err
  assert f"checkpoint dir {missing} does not exist" in err and "--watch_timeout=0" in err


def test_missing_checkpoint_dir_is_named(tmp_path, capsys):
  missing = str(tmp_path / "no_run")
  assert eval_command.main(["--checkpoint_dir", missing, "--task", "x", "--split", "test",
                          "--output", str(tmp_path / "out")]) == 1
  assert f"padir eval: error: checkpoint dir {missing} does not exist" in capsys.readouterr().err
