"""Fitting an AR teacher's parameters to a PaDIR student that warm-starts from them.

Two of the teacher's arrays mean something else to a student (non-causal decoder):

- The decoder's relative position biases (`decoder/relpos_bias/rel_embedding`, [heads, buckets]):
  the teacher's were learned for causal buckets (every bucket for keys before the query), the
  student reads them as bidirectional buckets (half the buckets per direction). Copied as they
  are, the student's bias for an offset is the teacher's bias for another offset.
  `causal_to_bidirectional_relpos` re-buckets them by distance.
- The input embedding rows of [MASK], [LENGTH] and [MASK_i] (`token_embedder/embedding`): the
  teacher never saw these ids, so the rows are its random initialisation. `init_special_rows`
  sets them from the statistics of the trained rows of the real pieces.

`adapt_to_student` applies both to the arrays `padir.trainer.warm_start` copied, when the source
run is an AR one (its `config.gin` binds `trainer.train.model` to an `ARModel`) and the model
being trained has a non-causal decoder; explicit arguments override the detection. The result is
a deterministic function of its inputs, so every process of a multi-host run computes the same.
"""
import collections
import logging
import os
import tokenize
from typing import Any, Dict, Mapping, Optional

import numpy as np
from gin import config_parser

from padir import checkpoints
from padir import layers
from padir import network
from padir import t5_import
from padir.special_tokens import SpecialTokens

logger = logging.getLogger(__name__)

DECODER_RELPOS = "decoder/relpos_bias/rel_embedding"
TOKEN_EMBEDDING = "token_embedder/embedding"
SPECIAL_NOISE_FRACTION = 0.1  # [MASK] / [LENGTH] noise, as a fraction of the real rows' std.
# `trainer.train.model`'s class in a run's gin config -> whether its decoder is causal.
DECODER_CAUSAL_BY_MODEL = {"ARModel": True, "PadirModel": False, "CTCModel": False}
TRAIN_SELECTORS = ("train", "trainer.train", "padir.trainer.train")

_Reference = collections.namedtuple("_Reference", "name")
_Macro = collections.namedtuple("_Macro", "name")


# ----------------------------------------------------------------------------------------------
# Relative position biases.


def causal_to_bidirectional_relpos(rel_embedding: np.ndarray, num_buckets: int,
                                   max_distance: int) -> np.ndarray:
  """Bidirectional relative position biases that give each offset the causal bias of its distance.

  A key `d` positions before the query gets the causal table's bias for `d`; a key `d` positions
  after it the same (the causal table has none for keys after the query). A bidirectional bucket
  covering several distances up to `max_distance` gets the mean of their causal biases; buckets
  no distance reaches (never used) keep their value.

  Args:
    rel_embedding: `[heads, num_buckets]` biases of `layers.RelativePositionBiases` used with
      `bidirectional=False`.
    num_buckets: the table's buckets.
    max_distance: the table's `max_distance`.

  Returns:
    `[heads, num_buckets]` biases for `bidirectional=True`, in `rel_embedding`'s dtype.
  """
  rel_embedding = np.asarray(rel_embedding)
  if rel_embedding.ndim != 2 or rel_embedding.shape[1] != num_buckets:
    raise ValueError(f"rel_embedding of shape {rel_embedding.shape}: expected [heads, "
                     f"{num_buckets}] (num_buckets={num_buckets})")
  distance = np.arange(max_distance + 1, dtype=np.int32)
  relative = np.concatenate([-distance, distance[1:]])  # [R] key - query offsets.
  causal = np.asarray(layers.relative_position_bucket(-distance, False, num_buckets,
                                                      max_distance))
  causal = np.concatenate([causal, causal[1:]])  # [R]: +d reads the bias of -d.
  bidirectional = np.asarray(layers.relative_position_bucket(relative, True, num_buckets,
                                                             max_distance))
  covers = (bidirectional[:, None] == np.arange(num_buckets)).astype(np.float64)  # [R, N]
  counts = covers.sum(axis=0)
  means = rel_embedding[:, causal].astype(np.float64) @ covers / np.maximum(counts, 1.0)
  return np.where(counts > 0, means, rel_embedding).astype(rel_embedding.dtype)


# ----------------------------------------------------------------------------------------------
# Special-token embeddings.


