"""Translation with a checkpoint: the one path behind `padir infer`, `padir eval`,
`padir distill` and the Python API.

  translator = padir.Translator.from_checkpoint(
      "runs/padir_tiny", gin_bindings=["PadirDecodeConfig.num_decode_iterations = 8"])
  translator.translate(["a dog sees the cat .", ""])  # -> ["...", ""], one output per input

  padir infer --checkpoint_dir runs/padir_tiny --input src.txt --output hyp.txt \
    [--checkpoint_step N] [--gin.PadirDecodeConfig.num_decode_iterations=8]

The path: text -> vocabulary ids + EOS -> examples sorted by length, cut into batches of at most
`batch_size` rows, each padded to the first of a few `length_buckets` that fits and to a power of
two rows (so `jax.jit` compiles once per shape bucket) -> jitted `model.predict_batch_with_aux`
-> ids cut at EOS -> text, back in input order. Empty and whitespace-only lines (and lines that
encode to no piece) give empty outputs without running the model; lines longer than the largest
bucket are truncated (EOS kept) and counted in a warning, or refused with an error naming them
(`TranslatorOptions.truncate_long_lines = False`).

Gin: `from_checkpoint` replaces the gin config with the run's own record, `MODEL_DIR/config.gin`
(written by `padir train`; it defines MODEL, VOCABULARY and DECODE_CONFIG, and binds the run's
decoding defaults), then `gin/runs/infer.gin` (`checkpoint_model.model = %MODEL`,
`checkpoint_decode_config`, the `TranslatorOptions` and `TeacherReranking` defaults), then the
given gin files and bindings. Decode-time options are not the model's: they are the fields of
`decoding.PadirDecodeConfig` / `decoding.ARDecodeConfig`, built at predict time, so a plain
binding in a flag or a file overrides the run's default
(`--gin.PadirDecodeConfig.num_decode_iterations=8`,
`--gin.ARDecodeConfig.decode_method="'greedy'"`).
A config.gin of an earlier version, which bound them as model arguments (or bound the data
noise's removed `init_scheme`), is converted in memory when it is read (`upgrade_config`; the
file is left as it is).
"""
import dataclasses
import logging
import math
import os
import re
import sys
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from padir import checkpoints
from padir import decoding
from padir import gin_utils
from padir import models

logger = logging.getLogger(__name__)

INFER_GIN_FILE = "runs/infer.gin"
# A model argument's binding in a saved config: (scope/)models.CLASS.NAME = VALUE.
_MODEL_BINDING = re.compile(r"^(?:[\w.]+/)?models\.(ARModel|PadirModel)\.(\w+)\s*=\s*(.*)$")
# The decode config class of each model class (the decode-time arguments they once had).
_DECODE_CONFIGS = {"ARModel": decoding.ARDecodeConfig, "PadirModel": decoding.PadirDecodeConfig}
# Bindings of parameters that no longer exist: the data noise's own initial tokens (the model
# now fills the positions the noise marks with [MASK]).
_REMOVED_BINDING = re.compile(r"^(?:[\w.]+/)?preprocessors\.padir_noise\.init_scheme\s*=")


class CheckpointDirError(FileNotFoundError):
  """A checkpoint dir that is missing, empty or not a `padir train` model dir; named in the
  message."""


@gin.configurable
def checkpoint_model(model=gin.REQUIRED):
  """The model a checkpoint's gin config builds (gin/runs/infer.gin: `model = %MODEL`)."""
  return model


@gin.configurable
def checkpoint_decode_config(decode_config=gin.REQUIRED):
  """The decode-time options of an infer / eval run: `decode_config()`, the class a checkpoint's
  gin config names (gin/runs/infer.gin: `decode_config = %DECODE_CONFIG`), with the training
  run's bindings and this run's on top (e.g. `PadirDecodeConfig.num_decode_iterations = 8`)."""
  return decode_config()


