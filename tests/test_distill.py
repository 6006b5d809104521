"""`padir distill` with the session's tiny AR teacher: resume after an interruption gives the
same TSV, the result is registered as tasks, the CLI (beam search by default) on a task split,
and refused settings / teachers."""
import os

import gzip
import json

import pytest

from padir import data
from padir import distill
from padir import translator as translator_lib
from padir.commands import distill as distill_command

SMALL = ["TranslatorOptions.batch_size = 4", "TranslatorOptions.length_buckets = (32,)"]


def _read(path):
  with open(path, encoding="utf-8") as f:
    return f.read()


@pytest.fixture(scope="module")
def source_file(tiny_corpus, tmp_path_factory):
  """8 test-split sources with an empty line in the middle."""
  with gzip.open(os.path.join(tiny_corpus["data_dir"], "test.src.gz"), "rt") as f:
    lines = [next(f).rstrip("\n") for _ in range(7)]
  path = tmp_path_factory.mktemp("distill_sources") / "tiny.src.txt"
  path.write_text("\n".join(lines[:3] + [""] + lines[3:]) + "\n", encoding="utf-8")
  return str(path)


def _distill(teacher_dir, source_file, output, **kwargs):
  kwargs.setdefault("max_repeats", 0)  # every translation, looped or not
  return distill.distill(teacher_dir, distill.Sources(source_file=source_file), str(output),
                         shard_size=3, decode_method="greedy", gin_bindings=SMALL, **kwargs)


def test_resume_after_interruption_gives_the_same_tsv(tiny_ar_dir, source_file, tmp_path,
                                                      monkeypatch):
  reference = _distill(tiny_ar_dir, source_file, tmp_path / "a")
  assert reference.num_examples == 8 and reference.teacher_step == 20
  assert reference.ar_task == "tiny_src_distilled_ar"
  lines = _read(reference.tsv).split("\n")[:-1]
  assert len(lines) == 8 and all(line.count("\t") == 1 for line in lines)
  assert lines[3] == "\t"  # The empty source keeps its line.
  # The registered task's train split is the distilled pairs (the empty one dropped).
  pairs = [(e["inputs_text"], e["targets_text"])
           for e in data.iterate_examples(reference.ar_task, "train")]
  assert pairs == [tuple(line.split("\t")) for line in lines if line.split("\t")[1]]

  interrupted = tmp_path / "b"
  _distill(tiny_ar_dir, source_file, interrupted)
  shards = sorted(os.listdir(interrupted / "shards"))
  assert shards == ["shard-00000.tsv", "shard-00001.tsv", "shard-00002.tsv"]
  # Killed while writing shard 1, before shard 2 and the merge.
  os.replace(interrupted / "shards" / shards[1], interrupted / "shards" / (shards[1] + ".tmp"))
  os.remove(interrupted / "shards" / shards[2])
  os.remove(interrupted / "distilled.tsv")
  calls = []
  translate = translator_lib.Translator.translate
  monkeypatch.setattr(translator_lib.Translator, "translate",
                      lambda self, lines, *a, **k: calls.append(len(lines)) or
                      translate(self, lines, *a, **k))
  resumed = _distill(tiny_ar_dir, source_file, interrupted)
  assert calls == [3, 2]  # Only the unfinished shards.
  assert _read(resumed.tsv) == _read(reference.tsv)
  assert sorted(os.listdir(interrupted / "shards")) == shards

  # Other settings into the same output dir are refused, naming what differs.
  with pytest.raises(ValueError, match="shard_size"):
    distill.distill(tiny_ar_dir, distill.Sources(source_file=source_file), str(interrupted),
                    shard_size=4, decode_method="greedy", gin_bindings=SMALL)


