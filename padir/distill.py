"""`padir distill`: sequence-level knowledge distillation with an AR teacher, in one command.

  padir distill --teacher_dir runs/ar_tiny --task builtin_ar --output distilled/builtin
  # -> distilled/builtin/distilled.tsv; tasks builtin_distilled_ar and builtin_distilled_padir

Sources, one sentence each: a task split's source texts (`--task NAME [--split train]`), the
source column of a `source<TAB>target` TSV (`--input_tsv F`) or the lines of a text file
(`--source_file F`). The teacher (a `padir train` AR run, rebuilt from its saved gin config)
translates them through the translate path (`padir.translator`) with beam search, 4 beams, by
default (`--decode_method greedy` for greedy). Every `--shard_size` sources make one shard,
`shards/shard-NNNNN.tsv` (`source<TAB>translation`, one line per source, in order), written to a
`.tmp` file and renamed when complete; the shards are then merged into `distilled.tsv`, which is
registered as local TSV tasks `NAME_ar` / `NAME_padir` (`padir.parallel_text`, train split = the
distilled pairs; pairs with an empty side are dropped there). A translation caught in a loop
(`looped`: some n-gram of up to 4 words repeated `--max_repeats` times in a row, 3 by default;
references almost never do this, a weak teacher's greedy output often does) would teach the student
to stutter: such pairs go to `dropped.tsv` instead (`--max_repeats 0` keeps everything). The shards
keep every translation. When the sources are a task's split other than validation and the task has a
validation split, its pairs, with their real references, are copied to `validation.tsv` and become
the distilled tasks' validation split, so a student's `padir train` validates against real
references.

The output dir also holds the run record (`config.gin`, `run_info.json`: seed, package versions,
command line; see `padir.checkpoints`).

Resuming: `distill.json` records the settings (teacher dir and step, sources, shard size,
decoding, gin flags). Re-running with the same settings skips finished shards (a leftover `.tmp`
is redone), so an interrupted run ends with the same `distilled.tsv` as an uninterrupted one;
other settings in the same output dir are refused.
"""
import dataclasses
import itertools
import json
import logging
import os
import re
import sys
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import tqdm

from padir import checkpoints
from padir import files
from padir import models
from padir import translator as translator_lib

logger = logging.getLogger(__name__)

DISTILL_GIN_FILE = "runs/distill.gin"
SETTINGS_FILE = "distill.json"
SHARDS_SUBDIR = "shards"
TASK_GIN = "task.gin"
OUTPUT_TSV = "distilled.tsv"
DROPPED_TSV = "dropped.tsv"
VALIDATION_TSV = "validation.tsv"
DECODE_METHODS = ("beam", "greedy")


@dataclasses.dataclass(frozen=True)
class Sources:
  """Where the source sentences come from: exactly one of `task`, `input_tsv`, `source_file`."""
  task: Optional[str] = None
  split: str = "train"
  input_tsv: Optional[str] = None
  source_file: Optional[str] = None
  task_modules: Sequence[str] = ("tasks.builtin",)

  def __post_init__(self):
    given = [x for x in (self.task, self.input_tsv, self.source_file) if x is not None]
    if len(given) != 1:
      raise ValueError("give exactly one of --task, --input_tsv, --source_file")
    for path in (self.input_tsv, self.source_file):
      if path is not None and not os.path.isfile(path):
        raise FileNotFoundError(f"source file {path} does not exist")

  def describe(self) -> Dict[str, Any]:
    """The settings that determine the sentences (for distill.json)."""
    if self.task is not None:
      return {"task": self.task, "split": self.split}
    if self.input_tsv is not None:
      return {"input_tsv": os.path.abspath(self.input_tsv)}
    return {"source_file": os.path.abspath(self.source_file)}

  def default_name(self) -> str:
    """`builtin_ar` -> `builtin_distilled`; `data/train.en` -> `train_en_distilled`."""
    if self.task is not None:
      base = re.sub(r"_(ar|padir)$", "", self.task)
    else:
      base = os.path.basename(self.input_tsv or self.source_file)
      base = re.sub(r"\.(gz|tsv|txt)$", "", re.sub(r"\.gz$", "", base))
    return re.sub(r"[^A-Za-z0-9_]", "_", base) + "_distilled"

  def __iter__(self) -> Iterator[str]:
    """The source sentences, in order (UTF-8 errors and TSV lines without a tab are named)."""
    from padir import data  # pylint: disable=g-import-not-at-top  (seqio only when reading)
    if self.task is not None:
      for example in data.iterate_examples(self.task, self.split, module=self.task_modules):
        yield example["inputs_text"]
    elif self.input_tsv is not None:
      for number, line in enumerate(data.iter_text_lines(self.input_tsv), start=1):
        if line.count("\t") != 1:
          raise data.TextFileError(f"{self.input_tsv}:{number}: expected 'source<TAB>target', "
                                   f"found {line.count(chr(9))} tabs")
        yield line.split("\t")[0]
    else:
      yield from data.iter_text_lines(self.source_file)