@gin.configurable
@dataclasses.dataclass(frozen=True)
class TranslatorOptions:
  """How a `Translator` batches and decodes (gin: `TranslatorOptions.batch_size = 16`).

  Attributes:
    batch_size: most sentences per model call.
    length_buckets: padded source lengths (pieces + EOS), ascending; a batch is padded to the
      first that fits its longest source, longer sources are truncated to the last.
    seed: PRNG seed of random initial decoder inputs and sampling (the same key for every batch).
    truncate_long_lines: truncate sources longer than the last length bucket (their number is
      logged); False: such a source is an error naming its line.
    target_length_ratio: the decode length T of a batch is `ratio x` its source bucket (at most
      the vocabulary's max_target_length), as T5X's infer sizes decoder features: PaDIR's passes
      and AR's cache cost grow with T, so T follows the source instead of the global maximum.
  """
  batch_size: int = 64
  length_buckets: Tuple[int, ...] = (16, 32, 64, 128)
  seed: int = 0
  truncate_long_lines: bool = True
  target_length_ratio: float = 1.5

  def __post_init__(self):
    if self.batch_size < 1:
      raise ValueError(f"TranslatorOptions.batch_size={self.batch_size} must be >= 1")
    if self.target_length_ratio <= 0:
      raise ValueError(f"TranslatorOptions.target_length_ratio={self.target_length_ratio} must "
                       "be > 0")
    buckets = tuple(self.length_buckets)
    if not buckets or min(buckets) < 2 or list(buckets) != sorted(set(buckets)):
      raise ValueError(f"TranslatorOptions.length_buckets={buckets}: expected strictly "
                       "increasing lengths >= 2 (pieces + EOS)")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class TeacherReranking:
  """Rank a PaDIR model's candidates by an AR teacher's log-likelihood instead of their own
  scores (`--gin.TeacherReranking.checkpoint_dir="'runs/ar'"`; None: off).

  Attributes:
    checkpoint_dir: the AR teacher's model dir (its own config.gin builds it).
    step: its checkpoint step (None: the newest).
    length_normalize: divide each candidate's log-probability by its length.
  """
  checkpoint_dir: Optional[str] = None
  step: Optional[int] = None
  length_normalize: bool = True


@dataclasses.dataclass(frozen=True)
class Teacher:
  """An AR model with its parameters, ranking a PaDIR model's candidates."""
  model: models.ARModel
  params: Any
  length_normalize: bool = True


@dataclasses.dataclass
class Prediction:
  """One input line's translation.

  Attributes:
    text: the translation (one line; empty for an empty input).
    tokens: [n] int32 output ids before EOS.
    aux: this line's row of the model's aux (PaDIR: 'scores', 'iterations', 'lengths', and
      'history' [I, T] with `return_history`, ...; AR: 'scores'); empty when the model did not
      run (empty input).
  """
  text: str
  tokens: np.ndarray
  aux: Dict[str, np.ndarray]


# ----------------------------------------------------------------------------------------------
# Checkpoint dirs and their gin config.


def resolve_model_dir(path: str, step: Optional[int] = None) -> Tuple[str, Optional[int]]:
  """The model dir (holding config.gin) of a model dir, its checkpoints/ dir or a step dir.

  Returns:
    (model_dir, step): `step` as given, or the step of a step dir.

  Raises:
    CheckpointDirError: the path is missing or no `padir train` model dir.
  """
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise CheckpointDirError(f"checkpoint dir {path} does not exist")
  try:
    location = checkpoints.resolve(path, step)
  except ValueError as e:
    raise CheckpointDirError(str(e)) from e
  for model_dir in (location.model_dir, path, os.path.dirname(path)):
    if model_dir and os.path.isfile(os.path.join(model_dir, checkpoints.CONFIG_FILE)):
      return model_dir, location.step
  raise CheckpointDirError(
      f"checkpoint dir {path} has no {checkpoints.CONFIG_FILE} (nor its parents): give the "
      f"--model_dir of a `padir train` run")


