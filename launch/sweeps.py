"""Sweep definitions: a base experiment (gin files + bindings) and the trials run over it.

A sweep is a small Python file that defines `SWEEP` (XManager's habit: hyperparameters as
Python, the experiment itself as gin):

  from launch.sweeps import Sweep, product, sweep

  SWEEP = Sweep(
      name="builtin_decoder_input",
      gin_files=["models/padir_tiny.gin", "runs/train.gin", "tasks/builtin.gin",
                 "sweeps/builtin_base.gin"],
      train=sweep("decoding.RefinementScheme.decoder_input_scheme", ["random", "mask", "mask_range"]),
      decode=sweep("decoding.PadirDecodeConfig.num_decode_iterations", [1, 2, 4, 8]),
      eval_task="builtin_padir")

- `train` points change training: each is one `padir train` run (`--gin.NAME=VALUE` flags on top
  of `gin_files` and `bindings`).
- `decode` points change only decoding (num_decode_iterations, length_beam, top_k_lengths, ...):
  each is one `padir eval` of every training run, so they never retrain.
- A trial is (training run, decode point): `len(train) * len(decode)` trials,
  `len(train)` trainings.

Points are built with `sweep(name, values)` (one axis), `product(*axes)`, `zipit(*axes)`
(element-wise) and `union(*axes)` (one after the other: one-factor-at-a-time ablations), or
written out as a list of dicts `[{"NAME": value, ...}, ...]`. Values are Python literals, written
into gin as such (`"mask"`, `3`, `(1, 2)`, `None`); `GinExpr("@foo()")` / `GinExpr("%MACRO")`
is written verbatim. A dict `{label: value}` of values names them in directories and tables. The
name `GIN_FILE` adds a gin file (or a list of them) to a run, e.g. a distilled task's `task.gin`:
`sweep(GIN_FILE, {"raw": None, "distilled": "runs/demo/distilled/task.gin"})`.
"""
import argparse
import dataclasses
import itertools
import json
import os
import re
import runpy
import sys
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

GIN_FILE = "GIN_FILE"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN_ROOT = os.path.join(REPO, "gin")
_NAME = re.compile(r"^[A-Za-z_][\w./]*$")
_UNSAFE = re.compile(r"[^\w.=,+-]")


class SweepError(ValueError):
  """A sweep definition that cannot work; the message names the file, axis or value."""


@dataclasses.dataclass(frozen=True)
class GinExpr:
  """A gin value written as is (a reference `@fn()`, a macro `%NAME`)."""
  text: str


@dataclasses.dataclass(frozen=True)
class Setting:
  """One name set to one value. `label` names the value in directories and tables."""
  name: str
  value: Any
  label: str

  def gin_value(self) -> str:
    """The value as gin text (strings double-quoted: `--gin.NAME="mask"` reads well in a
    shell)."""
    if isinstance(self.value, GinExpr):
      return self.value.text
    return json.dumps(self.value) if isinstance(self.value, str) else repr(self.value)

  def gin_files(self) -> List[str]:
    """The gin files a `GIN_FILE` setting adds (none for other names)."""
    if self.name != GIN_FILE or self.value is None:
      return []
    return [self.value] if isinstance(self.value, str) else list(self.value)


Point = Tuple[Setting, ...]


def _label(value: Any) -> str:
  return value.text if isinstance(value, GinExpr) else str(value)


def _setting(name: str, value: Any, label: Optional[str] = None) -> Setting:
  if not isinstance(name, str) or not _NAME.match(name):
    raise SweepError(f"{name!r} is not a gin binding name (e.g. 'decoding.RefinementScheme.rejecter', "
                     f"'DROPOUT_RATE') nor {GIN_FILE!r}")
  return Setting(name, value, _label(value) if label is None else str(label))


def sweep(name: str, values: Union[Sequence[Any], Mapping[str, Any]]) -> List[Point]:
  """One axis: `name` set to each of `values` (a list, or a dict {label: value})."""
  items = (list(values.items()) if isinstance(values, Mapping)
           else [(None, v) for v in values])
  if not items:
    raise SweepError(f"sweep({name!r}, ...) has no values")
  return [(_setting(name, value, label),) for label, value in items]


