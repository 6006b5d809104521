"""Decoding speed, side by side: AR (greedy, beam 4, KV cache) vs PaDIR (1/2/4/8 iterations).

One process, one machine, one model size, the same source sentences for every system:

    python -m benchmarks.decode_speed --model tiny --out_dir runs/decode_speed
    python -m benchmarks.decode_speed --model base --dtype bfloat16 --out_dir runs/decode_speed_gpu

Systems (each at every batch size): `ar_greedy` and `ar_beam4` (KV cache, cross-attention keys and
values computed once); `padir` at 1, 2, 4, 8 iterations with length beam 1 and 3; and the
deep-encoder / shallow-decoder variant of the same width (Kasai et al.; default 2x the encoder
layers, 1 decoder layer): `ar_greedy_deep_shallow` and `padir_deep_shallow`.

Protocol (also written into the JSON and the markdown):
- Weights: random (seeded, numpy; speed does not depend on training) unless `--ar_checkpoint_dir`
  / `--padir_checkpoint_dir` are given (`padir.checkpoints.load_params`).
- Sentences: source/target lengths from a real corpus (`--data_dir`, default
  `../shared/data/multi30k`, test_2016_flickr en->de: whitespace words x `--pieces_per_word`
  + EOS), else from the built-in corpus (`padir.corpus`), else the built-in corpus's 5-20 words;
  token ids are random real pieces. A batch of B is the B sentences around the corpus's median
  target length (`--batching grouped`, as the translate path groups batches by length), or the
  first B of a seeded random sample (`--batching random`); sources are padded to the batch's
  longest.
- Comparable, fixed work: every system decodes T = the batch's longest reference target. AR
  cannot stop early: EOS is replaced by an id the model never emits (its logit is -1e10), so
  greedy and beam search run exactly T cached steps, what a trained model does when the longest
  row ends at its reference length. PaDIR runs exactly k decoder passes (`early_exit=False`;
  converged rows are frozen but computed), with its length classifier (random, so candidate
  lengths are clipped to T; a pass costs the same for any length <= T).
- Timing (`padir.timing.time_compiled_interleaved`): compilation excluded (every point compiled
  ahead of the timing, in parallel threads, then one warm-up call, untimed unless it alone
  exceeds `--max_seconds`), inputs already on the device, `jax.block_until_ready` on the output
  before the clock stops; the systems of a batch size timed in turn, one call each a round, so
  that the machine's drift reaches them alike; median, p90 and fastest over the repeats (up to
  `--repeats`, at least `--min_repeats`, stopping after `--max_seconds` per system); per batch,
  per sentence (batch latency / B) and sentences/s (B / median).
- Length scaling: batch 1, source = target length 16 -> 128 tokens, AR greedy vs PaDIR@4.
- Roofline: each AR step's and PaDIR pass's FLOP bound from the machine's rate of the decoder's
  own products at the call's own row count (B for a step, B x C x T for a pass: 1, T, 3T, 64T
  at batch 1 and 64; `benchmarks/row_cost.py`), not from one large square product.

Writes `decode_speed.json`, `decode_speed.md` (each system's speed ratio to AR greedy at the same
batch size, the headline numbers, the length sweep) and `decode_speed.png` (speedup vs batch
size, one line per system; latency vs target length). Imports neither seqio nor TensorFlow.
"""
import argparse
import concurrent.futures
import dataclasses
import gzip
import json
import logging
import math
import os
import shlex
import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

if __package__ in (None, ""):  # `python benchmarks/decode_speed.py`: make `padir` importable.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from padir import decoding  # pylint: disable=g-import-not-at-top
from padir import layers  # pylint: disable=g-import-not-at-top
from padir import models  # pylint: disable=g-import-not-at-top
from padir import network  # pylint: disable=g-import-not-at-top
from padir import timing  # pylint: disable=g-import-not-at-top
from benchmarks import decode_speed_report  # pylint: disable=g-import-not-at-top
from benchmarks import roofline  # pylint: disable=g-import-not-at-top
from padir.special_tokens import SpecialTokens  # pylint: disable=g-import-not-at-top

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA_DIR = os.path.join(os.path.dirname(REPO), "shared", "data", "multi30k")
MODEL_CHOICES = ("test", "tiny", "small", "base")
# Vocabulary of the benchmark models (T5-sized; `test` uses the unit-test size).
NUM_PIECES = {"test": 100}
MAX_TARGET_LENGTH = {"test": 64}
DEFAULT_NUM_PIECES, DEFAULT_MAX_TARGET_LENGTH = 32000, 256
FALLBACK_WORDS = (5, 20)  # padir.corpus's sentence length range, when nothing else is there.