def sinusoidal_code(num_positions: int, dim: int) -> np.ndarray:
  """`[num_positions, dim]` float64 sin | cos code of positions 0.. (`network.length_code`),
  times `sqrt(2)` so that each dimension has unit root mean square over a period."""
  return np.sqrt(2.0) * np.asarray(network.length_code(np.arange(num_positions), dim),
                                   np.float64)


def init_special_rows(embedding: np.ndarray, special_tokens: SpecialTokens,
                      noise_fraction: float = SPECIAL_NOISE_FRACTION,
                      seed: int = 0) -> np.ndarray:
  """`embedding` with the rows of [MASK], [LENGTH] and [MASK_1..N] set from the real pieces'.

  With `mean` and `std` the per-dimension mean and standard deviation of the real-piece rows
  (ids [first_real_piece, num_pieces)): [MASK_i] = mean + std * sinusoidal_code(i - 1), so neighbouring
  [MASK_i] are alike and distant ones differ, at the real rows' scale; [MASK] and [LENGTH] =
  mean + `noise_fraction` * std * (fixed normal noise drawn with `seed`), so they differ. Every
  other row is unchanged.

  Args:
    embedding: `[vocab, emb_dim]` token embedding, vocab >= `special_tokens.mask_range_end`.
    special_tokens: the vocabulary's id layout.
    noise_fraction: scale of the [MASK] / [LENGTH] noise relative to `std`.
    seed: the noise's seed.

  Returns:
    `[vocab, emb_dim]` in `embedding`'s dtype.
  """
  embedding = np.asarray(embedding)
  if embedding.ndim != 2 or embedding.shape[0] < special_tokens.mask_range_end:
    raise ValueError(f"token embedding of shape {embedding.shape}: expected [vocab >= "
                     f"{special_tokens.mask_range_end}, emb_dim] for {special_tokens}")
  if special_tokens.num_pieces <= special_tokens.first_real_piece:
    raise ValueError(f"num_pieces={special_tokens.num_pieces}: no real pieces beyond ids "
                     f"0..{special_tokens.first_real_piece - 1} to take embedding statistics from")
  real = embedding[special_tokens.first_real_piece:special_tokens.num_pieces].astype(np.float64)
  mean, std = real.mean(axis=0), real.std(axis=0)
  noise = np.random.default_rng(seed).standard_normal((2, embedding.shape[1]))
  out = embedding.copy()
  out[[special_tokens.mask_id, special_tokens.length_id]] = mean + noise_fraction * std * noise
  out[special_tokens.mask_range_id(np.arange(special_tokens.max_target_length))] = (
      mean + std * sinusoidal_code(special_tokens.max_target_length, embedding.shape[1]))
  return out


# ----------------------------------------------------------------------------------------------
# Detection and the warm-start step.


class _References(config_parser.ParserDelegate):
  """Parses gin references and macros as names, without resolving them."""

  def configurable_reference(self, scoped_configurable_name, evaluate):
    return _Reference(scoped_configurable_name)

  def macro(self, macro_name):
    return _Macro(macro_name)


def trained_model_class(config: str) -> Optional[str]:
  """The class name of the model a gin config binds to `trainer.train.model` ('ARModel'),
  following macros; None if it binds none."""
  bindings = {}
  for statement in config_parser.ConfigParser(config, _References()):
    if isinstance(statement, config_parser.BindingStatement) and not statement.scope:
      bindings[statement.selector, statement.arg_name] = statement.value
  value = next((bindings[selector, "model"] for selector in TRAIN_SELECTORS
                if (selector, "model") in bindings), None)
  while isinstance(value, _Macro):
    value = bindings.pop((value.name, ""), None)
  if not isinstance(value, _Reference):
    return None
  return value.name.rsplit("/", 1)[-1].rsplit(".", 1)[-1]


def source_config_path(init_checkpoint: str) -> Optional[str]:
  """`config.gin` of the run that wrote `init_checkpoint` (a model_dir, its checkpoints/ dir or
  one step dir), or None when the path is not inside a model_dir's checkpoints/."""
  model_dir = checkpoints.resolve(init_checkpoint).model_dir
  return None if model_dir is None else os.path.join(model_dir, checkpoints.CONFIG_FILE)