def _merge(points: Iterable[Point]) -> Point:
  merged = tuple(itertools.chain.from_iterable(points))
  names = [s.name for s in merged]
  if len(set(names)) != len(names):
    raise SweepError(f"a trial sets the same name twice: {names}")
  return merged


def product(*axes: Sequence[Point]) -> List[Point]:
  """Every combination of the axes' points (the first axis varies slowest)."""
  return [_merge(combo) for combo in itertools.product(*axes)]


def zipit(*axes: Sequence[Point]) -> List[Point]:
  """The axes' points taken together, element by element (equal lengths)."""
  if len({len(axis) for axis in axes}) > 1:
    raise SweepError(f"zipit needs axes of equal length, got {[len(a) for a in axes]}")
  return [_merge(combo) for combo in zip(*axes)]


def union(*axes: Sequence[Point]) -> List[Point]:
  """The axes' points one after the other (one factor at a time), duplicates dropped."""
  points = {}
  for point in itertools.chain.from_iterable(axes):
    points.setdefault(tuple((s.name, repr(s.value)) for s in point), point)
  return list(points.values())


def _points(spec: Any, what: str) -> List[Point]:
  """A list of points (or of dicts name -> value) as points; empty: one point, the base."""
  if not spec:
    return [()]
  points = []
  for item in spec:
    if isinstance(item, Mapping):
      points.append(_merge((_setting(n, v),) for n, v in item.items()))
    elif isinstance(item, tuple) and all(isinstance(s, Setting) for s in item):
      points.append(item)
    else:
      raise SweepError(f"{what}: expected points from sweep()/product()/... or dicts "
                       f"name -> value, got {item!r}")
  return points


def point_name(point: Point) -> str:
  """`name=label,...` with short names (the last dotted part), safe as a directory name."""
  if not point:
    return "base"
  shorts = [s.name.rsplit(".", 1)[-1] for s in point]
  parts = [f"{short if shorts.count(short) == 1 else s.name}={s.label}"
           for short, s in zip(shorts, point)]
  return _UNSAFE.sub("_", ",".join(parts))


@dataclasses.dataclass(frozen=True)
class TrainRun:
  """One training: the base experiment plus one train point."""
  name: str
  point: Point


@dataclasses.dataclass(frozen=True)
class Trial:
  """One evaluation: a training run decoded with one decode point."""
  run: TrainRun
  decode: Point

  @property
  def decode_name(self) -> str:
    return point_name(self.decode)

  @property
  def name(self) -> str:
    return f"{self.run.name}/{self.decode_name}"

  @property
  def settings(self) -> Point:
    return self.run.point + self.decode