PROTOCOL = (
    "Fixed, comparable work: every system decodes T = the batch's longest reference target "
    "length. AR greedy / beam 4 run exactly T cached steps (EOS is made unreachable). PaDIR "
    "runs exactly k decoder passes (early_exit=False) over its C = length_beam candidates per "
    "sentence, T positions each (num_canvas_sizes=1: the canvas is not fitted to the random "
    "length predictor's lengths; T is passed as the width of decoder_target_tokens, as a "
    "length-bucketed decode would size it; without it the model refines max_target_length "
    "positions). Encoder, cross-attention keys/values, length prediction and candidate scoring "
    "are inside the timed call. Compilation excluded (ahead of time, plus one warm-up call, "
    "timed only for calls longer than --max_seconds); inputs on the device; "
    "jax.block_until_ready before the clock stops. Latency = median / p90 over the repeats of "
    "one batch; per sentence = batch latency / B; sentences/s = B / median.")


# ------------------------------------------------------------------------------------------------
# Sentences.


def _read_lines(path: str) -> List[str]:
  with gzip.open(path, "rt", encoding="utf-8") as f:
    return [line.rstrip("\n") for line in f]


def corpus_lengths(data_dir: Optional[str], pieces_per_word: float, max_length: int,
                   seed: int) -> Tuple[List[Tuple[int, int]], str]:
  """(source, target) lengths in pieces, EOS included, and where they come from."""

  def pieces(text: str) -> int:
    return min(max_length, max(1, math.ceil(len(text.split()) * pieces_per_word)) + 1)

  if data_dir and os.path.exists(os.path.join(data_dir, "test_2016_flickr.en.gz")):
    src = _read_lines(os.path.join(data_dir, "test_2016_flickr.en.gz"))
    tgt = _read_lines(os.path.join(data_dir, "test_2016_flickr.de.gz"))
    return ([(pieces(s), pieces(t)) for s, t in zip(src, tgt)],
            f"multi30k test_2016_flickr en->de ({data_dir}), whitespace words x "
            f"{pieces_per_word} + EOS")
  try:
    from padir import corpus  # pylint: disable=g-import-not-at-top
    pairs = corpus.generate_pairs(seed, "test", 1000, corpus.DEFAULT_MULTIMODALITY)
    return ([(pieces(s), pieces(t)) for s, t in pairs],
            f"built-in corpus (padir.corpus, seed {seed}), whitespace words x "
            f"{pieces_per_word} + EOS")
  except ImportError as e:  # padir.corpus needs the data stack (seqio) on some images.
    logging.warning("padir.corpus not importable (%s): uniform %d-%d words", e, *FALLBACK_WORDS)
    rng = np.random.RandomState(seed)
    words = rng.randint(FALLBACK_WORDS[0], FALLBACK_WORDS[1] + 1, size=(1000, 2))
    return ([(pieces("w " * int(s)), pieces("w " * int(t))) for s, t in words],
            f"uniform {FALLBACK_WORDS[0]}-{FALLBACK_WORDS[1]} words (the built-in corpus's "
            f"range) x {pieces_per_word} + EOS")