def test_cli_distills_a_task_split_with_beam_search(tiny_ar_dir, tiny_corpus, tmp_path, capsys):
  output = tmp_path / "task"
  flags = [f"--gin.{b.replace(' = ', '=')}" for b in SMALL]
  assert distill_command.main(["--teacher_dir", tiny_ar_dir, "--task", tiny_corpus["ar_task"],
                       "--split", "test", "--output", str(output), "--shard_size", "8",
                       *flags]) == 0
  out = capsys.readouterr().out
  assert "registered tasks: tinytest_distilled_ar tinytest_distilled_padir" in out
  settings = json.loads(_read(output / "distill.json"))
  assert settings["decoder_params"] == {"decode_method": "beam", "beam_size": 4}
  assert settings["sources"] == {"task": tiny_corpus["ar_task"], "split": "test"}
  sources = [e["inputs_text"] for e in data.iterate_examples(tiny_corpus["ar_task"], "test")]
  lines = _read(output / "distilled.tsv").split("\n")[:-1]
  dropped = _read(output / "dropped.tsv").split("\n")[:-1]  # looped translations (default 3)
  assert all(distill.looped(line.split("\t")[1], 3) for line in dropped)
  assert not any(distill.looped(line.split("\t")[1], 3) for line in lines)
  assert sorted(line.split("\t")[0] for line in lines + dropped) == sorted(sources)
  assert len(os.listdir(output / "shards")) == 3
  # task.gin registers the distilled task in any process that parses it (a student's run).
  import gin  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  gin.parse_config_file(str(output / "task.gin"))
  assert gin.query_parameter("%MIXTURE_OR_TASK_NAME").scoped_configurable_fn() == (
      "tinytest_distilled_padir")
  gin.clear_config()
  # Its validation split is the source task's, with the real references (for a student's run).
  real = [(e["inputs_text"], e["targets_text"])
          for e in data.iterate_examples(tiny_corpus["ar_task"], "validation")]
  assert [(e["inputs_text"], e["targets_text"])
          for e in data.iterate_examples("tinytest_distilled_padir", "validation")] == real


def test_looped_finds_repeated_ngrams_only():
  assert distill.looped("ein großer großer großer Hund", 3)
  assert distill.looped("und einem Hund und einem Hund und einem Hund .", 3)
  assert distill.looped("a b c d a b c d a b c d", 3)
  assert not distill.looped("a b c d e a b c d e a b c d e", 3)  # 5-grams are not checked
  assert not distill.looped("ein sehr sehr großer Hund", 3)
  assert distill.looped("ein sehr sehr großer Hund", 2)
  assert not distill.looped("", 3)


def test_looped_translations_go_to_dropped_tsv(tiny_ar_dir, source_file, tmp_path, monkeypatch):
  loop = "Ein Mann Mann Mann Mann"
  monkeypatch.setattr(translator_lib.Translator, "translate",
                      lambda self, lines, *a, **k: [loop if i % 2 else f"Satz {i}"
                                                    for i, _ in enumerate(lines)])
  result = _distill(tiny_ar_dir, source_file, tmp_path / "loops", max_repeats=3)
  kept = _read(result.tsv).split("\n")[:-1]
  dropped = _read(tmp_path / "loops" / "dropped.tsv").split("\n")[:-1]
  assert (result.num_examples, result.num_dropped) == (len(kept), len(dropped)) == (5, 3)
  assert all(line.endswith("\t" + loop) for line in dropped)
  # The shards keep every translation: the same dir with max_repeats=0 gives them all back.
  everything = _distill(tiny_ar_dir, source_file, tmp_path / "loops", max_repeats=0)
  assert everything.num_examples == 8 and everything.num_dropped == 0
  with pytest.raises(ValueError, match="--max_repeats=1"):
    _distill(tiny_ar_dir, source_file, tmp_path / "bad", max_repeats=1)


def test_a_padir_teacher_and_bad_sources_are_refused(tiny_padir_dir, source_file, tmp_path):
  with pytest.raises(ValueError, match="distill with an AR teacher"):
    _distill(tiny_padir_dir, source_file, tmp_path / "padir")
  with pytest.raises(ValueError, match="exactly one of"):
    distill.Sources(task="x", source_file=source_file)
  with pytest.raises(FileNotFoundError, match="missing.txt"):
    distill.Sources(source_file=str(tmp_path / "missing.txt"))
  bad = tmp_path / "bad.tsv"
  bad.write_text("a\tb\nno tab here\n")
  with pytest.raises(data.TextFileError, match=f"{bad}:2: expected 'source<TAB>target'"):
    list(distill.Sources(input_tsv=str(bad)))