def source_decoder_causal(init_checkpoint: str) -> Optional[bool]:
  """Whether the run that wrote `init_checkpoint` had a causal decoder (an ARModel run: True; a
  PadirModel run: False), from its `config.gin`; None when that cannot be told. Pretrained T5
  (T5X, Hugging Face, or their `padir convert` output) is causal."""
  if t5_import.detect_format(init_checkpoint) or t5_import.is_converted(init_checkpoint):
    return True
  path = source_config_path(init_checkpoint)
  if path is None or not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    config = f.read()
  try:
    model_class = trained_model_class(config)
  except (SyntaxError, ValueError, tokenize.TokenError) as e:  # gin's parse errors.
    logger.warning("cannot parse %s (%s)", path, e)
    return None
  return DECODER_CAUSAL_BY_MODEL.get(model_class)


def _require(params: Mapping[str, Any], name: str, option: str) -> np.ndarray:
  if name not in params:
    raise ValueError(f"{option}: the warm-start checkpoint has no {name}")
  return np.asarray(params[name])


def adapt_to_student(params: Mapping[str, Any], model, init_checkpoint: str, *,
                     map_causal_relpos: Optional[bool] = None,
                     init_special_embeddings: Optional[bool] = None) -> Dict[str, Any]:
  """The arrays a warm start copied from `init_checkpoint`, fitted to `model`.

  Nothing changes unless `model`'s network has a non-causal decoder (a PaDIR student). Then the
  decoder's relative position biases are re-bucketed (`causal_to_bidirectional_relpos`) and the
  special-token embedding rows re-initialised (`init_special_rows`) when the source run's decoder
  was causal (`source_decoder_causal`), or as the arguments say.

  Args:
    params: parameter name ('decoder/relpos_bias/rel_embedding') -> array, the ones copied.
    model: the model being trained (a `padir.models` model, or any other, left alone).
    init_checkpoint: where `params` come from.
    map_causal_relpos: re-bucket the decoder's relative position biases (None: if the source is
      an AR run; a warning and no change when that cannot be told).
    init_special_embeddings: re-initialise the special-token rows (None: likewise).

  Returns:
    `params` with the adapted arrays replaced (host numpy arrays).

  Raises:
    ValueError: an option set True for a model without a non-causal T5 decoder, or for a
      checkpoint without the parameter it changes.
  """
  config = getattr(getattr(model, "module", None), "config", None)
  if not isinstance(config, network.T5Config) or config.decoder_causal:
    if map_causal_relpos or init_special_embeddings:
      raise ValueError(f"map_causal_relpos={map_causal_relpos}, init_special_embeddings="
                       f"{init_special_embeddings}: only for a model with a non-causal T5 "
                       "decoder (a PaDIR student)")
    return dict(params)
  if map_causal_relpos is None or init_special_embeddings is None:
    source_causal = source_decoder_causal(init_checkpoint)
    if source_causal is None:
      logger.warning(
          "warm start from %s: cannot tell whether it is an AR run (no config.gin binding "
          "trainer.train.model to %s); its decoder relative position biases and special-token "
          "embeddings are used as they are unless trainer.warm_start.map_causal_relpos / "
          "init_special_embeddings say otherwise", init_checkpoint,
          " or ".join(DECODER_CAUSAL_BY_MODEL))
    if map_causal_relpos is None:
      map_causal_relpos = bool(source_causal)
    if init_special_embeddings is None:
      init_special_embeddings = bool(source_causal)

  params = dict(params)
  if map_causal_relpos:
    params[DECODER_RELPOS] = causal_to_bidirectional_relpos(
        _require(params, DECODER_RELPOS, "map_causal_relpos"),
        config.relative_attention_num_buckets, config.relative_attention_max_distance)
    logger.info("warm start: %s re-bucketed from causal to bidirectional (%d buckets, max "
                "distance %d)", DECODER_RELPOS, config.relative_attention_num_buckets,
                config.relative_attention_max_distance)
  if init_special_embeddings:
    special = model.special_tokens
    params[TOKEN_EMBEDDING] = init_special_rows(
        _require(params, TOKEN_EMBEDDING, "init_special_embeddings"), special)
    logger.info("warm start: %s rows of [MASK] (%d), [LENGTH] (%d) and [MASK_1..%d] (%d..%d) "
                "initialised from the real pieces' mean and std", TOKEN_EMBEDDING, special.mask_id,
                special.length_id, special.max_target_length, special.mask_range_start,
                special.mask_range_end - 1)
  return params