@dataclasses.dataclass(frozen=True)
class DistillResult:
  """What `distill` made: the merged TSV, its two tasks and the teacher step used."""
  tsv: str
  ar_task: str
  padir_task: str
  num_examples: int
  teacher_step: int
  num_dropped: int = 0


def _one_line(text: str) -> str:
  """A TSV field: whitespace runs (tabs, newlines) become single spaces."""
  return " ".join(text.split())


def _shard_path(output_dir: str, index: int) -> str:
  return os.path.join(output_dir, SHARDS_SUBDIR, f"shard-{index:05d}.tsv")


def _check_settings(output_dir: str, settings: Dict[str, Any]) -> None:
  """Writes distill.json, or checks that the one there has the same settings."""
  path = os.path.join(output_dir, SETTINGS_FILE)
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    if saved != settings:
      changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
      raise ValueError(f"--output {output_dir} holds a distillation with other settings "
                       f"(different {changed}; see {path}): use another --output dir, or the "
                       f"same settings to resume")
    return
  os.makedirs(output_dir, exist_ok=True)
  files.write_json(path, settings)


def _write_shard(path: str, sources: Sequence[str], targets: Sequence[str]) -> None:
  files.write_text(path, "".join(f"{_one_line(s)}\t{t}\n" for s, t in zip(sources, targets)))


def _write_validation(sources: Sources, output_dir: str) -> Optional[str]:
  """The source task's validation pairs (real references) as OUTPUT/validation.tsv; None when the
  sources are not a task's split other than validation, or the task has no validation split."""
  from padir import data  # pylint: disable=g-import-not-at-top  (seqio only when reading)
  if sources.task is None or sources.split == "validation":
    return None
  if "validation" not in data.get_mixture_or_task(sources.task, sources.task_modules).splits:
    return None
  path = os.path.join(output_dir, VALIDATION_TSV)
  examples = data.iterate_examples(sources.task, "validation", module=sources.task_modules)
  files.write_text(path, "".join(f"{_one_line(e['inputs_text'])}\t{_one_line(e['targets_text'])}\n"
                                 for e in examples))
  return os.path.abspath(path)


def looped(text: str, repeats: int, max_n: int = 4) -> bool:
  """Whether some n-gram of `n <= max_n` whitespace-separated words occurs `repeats` times in a
  row ('ein großer großer großer', 'und einem Hund und einem Hund und einem Hund')."""
  words = text.split()
  for n in range(1, max_n + 1):
    for i in range(len(words) - n * repeats + 1):
      if all(words[i + k * n:i + (k + 1) * n] == words[i:i + n] for k in range(1, repeats)):
        return True
  return False


def _merge(shards: Sequence[str], path: str, dropped_path: str,
           max_repeats: int) -> Tuple[int, int]:
  """Concatenates the shards into `path` (atomically), the looped translations (`looped` with
  `max_repeats`; 0: none) into `dropped_path`; returns the numbers of kept and dropped lines."""
  kept = dropped = 0
  with open(path + ".tmp", "w", encoding="utf-8") as out, \
       open(dropped_path + ".tmp", "w", encoding="utf-8") as drop:
    for shard in shards:
      with open(shard, encoding="utf-8") as f:
        for line in f:
          if max_repeats and looped(line.rstrip("\n").split("\t")[-1], max_repeats):
            drop.write(line)
            dropped += 1
          else:
            out.write(line)
            kept += 1
  os.replace(path + ".tmp", path)
  os.replace(dropped_path + ".tmp", dropped_path)
  return kept, dropped