def select_sentences(lengths: Sequence[Tuple[int, int]], batch_size: int, batching: str,
                     seed: int) -> List[Tuple[int, int]]:
  """The (source, target) lengths of one batch of `batch_size` sentences.

  'grouped' (default, as the translate path batches: grouped by length): the `batch_size`
  sentences around the median target length of the corpus. 'random': a seeded random sample
  whose first sentence has the median target length (batch B = its first B sentences).
  """
  if batching == "grouped":
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i][1], lengths[i][0], i))
    if batch_size > len(order):  # Repeat the corpus (sorted) to reach the batch size.
      order = sorted(order * -(-batch_size // len(order)), key=lambda i: (lengths[i][1], i))
    start = max(0, min(len(order) - batch_size, len(order) // 2 - batch_size // 2))
    return [lengths[i] for i in order[start:start + batch_size]]
  rng = np.random.RandomState(seed)
  num = max(batch_size, 1)
  sample = [lengths[i] for i in rng.choice(len(lengths), size=max(num, len(lengths)),
                                           replace=num > len(lengths))]
  targets = sorted(t for _, t in sample)
  median = targets[len(targets) // 2]
  first = next(i for i, (_, t) in enumerate(sample) if t == median)
  sample.insert(0, sample.pop(first))
  return sample[:batch_size]


def make_batch(sentences: Sequence[Tuple[int, int]], num_pieces: int, seed: int,
               pad_id: int = 0) -> Dict[str, np.ndarray]:
  """Random real-piece ids with the given lengths; sources end with EOS, targets too."""
  rng = np.random.RandomState(seed)
  batch = len(sentences)
  src_len = max(s for s, _ in sentences)
  tgt_len = max(t for _, t in sentences)
  src = np.full((batch, src_len), pad_id, np.int32)
  tgt = np.full((batch, tgt_len), pad_id, np.int32)
  for i, (s, t) in enumerate(sentences):
    src[i, :s - 1] = rng.randint(4, num_pieces, size=s - 1)
    src[i, s - 1] = 1
    tgt[i, :t - 1] = rng.randint(4, num_pieces, size=t - 1)
    tgt[i, t - 1] = 1
  return {"encoder_input_tokens": src, "decoder_target_tokens": tgt}


# ------------------------------------------------------------------------------------------------
# Models and parameters.


def _path_name(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def random_params(model: models.BaseModel, batch: Dict[str, np.ndarray], seed: int) -> Any:
  """T5-scaled random parameters, drawn with numpy (no init compilation): kernels N(0, 1/fan_in),
  embeddings N(0, 1), norm scales 1, relative position biases N(0, 0.1)."""
  shapes = {k: v.shape for k, v in batch.items()}
  shapes["decoder_input_tokens"] = batch["decoder_target_tokens"].shape
  abstract = jax.eval_shape(lambda r: model.get_initial_variables(r, shapes),
                            jax.random.PRNGKey(0))
  abstract = nn_unbox(abstract)["params"]
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = _path_name(path)
    if name.endswith("scale") and "length" not in name:
      return jnp.ones(leaf.shape, leaf.dtype)
    if leaf.ndim == 0 or name.endswith("bias"):
      return jnp.zeros(leaf.shape, leaf.dtype)
    std = 1.0 if "embedding" in name and "rel_" not in name else (
        0.1 if "rel_embedding" in name else 1.0 / math.sqrt(leaf.shape[0]))
    return jnp.asarray(rng.standard_normal(leaf.shape, np.float32) * std, leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, abstract)


def nn_unbox(tree):
  from flax.linen import meta  # pylint: disable=g-import-not-at-top
  return meta.unbox(tree)


def load_checkpoint_params(path: str) -> Any:
  from padir import checkpoints  # pylint: disable=g-import-not-at-top
  params, step = checkpoints.load_params(path)
  logging.info("loaded %s step %d", path, step)
  return jax.tree_util.tree_map(jnp.asarray, params)


@dataclasses.dataclass(frozen=True)
class System:
  name: str  # ar_greedy, ar_beam4, padir, ar_greedy_deep_shallow, padir_deep_shallow, ...
  kind: str  # 'ar' | 'padir'
  variant: str  # 'standard' | 'deep_shallow'
  iterations: Optional[int] = None
  length_beam: int = 1
  beam_size: int = 1

  @property
  def label(self) -> str:
    if self.kind == "padir":
      return f"{self.name}@{self.iterations} lb{self.length_beam}"
    return self.name


def make_systems(iterations: Sequence[int], length_beams: Sequence[int],
                 ds_iterations: Sequence[int], deep_shallow: bool) -> List[System]:
  systems = [System("ar_greedy", "ar", "standard"),
             System("ar_beam4", "ar", "standard", beam_size=4)]
  systems += [System("padir", "padir", "standard", k, lb)
              for lb in length_beams for k in iterations]
  if deep_shallow:
    systems.append(System("ar_greedy_deep_shallow", "ar", "deep_shallow"))
    systems += [System("padir_deep_shallow", "padir", "deep_shallow", k, 1)
                for k in ds_iterations]
  return systems


def predict_fn(model: models.BaseModel, system: System) -> Callable:
  """(params, batch, rng) -> tokens [B, T], the model's own `predict_batch_with_aux`."""
  if system.kind == "ar":
    decoder_params = ({"decode_method": "greedy"} if system.beam_size == 1 else
                      {"decode_method": "beam", "beam_size": system.beam_size})
    return lambda p, b, rng: model.predict_batch_with_aux(p, b, decoder_params=decoder_params)[0]
  overrides = {"num_decode_iterations": system.iterations, "length_beam": system.length_beam,
               "early_exit": False, "num_canvas_sizes": 1}
  return lambda p, b, rng: model.predict_batch_with_aux(p, b, rng, decoder_params=overrides)[0]


# ------------------------------------------------------------------------------------------------
# Timing.


def _is_oom(error: Exception) -> bool:
  text = str(error)
  return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "out of memory" in text


def compile_all(calls: Sequence[Tuple[Callable, Tuple]], workers: int) -> List[Any]:
  """Ahead-of-time compiles each `(fn, args)`: traced and lowered here, compiled in parallel
  threads (XLA compiles outside the GIL). Returns, per call, (executable, seconds) or the
  exception (e.g. out of memory)."""
  lowered = []
  for fn, args in calls:
    start = time.perf_counter()
    try:
      lowered.append((jax.jit(fn).lower(*args), time.perf_counter() - start))
    except Exception as e:  # pylint: disable=broad-except
      lowered.append(e)

  def compile_one(item):
    if isinstance(item, Exception):
      return item
    low, seconds = item
    start = time.perf_counter()
    try:
      return low.compile(), seconds + time.perf_counter() - start
    except Exception as e:  # pylint: disable=broad-except
      return e

  with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
    return list(pool.map(compile_one, lowered))


def machine_info() -> Dict[str, Any]:
  return {**timing.machine(), "load_average_at_start": timing.load_average()}


# ------------------------------------------------------------------------------------------------
# Main.


def _ints(text: str) -> List[int]:
  return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  p.add_argument("--model", choices=MODEL_CHOICES, default="tiny",
                 help="network preset (`test` is the unit-test toy size)")
  p.add_argument("--dtype", choices=network.DTYPES, default="float32",
                 help="activation dtype (bfloat16 on accelerators)")
  p.add_argument("--attention", choices=layers.ATTENTION_IMPLEMENTATIONS, default="einsum",
                 help="the network's attention: written out, or one jax.nn.dot_product_attention "
                      "call (XLA's, or cuDNN's fused kernel on NVIDIA GPUs)")
  p.add_argument("--out_dir", default="runs/decode_speed")
  p.add_argument("--batch_sizes", type=_ints, default=[1, 8, 64])
  p.add_argument("--max_batch", default="auto",
                 help="the extra 'largest that fits' batch size: 'auto' (CPU: --cpu_max_batch; "
                      "accelerators: doubled from the largest of --batch_sizes until a system "
                      "runs out of memory or --max_batch_cap), an int, or 0 for none")
  p.add_argument("--cpu_max_batch", type=int, default=64)
  p.add_argument("--max_batch_cap", type=int, default=4096)
  p.add_argument("--iterations", type=_ints, default=[1, 2, 4, 8])
  p.add_argument("--length_beams", type=_ints, default=[1, 3])
  p.add_argument("--deep_shallow", default="auto",
                 help="'E,D' encoder,decoder layers of the deep-shallow variant; 'auto' = 2x the "
                      "preset's encoder layers, 1 decoder layer; 'none' to skip it")
  p.add_argument("--ds_iterations", type=_ints, default=[1, 4],
                 help="PaDIR iterations of the deep-shallow variant (length beam 1)")
  p.add_argument("--sweep_lengths", type=_ints, default=[16, 32, 64, 128],
                 help="target lengths of the batch-1 length-scaling sweep (empty: none)")
  p.add_argument("--sweep_iterations", type=int, default=4)
  p.add_argument("--repeats", type=int, default=10, help="most timed repeats per point")
  p.add_argument("--min_repeats", type=int, default=2)
  p.add_argument("--max_seconds", type=float, default=3.0,
                 help="stop repeating a point after this long (once --min_repeats are done)")
  p.add_argument("--batching", choices=("grouped", "random"), default="grouped",
                 help="grouped: each batch is the B sentences around the median target length "
                      "(the translate path groups batches by length); random: a seeded sample")
  p.add_argument("--compile_workers", type=int, default=0,
                 help="threads compiling ahead of the timing (0: min(4, CPU cores))")
  p.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
  p.add_argument("--pieces_per_word", type=float, default=1.3)
  p.add_argument("--num_pieces", type=int, default=None,
                 help="SentencePiece pieces (default 32000; 100 for `test`)")
  p.add_argument("--max_target_length", type=int, default=None,
                 help="the vocabulary's max target length (default 256; 64 for `test`)")
  p.add_argument("--ar_checkpoint_dir", default=None)
  p.add_argument("--padir_checkpoint_dir", default=None)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--row_rate_repeats", type=int, default=10,
                 help="calls per product and row count of the roofline's row rates (0: bound "
                 "from one large square product's rate instead)")
  p.add_argument("--compilation_cache_dir", default=None,
                 help="JAX persistent compilation cache (compilation is never timed)")
  args = p.parse_args(argv)
  args.argv = list(sys.argv[1:] if argv is None else argv)
  return args


def _layers(text: str, config: network.T5Config) -> Optional[Tuple[int, int]]:
  if text == "none":
    return None
  if text == "auto":
    return 2 * config.num_encoder_layers, 1
  enc, dec = _ints(text)
  return enc, dec


@dataclasses.dataclass
class Setup:
  """What every timed call shares: the models, their parameters and the sentences."""
  special_tokens: SpecialTokens
  configs: Dict[str, network.T5Config]  # 'standard' and, if asked for, 'deep_shallow'
  ar_models: Dict[str, models.ARModel]
  padir_models: Dict[str, models.PadirModel]
  params: Dict[Tuple[str, str], Any]  # (kind, variant) -> parameters
  weights: Dict[str, str]  # where each model's parameters come from
  lengths: List[Tuple[int, int]]  # (source, target) lengths of the corpus's sentences
  source: str  # which corpus the lengths come from
  rng: Any

  def model_for(self, system: "System") -> models.BaseModel:
    return (self.ar_models if system.kind == "ar" else self.padir_models)[system.variant]

  def batch_for(self, batch_size: int, args: argparse.Namespace) -> Dict[str, np.ndarray]:
    return make_batch(select_sentences(self.lengths, batch_size, args.batching, args.seed),
                      self.special_tokens.num_pieces, args.seed)


def setup(args: argparse.Namespace) -> Setup:
  """Builds the models (random or checkpoint parameters) and reads the sentence lengths."""
  num_pieces = args.num_pieces or NUM_PIECES.get(args.model, DEFAULT_NUM_PIECES)
  max_target_length = args.max_target_length or MAX_TARGET_LENGTH.get(
      args.model, DEFAULT_MAX_TARGET_LENGTH)
  special_tokens = SpecialTokens.create(num_pieces, max_target_length)
  # AR decodes exactly T tokens: its EOS is an id it never emits ([MASK]: logit -1e10).
  ar_tokens = dataclasses.replace(special_tokens, eos_id=special_tokens.mask_id)
  base_config = network.get_config(args.model, dtype=args.dtype, attention=args.attention)
  ds_layers = _layers(args.deep_shallow, base_config)
  configs = {"standard": base_config}
  if ds_layers:
    configs["deep_shallow"] = dataclasses.replace(
        base_config, num_encoder_layers=ds_layers[0], num_decoder_layers=ds_layers[1])
  ar_models = {v: models.ARModel(network.Transformer(c), special_tokens=ar_tokens)
                for v, c in configs.items()}
  padir_models = {v: models.PadirModel(network.Transformer(c), special_tokens=special_tokens)
                  for v, c in configs.items()}
  lengths, source = corpus_lengths(args.data_dir, args.pieces_per_word,
                                   min(max_target_length, 128), args.seed)
  probe_batch = make_batch(select_sentences(lengths, 1, args.batching, args.seed), num_pieces,
                           args.seed)  # Parameter shapes do not depend on the batch.
  weights, params = {}, {}
  for kind, model_dict, checkpoint in (("ar", ar_models, args.ar_checkpoint_dir),
                                       ("padir", padir_models, args.padir_checkpoint_dir)):
    for variant, model in model_dict.items():
      if checkpoint and variant == "standard":
        params[kind, variant] = load_checkpoint_params(checkpoint)
        weights[f"{kind}_{variant}"] = f"checkpoint {checkpoint}"
      else:
        params[kind, variant] = random_params(model, probe_batch, args.seed)
        weights[f"{kind}_{variant}"] = f"random (numpy seed {args.seed})"
  return Setup(special_tokens, configs, ar_models, padir_models, params, weights, lengths,
               source, jax.random.PRNGKey(args.seed))


def choose_batch_sizes(args: argparse.Namespace, setup_: Setup, systems: Sequence["System"]
                       ) -> Tuple[List[int], Dict[str, Any]]:
  """The batch sizes to time: --batch_sizes plus the largest that fits (how it was found)."""
  batch_sizes = sorted(set(args.batch_sizes))
  largest: Dict[str, Any] = {"how": "none"}
  if args.max_batch == "auto":
    if jax.devices()[0].platform == "cpu":
      largest = {"value": args.cpu_max_batch,
                 "how": f"CPU: capped at {args.cpu_max_batch} (--cpu_max_batch; time budget)"}
    else:
      largest = probe_largest_batch(systems, setup_.model_for, setup_.params,
                                    lambda b: setup_.batch_for(b, args), setup_.rng,
                                    max(batch_sizes) * 2, args.max_batch_cap)
  elif int(args.max_batch) > 0:
    largest = {"value": int(args.max_batch), "how": "--max_batch"}
  if largest.get("value"):
    batch_sizes = sorted(set(batch_sizes + [largest["value"]]))
  return batch_sizes, largest


def time_systems(args: argparse.Namespace, setup_: Setup, systems: Sequence["System"],
                 batch_sizes: Sequence[int], workers: int, notes: List[str]
                 ) -> List[Dict[str, Any]]:
  """Every system at every batch size (an out-of-memory point becomes a note); each row's speed
  ratio to AR greedy at the same batch size."""
  results = []
  for batch_size in batch_sizes:
    batch = jax.device_put(setup_.batch_for(batch_size, args))
    calls = [(predict_fn(setup_.model_for(s), s),
              (setup_.params[s.kind, s.variant], batch, setup_.rng)) for s in systems]
    points = []  # (system, call args, (compiled, compile seconds)) of the compiled ones
    for system, (_, call_args), exe in zip(systems, calls, compile_all(calls, workers)):
      if isinstance(exe, Exception):
        if not _is_oom(exe):
          raise exe
        notes.append(f"{system.label} at batch {batch_size}: out of memory")
      else:
        points.append((system, call_args, exe))
    for (system, call_args, exe), timed in zip(points, _time_interleaved(
        [(exe[0], call_args) for _, call_args, exe in points], args)):
      if timed is None:
        notes.append(f"{system.label} at batch {batch_size}: out of memory")
        continue
      p50 = timed["latency_ms_p50"]
      results.append({
          "system": system.name, "variant": system.variant, "iterations": system.iterations,
          "length_beam": system.length_beam, "beam_size": system.beam_size,
          "batch_size": batch_size, "source_length": batch["encoder_input_tokens"].shape[1],
          "target_length": batch["decoder_target_tokens"].shape[1],
          **timed, "compile_s": round(exe[1], 2),
          "latency_ms_per_sentence_p50": p50 / batch_size,
          "sentences_per_s": batch_size / (p50 / 1e3),
      })
      logging.info("batch %4d %-28s %9.1f ms (p90 %9.1f, %2d repeats, compile %.1fs)",
                   batch_size, system.label, p50, timed["latency_ms_p90"], timed["repeats"],
                   exe[1])
  for r in results:
    same_batch = {x["system"] + str(x["iterations"]): x for x in results
                  if x["batch_size"] == r["batch_size"]}
    ref = same_batch.get("ar_greedyNone")
    r["speedup_vs_ar_greedy"] = ref["latency_ms_p50"] / r["latency_ms_p50"] if ref else None
    ref_v = same_batch.get(f"ar_greedy_{r['variant']}None")
    if ref_v:
      r["speedup_vs_ar_greedy_same_variant"] = ref_v["latency_ms_p50"] / r["latency_ms_p50"]
  return results


def _time_interleaved(programs: Sequence[Tuple[Callable, Tuple]], args: argparse.Namespace
                      ) -> List[Optional[Dict[str, Any]]]:
  """`timing.time_compiled_interleaved` of the programs; if one runs out of memory, each is
  timed alone instead (None for those that run out)."""
  try:
    return timing.time_compiled_interleaved(programs, args.repeats, args.min_repeats,
                                            args.max_seconds)
  except Exception as e:  # pylint: disable=broad-except
    if not _is_oom(e):
      raise
  timed = []
  for compiled, call_args in programs:
    try:
      timed.append(timing.time_compiled(compiled, call_args, args.repeats, args.min_repeats,
                                        args.max_seconds))
    except Exception as e:  # pylint: disable=broad-except
      if not _is_oom(e):
        raise
      timed.append(None)
  return timed


def length_sweep(args: argparse.Namespace, setup_: Setup, workers: int, notes: List[str]
                 ) -> List[Dict[str, Any]]:
  """Batch 1, source = target length from --sweep_lengths: AR greedy vs PaDIR@k."""
  systems = [System("ar_greedy", "ar", "standard"),
             System("padir", "padir", "standard", args.sweep_iterations, 1)]
  max_target_length = setup_.special_tokens.max_target_length
  lengths = [n for n in args.sweep_lengths if n <= max_target_length]
  if len(lengths) < len(args.sweep_lengths):
    notes.append(f"sweep lengths above max_target_length {max_target_length} skipped")
  points = [(n, s) for n in lengths for s in systems]
  batches = {n: jax.device_put(make_batch([(n, n)], setup_.special_tokens.num_pieces, args.seed))
             for n in lengths}
  calls = [(predict_fn(setup_.model_for(s), s),
            (setup_.params[s.kind, s.variant], batches[n], setup_.rng)) for n, s in points]
  sweep = []
  for (n, system), (_, call_args), exe in zip(points, calls, compile_all(calls, workers)):
    if isinstance(exe, Exception):
      raise exe
    timed = timing.time_compiled(exe[0], call_args, args.repeats, args.min_repeats,
                                 args.max_seconds)
    sweep.append({"system": system.name, "iterations": system.iterations,
                  "length_beam": system.length_beam, "batch_size": 1, "source_length": n,
                  "target_length": n, **timed, "compile_s": round(exe[1], 2)})
    logging.info("sweep length %4d %-20s %9.1f ms", n, system.label, timed["latency_ms_p50"])
  return sweep


def make_report(args: argparse.Namespace, setup_: Setup, batch_sizes: Sequence[int],
                largest: Mapping[str, Any], results: List[Dict[str, Any]],
                sweep: List[Dict[str, Any]], notes: List[str]) -> Dict[str, Any]:
  """results.json's content: how it was measured, on what, and the numbers."""
  sentence_lengths = {b: select_sentences(setup_.lengths, b, args.batching, args.seed)
                      for b in batch_sizes}
  configs = setup_.configs
  report = {
      "date": timing.now(),
      "command": " ".join(shlex.quote(a) for a in ["python", "-m", "benchmarks.decode_speed"]
                          + list(args.argv)),
      "machine": machine_info(),
      "model": {"preset": args.model, "dtype": args.dtype, "attention": args.attention,
                "vocab_size": setup_.special_tokens.vocab_size,
                "standard": _dims(configs["standard"]),
                "deep_shallow": (_dims(configs["deep_shallow"]) if "deep_shallow" in configs
                                 else None)},
      "weights": setup_.weights,
      "sentences": {
          "source": setup_.source, "batching": args.batching,
          "mean_source_length": float(np.mean([x for x, _ in setup_.lengths])),
          "mean_target_length": float(np.mean([t for _, t in setup_.lengths])),
          "per_batch_mean_target_length": {
              str(b): float(np.mean([t for _, t in v])) for b, v in sentence_lengths.items()}},
      "protocol": PROTOCOL,
      "padir_config": {k: v for k, v in {
          **dataclasses.asdict(setup_.padir_models["standard"].scheme),
          **dataclasses.asdict(decoding.PadirDecodeConfig())}.items()
                       if k not in ("num_decode_iterations", "length_beam", "early_exit",
                                    "num_canvas_sizes")},
      "batch_sizes": list(batch_sizes),
      "largest_batch": dict(largest),
      "results": results,
      "length_sweep": sweep,
      "notes": notes,
  }
  report["headline"] = decode_speed_report.headline(results, sweep, batch_sizes)
  return report


def run(args: argparse.Namespace, rates: Optional[Mapping[str, float]] = None) -> Dict[str, Any]:
  """Setup, the timed systems at every batch size, the length sweep; writes the report.

  `rates` ({'matmul_flop_s', 'memory_bytes_s'}, e.g. an accelerator's bfloat16 matmul rate
  measured once by benchmarks/device_check.py) replaces the roofline's own float32 measurement.
  """
  if args.compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", args.compilation_cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  wall_start = time.perf_counter()
  setup_ = setup(args)
  systems = make_systems(args.iterations, args.length_beams, args.ds_iterations,
                         "deep_shallow" in setup_.configs)
  workers = args.compile_workers or min(4, os.cpu_count() or 1)
  notes: List[str] = []
  batch_sizes, largest = choose_batch_sizes(args, setup_, systems)
  results = time_systems(args, setup_, systems, batch_sizes, workers, notes)
  rates = dict(rates) if rates else {"matmul_flop_s": timing.matmul_flop_rate(),
                                     "memory_bytes_s": timing.memory_bandwidth()}
  sweep = length_sweep(args, setup_, workers, notes)
  notes.append(f"total wall time {time.perf_counter() - wall_start:.0f} s (compilation "
               f"included, {workers} compile threads)")
  report = make_report(args, setup_, batch_sizes, largest, results, sweep, notes)
  row_rates = None
  if args.row_rate_repeats > 0:
    row_rates = roofline.measure_row_rates(setup_.configs["standard"],
                                           roofline.roofline_row_counts(results),
                                           args.row_rate_repeats)
  report["roofline"] = {**rates, "row_rates": row_rates,
                        "row_rate_repeats": args.row_rate_repeats, "rows": roofline.roofline(
      results, setup_.configs["standard"], rates["matmul_flop_s"], rates["memory_bytes_s"],
      2 if args.dtype == "bfloat16" else 4, row_rates)}
  os.makedirs(args.out_dir, exist_ok=True)
  with open(os.path.join(args.out_dir, "decode_speed.json"), "w") as f:
    json.dump(report, f, indent=1)
  decode_speed_report.write_markdown(os.path.join(args.out_dir, "decode_speed.md"), report)
  decode_speed_report.write_plot(os.path.join(args.out_dir, "decode_speed.png"), report)
  return report


def probe_largest_batch(systems, model_for, params, batch_for, rng, start: int,
                        cap: int) -> Dict[str, Any]:
  """Doubles the batch from `start` while the most memory-hungry systems (AR beam search, PaDIR
  with the widest length beam) compile and run; the last size that did."""
  widest = max(s.length_beam for s in systems)
  heavy = [s for s in systems if s.beam_size > 1 or (
      s.kind == "padir" and s.variant == "standard" and s.length_beam == widest
      and s.iterations == min(x.iterations for x in systems if x.kind == "padir"))]
  fits, size = None, start
  while size <= cap:
    try:
      batch = jax.device_put(batch_for(size))
      for s in heavy:
        fn = jax.jit(predict_fn(model_for(s), s))
        jax.block_until_ready(fn(params[s.kind, s.variant], batch, rng))
      fits = size
      size *= 2
    except Exception as e:  # pylint: disable=broad-except
      if not _is_oom(e):
        raise
      break
  if fits is None:
    return {"how": f"none above {start // 2} fits"}
  return {"value": fits, "how": f"probed: doubled from {start} while "
                                f"{', '.join(s.label for s in heavy)} fit (cap {cap})"}


def _dims(config: network.T5Config) -> str:
  return (f"{config.num_encoder_layers} encoder / {config.num_decoder_layers} decoder layers, "
          f"d_model {config.emb_dim}, {config.num_heads} heads x {config.head_dim}, "
          f"mlp {config.mlp_dim}")


def main(argv: Optional[Sequence[str]] = None):
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
  args = parse_args(argv)
  report = run(args)
  print(f"wrote {args.out_dir}/decode_speed.{{json,md,png}}")
  for h in report["headline"]:
    print(f"  {h['point']}: {h['measured']:.2f}x")


if __name__ == "__main__":
  main()