def upgrade_config(config_text: str) -> Tuple[str, List[str]]:
  """A saved gin config of an earlier version, in today's layout; and the bindings it moved.

  Decode-time options were model arguments (`MODEL/models.PadirModel.num_decode_iterations = 4`,
  `MODEL/models.ARModel.decode_method = 'beam'`); they are now fields of the model's decode
  config (`decoding.PadirDecodeConfig.num_decode_iterations = 4`), named by the DECODE_CONFIG
  macro (a config that defines it has none to move). Bindings of removed parameters
  (`_REMOVED_BINDING`) are dropped and listed with the moved ones.
  """
  lines = config_text.splitlines()
  dropped = [line for line in lines if _REMOVED_BINDING.match(line)]
  if dropped:
    lines = [line for line in lines if not _REMOVED_BINDING.match(line)]
    config_text = "\n".join(lines) + "\n"
  if re.search(r"^DECODE_CONFIG\s*=", config_text, re.M):
    return config_text, dropped
  kept, moved, model_class = [], [], None
  for line in lines:
    match = _MODEL_BINDING.match(line)
    if match:
      model_class = match.group(1)
      config_class = _DECODE_CONFIGS[model_class]
      if match.group(2) in decoding.field_names(config_class):
        moved.append(f"decoding.{config_class.__name__}.{match.group(2)} = {match.group(3)}")
        continue
    kept.append(line)
  if model_class is None:
    return config_text, dropped
  text = "\n".join(kept)
  header = "from __gin__ import dynamic_registration"
  if header in text:
    text = text.replace(header, header + "\nfrom padir import decoding", 1)
  name = _DECODE_CONFIGS[model_class].__name__
  return "\n".join([text, f"DECODE_CONFIG = @decoding.{name}", *moved, ""]), dropped + moved


def parse_run_config(model_dir: str, gin_files: Sequence[str] = (),
                     gin_bindings: Sequence[str] = ()) -> None:
  """Replaces the gin config with `model_dir/config.gin` (`upgrade_config`d) +
  `gin/runs/infer.gin` + `gin_files` + `gin_bindings`. The saved config imports the modules it
  configures.

  Raises:
    gin_utils.GinFlagError: a bad saved config, gin file or binding, named in the message.
  """
  config_path = os.path.join(model_dir, checkpoints.CONFIG_FILE)
  with open(config_path) as f:
    config_text, moved = upgrade_config(f.read())
  if moved:
    logger.warning("%s is of an earlier version: its decode-time model arguments are read as "
                   "decode config bindings and bindings of removed parameters are dropped "
                   "(%s); the file is left as it is", config_path, "; ".join(moved))
  gin.clear_config()
  try:
    gin.parse_config(config_text)
  except Exception as e:  # gin raises several types; keep its message, add the file.
    raise gin_utils.GinFlagError(f"gin config {config_path}: {e}") from e
  gin_utils.parse_gin([INFER_GIN_FILE, *gin_files], list(gin_bindings), finalize=False)


def _built_model(model_dir: str) -> Tuple[models.BaseModel, Any]:
  """(the model, its decode config) that the parsed gin config builds; the model's vocabulary
  checked against the one the run recorded (`checkpoints.check_vocabulary`)."""
  try:
    model = checkpoint_model()
  except Exception as e:  # gin wraps the model's own errors; the message says which.
    raise gin_utils.GinFlagError(
        f"building the model of {model_dir}/{checkpoints.CONFIG_FILE} (its MODEL macro): "
        f"{e}") from e
  try:
    decode_config = checkpoint_decode_config()
  except Exception as e:  # As above: a bad value or name of a decode-time binding.
    raise gin_utils.GinFlagError(f"the decode config of {model_dir} (DECODE_CONFIG): {e}") from e
  if not isinstance(decode_config, model.decode_config_class):
    raise gin_utils.GinFlagError(
        f"{model_dir}/{checkpoints.CONFIG_FILE}: DECODE_CONFIG builds a "
        f"{type(decode_config).__name__}, but a {type(model).__name__} takes a "
        f"{model.decode_config_class.__name__}")
  checkpoints.check_vocabulary(model_dir, model.output_vocabulary)
  return model, decode_config


def load_model_params(model: models.BaseModel, model_dir: str,
                      step: Optional[int] = None) -> Tuple[Any, int]:
  """Loads and checks `model`'s parameters from `model_dir` onto the default device.

  Returns:
    (params, step).

  Raises:
    CheckpointDirError: no complete checkpoint (or not `step`) in the model dir.
    checkpoints.CheckpointMismatchError: the checkpoint is of another model config.
  """
  shapes = {"encoder_input_tokens": (1, 2), "decoder_input_tokens": (1, 2)}
  abstract = jax.eval_shape(
      lambda rng: nn.meta.unbox(model.get_initial_variables(rng, shapes)["params"]),
      jax.random.PRNGKey(0))
  directory = checkpoints.checkpoint_dir(model_dir)
  if not os.path.isdir(directory):
    raise CheckpointDirError(f"checkpoint dir {model_dir} has no {checkpoints.CHECKPOINTS_SUBDIR}/"
                             " (has training saved a checkpoint yet?)")
  try:
    params, step = checkpoints.load_params(model_dir, step, abstract)
  except FileNotFoundError as e:
    raise CheckpointDirError(f"checkpoint dir {model_dir}: {e}") from e
  return jax.device_put(params), step