def distill(teacher_dir: str,
            sources: Sources,
            output_dir: str,
            *,
            shard_size: int = 10_000,
            decode_method: str = "beam",
            beam_size: int = 4,
            max_repeats: int = 3,
            name: Optional[str] = None,
            checkpoint_step: Optional[int] = None,
            gin_files: Sequence[str] = (),
            gin_bindings: Sequence[str] = (),
            progress: bool = False) -> DistillResult:
  """Translates `sources` with the AR teacher into `output_dir` and registers the result.

  Args:
    teacher_dir: the teacher's `padir train` model dir.
    sources: the source sentences.
    output_dir: shards, distilled.tsv and distill.json go here.
    shard_size: sources per shard (the unit of resuming).
    decode_method: 'beam' or 'greedy'.
    beam_size: beams of 'beam'.
    max_repeats: a translation with an n-gram (n <= 4 words) repeated this many times in a row
      is left out of distilled.tsv (written to dropped.tsv); 0 keeps all.
    name: corpus name of the registered tasks (default `sources.default_name()`).
    checkpoint_step: the teacher's step (default: its newest).
    gin_files, gin_bindings: overrides, after gin/runs/infer.gin and gin/runs/distill.gin.
    progress: show a tqdm bar.

  Returns:
    The merged TSV, the AR and PaDIR task names and the teacher step.
  """
  if shard_size < 1:
    raise ValueError(f"--shard_size={shard_size} must be >= 1")
  if max_repeats < 0 or max_repeats == 1:
    raise ValueError(f"--max_repeats={max_repeats}: 0 (keep every translation) or >= 2")
  if decode_method not in DECODE_METHODS:
    raise ValueError(f"--decode_method={decode_method!r}: expected one of {DECODE_METHODS}")
  teacher = translator_lib.Translator.from_checkpoint(
      teacher_dir, checkpoint_step, gin_bindings, [DISTILL_GIN_FILE, *gin_files])
  if not isinstance(teacher.model, models.ARModel):
    raise ValueError(f"--teacher_dir {teacher.model_dir} holds a {type(teacher.model).__name__}; "
                     "distill with an AR teacher (an ARModel run)")
  decoder_params = {"decode_method": decode_method}
  if decode_method == "beam":
    decoder_params["beam_size"] = beam_size
  settings = {"teacher_dir": teacher.model_dir, "teacher_step": teacher.step,
              "sources": sources.describe(), "shard_size": shard_size,
              "decoder_params": decoder_params, "gin_files": list(gin_files),
              "gin_bindings": list(gin_bindings)}
  _check_settings(output_dir, settings)
  checkpoints.write_run_record(output_dir, gin_config=teacher.gin_config,
                               seed=teacher.options.seed, extra=settings)
  os.makedirs(os.path.join(output_dir, SHARDS_SUBDIR), exist_ok=True)

  shards: List[str] = []
  stream = iter(sources)
  # One bar over the shards; each shard's translation shows its own bar over the sentences.
  with tqdm.tqdm(disable=not progress, desc="shards", unit="shard", file=sys.stderr,
                 dynamic_ncols=True) as bar:
    while True:
      chunk = list(itertools.islice(stream, shard_size))
      if not chunk:
        break
      path = _shard_path(output_dir, len(shards))
      if not os.path.exists(path):
        _write_shard(path, chunk, teacher.translate(chunk, decoder_params, progress=progress))
      shards.append(path)
      bar.update(1)
  tsv = os.path.join(output_dir, OUTPUT_TSV)
  count, dropped = _merge(shards, tsv, os.path.join(output_dir, DROPPED_TSV), max_repeats)

  from padir import parallel_text  # pylint: disable=g-import-not-at-top  (seqio when registering)
  validation = _write_validation(sources, output_dir)
  task_args = {"name": name or sources.default_name(),
               "tsv": (os.path.abspath(tsv) if validation is None
                       else {"train": os.path.abspath(tsv), "validation": validation}),
               "vocabulary": os.path.abspath(teacher.vocabulary.sentencepiece_model_file),
               "max_target_length": teacher.vocabulary.max_target_length}
  ar_task, padir_task = parallel_text.register_parallel_text(**task_args, overwrite=True)
  _write_task_gin(output_dir, task_args)
  logger.info("distilled %d sentences into %s with %s (step %d), %d looped ones left out; "
              "tasks %s, %s", count, tsv, teacher.model_dir, teacher.step, dropped, ar_task,
              padir_task)
  return DistillResult(tsv, ar_task, padir_task, count, teacher.step, dropped)


def _write_task_gin(output_dir: str, task_args: Mapping[str, Any]) -> None:
  """Writes OUTPUT/task.gin: a student's `--gin_file` that registers the distilled task (the
  same registration as this process's) in any process that parses it, and selects its PaDIR
  flavour."""
  text = "\n".join([
      "# The distilled training data as a task (written by `padir distill`); its validation",
      "# split, if any, has the real references. Without one, validate a student on another",
      "# task (--gin.validation/data.get_dataset.mixture_or_task_name=\"'NAME'\") or not at all",
      "# (--gin.trainer.train.eval_dataset_fn=None).",
      "from __gin__ import dynamic_registration",
      "from tasks import local",
      "",
      "MIXTURE_OR_TASK_NAME = @local.parallel_text_task()",
      "local.parallel_text_task:",
      *[f"  {key} = {value!r}" for key, value in task_args.items()],
      "  flavour = 'padir'",
      ""])
  files.write_text(os.path.join(output_dir, TASK_GIN), text)