@dataclasses.dataclass(frozen=True)
class Sweep:
  """A base experiment and the points trained and decoded over it (see the module docstring).

  Attributes:
    name: the sweep's name (the experiment title on XManager).
    gin_files: the base experiment's `--gin_file`s (relative to gin/ or as given), in order.
    train: training points (default: one run of the base experiment).
    decode: decode-only points, `padir eval` bindings (default: the model's own options).
    bindings: gin bindings {name: value} of every training run, after `gin_files`.
    eval_bindings: gin bindings {name: value} of every evaluation, before the decode point's
      (e.g. {"TranslatorOptions.batch_size": 256}).
    eval_task: the task every trial is evaluated on (e.g. the raw test set of a distilled run).
    eval_split: its split.
    eval_max_examples: evaluate on the first this many examples (None: all).
    task_modules: modules that register `eval_task` (`padir eval --module`).
  """
  name: str
  gin_files: Sequence[str]
  eval_task: str
  train: Any = ()
  decode: Any = ()
  bindings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  eval_bindings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  eval_split: str = "test"
  eval_max_examples: Optional[int] = None
  task_modules: Sequence[str] = ("tasks.builtin",)

  def __post_init__(self):
    train, decode = _points(self.train, "train"), _points(self.decode, "decode")
    for point in decode:
      if any(s.name == GIN_FILE for s in point):
        raise SweepError(f"sweep {self.name!r}: {GIN_FILE} changes training; put it in train")
    overlap = ({s.name for p in train for s in p} & {s.name for p in decode for s in p})
    if overlap:
      raise SweepError(f"sweep {self.name!r}: {sorted(overlap)} in both train and decode")
    for points, what in ((train, "train"), (decode, "decode")):
      names = [point_name(p) for p in points]
      if len(set(names)) != len(names):
        raise SweepError(f"sweep {self.name!r}: two {what} points have the same name; label "
                         f"their values (a dict {{label: value}}): {names}")
    object.__setattr__(self, "train", train)
    object.__setattr__(self, "decode", decode)

  def runs(self) -> List[TrainRun]:
    return [TrainRun(point_name(p), p) for p in self.train]

  def trials(self, run: Optional[TrainRun] = None) -> List[Trial]:
    """Every trial, or those of one training run."""
    return [Trial(r, point) for r in ([run] if run else self.runs()) for point in self.decode]

  def parameters(self) -> List[str]:
    """The swept names, in order of first appearance (train first)."""
    names = [s.name for p in (*self.train, *self.decode) for s in p]
    return list(dict.fromkeys(names))

  def train_args(self, run: TrainRun, model_dir: str,
                 extra_flags: Sequence[str] = ()) -> List[str]:
    """`padir train` arguments of `run` (after the word `train`)."""
    files = list(self.gin_files) + [f for s in run.point for f in s.gin_files()]
    fixed = [_setting(n, v) for n, v in self.bindings.items()]
    flags = [f"--gin.{s.name}={s.gin_value()}" for s in (*fixed, *run.point)
             if s.name != GIN_FILE]
    return [*(f"--gin_file={f}" for f in files), *flags, *extra_flags, f"--model_dir={model_dir}"]

  def eval_args(self, trial: Trial, model_dir: str, output_dir: str,
                watch: bool = False) -> List[str]:
    """`padir eval` arguments of `trial` (after the word `eval`)."""
    args = [f"--checkpoint_dir={model_dir}", f"--task={self.eval_task}",
            f"--split={self.eval_split}", f"--output={output_dir}"]
    args += [f"--module={m}" for m in self.task_modules]
    if self.eval_max_examples is not None:
      args.append(f"--max_examples={self.eval_max_examples}")
    args += [f"--gin.{s.name}={s.gin_value()}" for s in self.eval_settings(trial)]
    return args + (["--watch"] if watch else [])

  def eval_settings(self, trial: Trial) -> Point:
    """The gin settings of `trial`'s evaluation: `eval_bindings`, then its decode point."""
    return (*(_setting(n, v) for n, v in self.eval_bindings.items()), *trial.decode)


def parse_args_and_gin_flags(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]
                             ) -> Tuple[argparse.Namespace, List[str]]:
  """A launcher's (args, extra flags): the extra flags may only be `--gin.NAME=VALUE` and
  `--gin_file=FILE`, which go on to every `padir train` (anything else is a usage error)."""
  args, extra = parser.parse_known_args(argv)
  bad = [a for a in extra if not a.startswith(("--gin.", "--gin_file"))]
  if bad:
    parser.error(f"unrecognized arguments: {' '.join(bad)} (only --gin.NAME=VALUE and "
                 "--gin_file=FILE are passed on to padir train)")
  return args, extra


def resolve_path(path: str) -> str:
  """A sweep file as given, or relative to the repository's gin/ folder."""
  for candidate in (path, os.path.join(GIN_ROOT, path),
                    os.path.join(REPO, path)):
    if os.path.isfile(candidate):
      return candidate
  raise SweepError(f"--sweep={path}: no such file (looked here, under {GIN_ROOT} and {REPO})")


def load(path: str) -> Sweep:
  """The `SWEEP` a sweep file defines. The file runs as a script would: it imports the files
  beside it by name (shared axes)."""
  resolved = resolve_path(path)
  folder = os.path.dirname(os.path.abspath(resolved))
  sys.path.insert(0, folder)
  try:
    namespace = runpy.run_path(resolved)
  finally:
    sys.path.remove(folder)
  sweep_def = namespace.get("SWEEP")
  if not isinstance(sweep_def, Sweep):
    raise SweepError(f"{resolved} must define SWEEP = launch.sweeps.Sweep(...), "
                     f"got {type(sweep_def).__name__}")
  return sweep_def


def describe(point: Point) -> Dict[str, str]:
  """{name: label} of a point (for tables)."""
  return {s.name: s.label for s in point}