# ----------------------------------------------------------------------------------------------
# The translator.


def _next_power_of_two(n: int) -> int:
  return 1 << max(n - 1, 0).bit_length()


class Translator:
  """Translates lines of text with a model and its parameters (see the module docstring).

  Args:
    model: an `ARModel` or `PadirModel` with a vocabulary.
    params: its parameters.
    options: batching options (default `TranslatorOptions()`, i.e. gin's).
    decode_config: the model's decode-time options (a `model.decode_config_class`; default its
      defaults); `translate(decoder_params=...)` overrides fields of it per call.
    teacher: optional AR teacher ranking a PaDIR model's candidates.
    model_dir: the run the parameters come from (for `load_step`).
    step: their checkpoint step.
    gin_config: the operative gin config the model and options were built with (for the run
      records of eval and distill output dirs).
  """

  def __init__(self, model: models.BaseModel, params: Any,
               options: Optional[TranslatorOptions] = None, teacher: Optional[Teacher] = None,
               model_dir: Optional[str] = None, step: Optional[int] = None,
               gin_config: Optional[str] = None, decode_config: Any = None):
    if model.vocabulary is None:
      raise ValueError(f"{type(model).__name__} has no vocabulary to encode text with: set its "
                       "`vocabulary` (gin: VOCABULARY)")
    if teacher is not None:
      if not isinstance(model, models.PadirModel):
        raise ValueError(f"teacher reranking ranks PaDIR candidates; this model is a "
                         f"{type(model).__name__}")
      if teacher.model.special_tokens.num_pieces != model.special_tokens.num_pieces:
        raise ValueError(f"the teacher's vocabulary has {teacher.model.special_tokens.num_pieces} "
                         f"pieces, the model's {model.special_tokens.num_pieces}: they must "
                         "share one vocabulary")
    self.model = model
    self.params = params
    self.options = options if options is not None else TranslatorOptions()
    self.decode_config = model.decode_config(decode_config)
    self.teacher = teacher
    self.model_dir = model_dir
    self.step = step
    self.gin_config = gin_config
    self._jitted = {}  # (sorted decoding options, with_aux) -> the jitted predict function.
    self._rng = jax.random.PRNGKey(self.options.seed)  # Made once: an eager op costs ~0.2 ms.

  @classmethod
  def from_checkpoint(cls, checkpoint_dir: str, step: Optional[int] = None,
                      gin_bindings: Sequence[str] = (),
                      gin_files: Sequence[str] = ()) -> "Translator":
    """Rebuilds a run's model and vocabulary from its saved gin config and loads a checkpoint.

    Replaces the process's gin config (see the module docstring).

    Args:
      checkpoint_dir: a `padir train` model dir (or its checkpoints/ dir, or a step dir).
      step: the checkpoint step (None: the newest readable one).
      gin_bindings: overrides, e.g. "PadirDecodeConfig.num_decode_iterations = 8",
        "TranslatorOptions.batch_size = 16", "TeacherReranking.checkpoint_dir = 'runs/ar'".
      gin_files: more gin files, parsed after gin/runs/infer.gin.

    Raises:
      CheckpointDirError, gin_utils.GinFlagError, checkpoints.CheckpointMismatchError,
      checkpoints.VocabularyMismatchError: with the dir, file or binding named.
    """
    model_dir, step = resolve_model_dir(checkpoint_dir, step)
    parse_run_config(model_dir, gin_files, gin_bindings)
    model, decode_config = _built_model(model_dir)
    options, reranking = TranslatorOptions(), TeacherReranking()
    gin_config = gin.operative_config_str()  # Before a teacher's config replaces it.
    params, step = load_model_params(model, model_dir, step)
    teacher = None
    if reranking.checkpoint_dir is not None:
      teacher_dir, teacher_step = resolve_model_dir(reranking.checkpoint_dir, reranking.step)
      parse_run_config(teacher_dir)
      teacher_model, _ = _built_model(teacher_dir)
      if not isinstance(teacher_model, models.ARModel):
        raise ValueError(f"TeacherReranking.checkpoint_dir={teacher_dir} holds a "
                         f"{type(teacher_model).__name__}; the teacher must be an ARModel")
      teacher_params, _ = load_model_params(teacher_model, teacher_dir, teacher_step)
      teacher = Teacher(teacher_model, teacher_params, reranking.length_normalize)
    return cls(model, params, options, teacher, model_dir=model_dir, step=step,
               gin_config=gin_config, decode_config=decode_config)

  @property
  def vocabulary(self):
    return self.model.output_vocabulary

  def load_step(self, step: Optional[int] = None) -> int:
    """Replaces the parameters by another checkpoint of the same run (compiled functions are
    kept). Returns the step loaded."""
    if self.model_dir is None:
      raise ValueError("load_step needs a translator made by from_checkpoint")
    self.params, self.step = load_model_params(self.model, self.model_dir, step)
    return self.step

  def translate(self, lines: Iterable[str], decoder_params: Optional[Mapping[str, Any]] = None,
                progress: bool = False) -> List[str]:
    """One translation per line, in order (see `predict`)."""
    return [p.text for p in self.predict(lines, decoder_params, progress, with_aux=False)]

  def predict(self, lines: Iterable[str], decoder_params: Optional[Mapping[str, Any]] = None,
              progress: bool = False, with_aux: bool = True) -> List[Prediction]:
    """Translates `lines`, returning texts, ids and the model's aux per line, in order.

    Args:
      lines: source sentences (surrounding whitespace is ignored, as in the tasks).
      decoder_params: overrides of `decode_config`'s fields for this call (and, with a
        decoding method bound as `ARModel.decode_fn`, that method's own options).
      progress: show a tqdm bar on stderr.
      with_aux: also compute and fetch the model's aux (scores, iterations, ...); without it
        the compiled function returns the tokens alone (what `translate` needs) and every
        Prediction's aux is empty.
    """
    lines = list(lines)
    params = {field.name: getattr(self.decode_config, field.name)
              for field in dataclasses.fields(self.decode_config)}
    params.update(decoder_params or {})
    predict_fn = self._predict_fn(params, with_aux)
    encoded = self._encode(lines)
    order = sorted((i for i, ids in enumerate(encoded) if ids is not None),
                   key=lambda i: len(encoded[i]))
    empty = Prediction("", np.zeros((0,), np.int32), {})
    results = [empty] * len(lines)
    teacher_params = None if self.teacher is None else self.teacher.params
    with tqdm.tqdm(total=len(lines), disable=not progress, unit="line", file=sys.stderr,
                   dynamic_ncols=True) as bar:
      bar.update(len(lines) - len(order))
      for start in range(0, len(order), self.options.batch_size):
        indices = order[start:start + self.options.batch_size]
        batch = self._pad([encoded[i] for i in indices])
        tokens, aux = jax.device_get(predict_fn(self.params, teacher_params, batch, self._rng))
        for row, i in enumerate(indices):
          results[i] = self._prediction(tokens[row], {k: v[row] for k, v in aux.items()})
        bar.update(len(indices))
    return results

  def _encode(self, lines: Sequence[str]) -> List[Optional[np.ndarray]]:
    """Ids + EOS per line ([n] int32), None for lines without pieces; truncates and counts (or
    raises ValueError naming the lines, without `options.truncate_long_lines`)."""
    limit = self.options.length_buckets[-1]
    eos = self.model.special_tokens.eos_id
    encoded, too_long = [], []
    for number, line in enumerate(lines, start=1):
      ids = list(self.vocabulary.encode(line.strip())) if line.strip() else []
      if not ids:
        encoded.append(None)
        continue
      if len(ids) >= limit:
        too_long.append(number)
        ids = ids[:limit - 1]
      encoded.append(np.asarray(ids + [eos], np.int32))
    if too_long and not self.options.truncate_long_lines:
      raise ValueError(
          f"{len(too_long)} of {len(lines)} input lines are longer than {limit - 1} pieces (the "
          f"last TranslatorOptions.length_buckets, {limit}, holds EOS too): line(s) "
          f"{', '.join(map(str, too_long[:10]))}{', ...' if len(too_long) > 10 else ''}; add a "
          f"longer bucket, or set TranslatorOptions.truncate_long_lines = True to truncate them")
    if too_long:
      logger.warning("%d of %d input lines were longer than %d pieces and were truncated "
                     "(TranslatorOptions.length_buckets)", len(too_long), len(lines), limit - 1)
    return encoded

  def _pad(self, rows: Sequence[np.ndarray]) -> np.ndarray:
    """[n] id rows -> [R, L] int32: L the first bucket that fits, R the next power of two (at
    most batch_size); the extra rows hold a lone EOS."""
    longest = max(len(r) for r in rows)
    length = next(b for b in self.options.length_buckets if b >= longest)
    num_rows = min(self.options.batch_size, _next_power_of_two(len(rows)))
    batch = np.zeros((num_rows, length), np.int32)
    batch[len(rows):, 0] = self.model.special_tokens.eos_id
    for i, ids in enumerate(rows):
      batch[i, :len(ids)] = ids
    return batch

  def text(self, tokens: np.ndarray) -> str:
    """One output row of ids [T] -> one line of text (cut at the first EOS, PAD dropped)."""
    return self._prediction(tokens, {}).text

  def _prediction(self, tokens: np.ndarray, aux: Dict[str, np.ndarray]) -> Prediction:
    special = self.model.special_tokens
    tokens = np.asarray(tokens)
    ends = np.flatnonzero(tokens == special.eos_id)
    ids = tokens[:ends[0] if ends.size else len(tokens)]
    ids = ids[ids != special.pad_id]
    text = " ".join(self.vocabulary.decode(ids.tolist()).split())  # One line, single spaces.
    return Prediction(text, ids, aux)

  def _predict_fn(self, decoder_params: Mapping[str, Any], with_aux: bool = True):
    """`(params, teacher_params, encoder_input_tokens [B, S], rng) -> (tokens, aux)`, jitted
    once per set of decoding options (and, by jit, once per input shape); aux is {} unless
    `with_aux`."""
    key = (tuple(sorted(decoder_params.items())), with_aux)
    if key not in self._jitted:
      self.model.check_decoder_params(decoder_params)
      model, teacher, ratio = self.model, self.teacher, self.options.target_length_ratio

      def predict(params, teacher_params, encoder_input_tokens, rng):
        kwargs = {}
        if teacher is not None:
          kwargs["rescore_fn"] = teacher.model.make_rescore_fn(teacher_params,
                                                               teacher.length_normalize)
        rows, source_length = encoder_input_tokens.shape
        decode_length = min(model.special_tokens.max_target_length,
                            max(2, math.ceil(ratio * source_length)))
        batch = {"encoder_input_tokens": encoder_input_tokens,
                 # Only its shape is read: the decode length T (T5X's infer batches).
                 "decoder_input_tokens": jnp.zeros((rows, decode_length), jnp.int32)}
        tokens, aux = model.predict_batch_with_aux(params, batch, rng,
                                                   decoder_params=dict(decoder_params), **kwargs)
        return tokens, (aux if with_aux else {})

      self._jitted[key] = jax.jit(predict)
    return self._jitted[key]


# ----------------------------------------------------------------------------------------------
# Command line.


def read_lines(path: str) -> List[str]:
  """Lines of a UTF-8 text file (`.gz` allowed) or of stdin for "-"; errors name file and line."""
  if path == "-":
    return [line.rstrip("\n").rstrip("\r") for line in sys.stdin]
  from padir import data  # pylint: disable=g-import-not-at-top  (seqio only for files)
  return list(data.iter_text_lines(path))


def write_lines(path: str, lines: Iterable[str]) -> None:
  """Writes one line per item to `path` (atomically: a temporary file renamed) or stdout ("-")."""
  if path == "-":
    sys.stdout.writelines(line + "\n" for line in lines)
    sys.stdout.flush()
    return
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  tmp = f"{path}.tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.writelines(line + "\n" for line in lines)
  os.replace(tmp, path)
