"""The one-shot accelerator check: decoding speed, training throughput and correctness on one GPU,
in one unattended call that always returns a report.

What it measures (each part in its own process, in this order, within `--budget_s`; a part that
fails — out of memory, a crash, its time cap — is recorded with its error and the check goes on):
  rates                  the device's dense matmul rate (float32 at JAX's default precision and
                         bfloat16, [N, N] x [N, N] on random data) and memory read bandwidth
  correctness            a fixed random `test` network (float32) decodes the stored batch of
                         docs/benchmarks/gpu/cpu_reference.json: its AR greedy tokens and its
                         PaDIR@4 tokens (length beam 1 and 3) must equal those computed on the
                         CPU (`--write_reference`), at matmul precision 'highest' (the check)
                         and at JAX's default (TF32 on recent NVIDIA GPUs: reported only)
  decode:SIZE:DTYPE      `benchmarks/decode_speed.py`'s protocol and code at `tiny`, `small`,
                         `base`, float32 and bfloat16, random weights, Multi30k test_2016 lengths
                         (word counts stored in the reference file): AR greedy, AR beam 4,
                         PaDIR@1/2/4/8 with 1 and 3 length candidates, batch 1 and 64, and the
                         per-step / per-pass roofline against this run's measured rates
  decode:base:bfloat16:cudnn   the same with the attention as one fused cuDNN call
                         (`--attention_ab`; `padir.layers.fused_attention`), after base's parts
  train:SIZE:KIND        `padir train`'s own jitted step (`benchmarks/train_speed.py`'s
                         `time_train_step`: state donated, XLA's FLOP count) at `small` and
                         `base`, bfloat16 activations, Adafactor, on synthetic full rows: target
                         tokens/s and MFU (against the nominal bfloat16 peak of the device where
                         known, and against this run's measured bfloat16 matmul rate)
Writes OUT_DIR/device_check.json, device_check.md and device_check.png, and per part
OUT_DIR/parts/NAME.{json,log} (decode parts also OUT_DIR/decode_SIZE_DTYPE/decode_speed.*).
Imports neither seqio, TensorFlow nor tensorboardX.

On the GPU machine (Python 3.12, jax 0.11 with the CUDA plugin, flax, optax, orbax, numpy,
sentencepiece, sacrebleu, tqdm, tensorstore, msgpack, safetensors, matplotlib; no network). The
only pure-Python wheel it needs beyond those is gin-config (the models' modules import gin):

  # here, once (network), in the repository root:
  echo /.whl/ >> .git/info/exclude
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \\
      --implementation cp --platform manylinux2014_x86_64 -d .whl gin-config==0.5.0
  # there: the device tool's `run` with carry ['.whl'] and timeout_s 600, command
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \\
      .whl/*.whl && PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 bash benchmarks/device_check.sh $OUT

`benchmarks/device_check.sh DEST` runs `python -m benchmarks.device_check` with PYTHONPATH=. into
/tmp/device_check and copies device_check.{json,md,png}, its log and a .tgz of every part's
files into DEST (the device tool brings back at most 8 files). Expected wall time on one H100:
about 7.5 minutes at most — the parts' budget (`--budget_s 420`, compilation included) plus the
wheel's install and Python's start (an estimate: no GPU has run it yet); parts that do not fit
are recorded as skipped, the least important (`tiny`) last. Then commit DEST's report under
docs/benchmarks/gpu/ and summarise it in BENCHMARKS.md.

CPU dry run (tests/test_device_check.py: the same code at the `test` size, 1-minute budget):
  python -m benchmarks.device_check --dry_run --out_dir runs/device_check_dry
The reference (CPU only, float32; rewrite it only when the `test` network or decoding changes):
  JAX_PLATFORMS=cpu python -m benchmarks.device_check --write_reference \\
      docs/benchmarks/gpu/cpu_reference.json
"""
import argparse
import gzip
import json
import logging
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any, Dict, List, Mapping, Optional, Sequence

if __package__ in (None, ""):  # `python benchmarks/device_check.py`: make `padir` importable.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # pylint: disable=g-import-not-at-top

from benchmarks import device_check_report  # pylint: disable=g-import-not-at-top
from padir import files  # pylint: disable=g-import-not-at-top

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_REFERENCE = os.path.join(REPO, "docs", "benchmarks", "gpu", "cpu_reference.json")
MULTI30K = os.path.join(os.path.dirname(REPO), "shared", "data", "multi30k")
# (source, target) lengths in pieces, EOS included, of the correctness batch.
REFERENCE_SENTENCES = ((12, 10), (9, 13), (15, 15), (6, 7))
REFERENCE_SEED = 0
# Dense bfloat16 peak (no sparsity) by device kind, FLOP/s: the denominator of MFU.
NOMINAL_BF16_PEAK = (("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12),
                     ("A100", 312e12), ("L4", 121e12))


# ------------------------------------------------------------------------------------------------
# Options.


def _ints(text: str) -> List[int]:
  return [int(x) for x in text.split(",") if x.strip()]


def _names(text: str) -> List[str]:
  return [x.strip() for x in text.split(",") if x.strip()]


DRY_RUN = {  # --dry_run: the `test` size, a few points, a 1-minute budget (CPU, the test suite).
    "decode_sizes": ["test"], "train_sizes": ["test"], "dtypes": ["bfloat16"],
    "batch_sizes": [1, 2], "iterations": [1, 2], "length_beams": [1], "train_batch": 4,
    "train_length": 16, "train_steps": 2, "budget_s": 60.0, "matmul_size": 256,
    "bandwidth_mb": 16, "repeats": 2, "min_repeats": 1, "max_seconds": 0.5, "attention_ab": "",
}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m benchmarks.device_check",
                              description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  p.add_argument("--out_dir", default="runs/device_check")
  p.add_argument("--budget_s", type=float, default=420.0,
                 help="wall seconds for all parts; a part not started in time is skipped")
  p.add_argument("--part_timeout_s", type=float, default=150.0, help="most seconds of one part")
  p.add_argument("--min_part_s", type=float, default=15.0,
                 help="a part starts only with this many seconds of the budget left")
  p.add_argument("--decode_sizes", type=_names, default=["base", "small", "tiny"],
                 help="network presets of the decoding parts, most important first")
  p.add_argument("--train_sizes", type=_names, default=["base", "small"])
  p.add_argument("--dtypes", type=_names, default=["bfloat16", "float32"],
                 help="activation dtypes of the decoding parts")
  p.add_argument("--train_dtype", default="bfloat16")
  p.add_argument("--attention_ab", default="cudnn",
                 help="also decode the first size in bfloat16 with this attention "
                      "(T5Config.attention: xla, cudnn); empty: not")
  p.add_argument("--batch_sizes", type=_ints, default=[1, 64])
  p.add_argument("--iterations", type=_ints, default=[1, 2, 4, 8])
  p.add_argument("--length_beams", type=_ints, default=[1, 3])
  p.add_argument("--train_batch", type=int, default=192, help="rows of a training batch")
  p.add_argument("--train_length", type=int, default=128,
                 help="source = target length of every (full) training row")
  p.add_argument("--train_steps", type=int, default=10, help="timed training steps")
  p.add_argument("--matmul_size", type=int, default=0, help="N of the rate (0: 8192, CPU 1024)")
  p.add_argument("--bandwidth_mb", type=int, default=0, help="0: 1024 (CPU 256)")
  p.add_argument("--repeats", type=int, default=10)
  p.add_argument("--min_repeats", type=int, default=3)
  p.add_argument("--max_seconds", type=float, default=1.0)
  p.add_argument("--compile_workers", type=int, default=0, help="0: min(8, CPU cores)")
  p.add_argument("--reference", default=DEFAULT_REFERENCE)
  p.add_argument("--compilation_cache_dir", default=None)
  p.add_argument("--isolate", choices=("process", "none"), default="process",
                 help="process: every part in its own Python process (a crash or a hang costs "
                      "that part only); none: all in this one (debugging)")
  p.add_argument("--dry_run", action="store_true", help=f"CPU smoke test: {DRY_RUN}")
  p.add_argument("--part", default=None, help=argparse.SUPPRESS)  # Internal: run one part.
  p.add_argument("--write_reference", default=None, metavar="PATH",
                 help="compute the CPU reference (float32) into PATH and exit")
  args = p.parse_args(argv)
  args.argv = list(sys.argv[1:] if argv is None else argv)
  if args.dry_run:
    given = {a.split("=")[0].lstrip("-") for a in args.argv if a.startswith("--")}
    for key, value in DRY_RUN.items():
      if key not in given:
        setattr(args, key, value)
  return args


def plan(args: argparse.Namespace) -> List[str]:
  """The parts in the order they run: what the headline numbers need first."""
  parts = ["rates", "correctness"]
  sizes = args.decode_sizes + [s for s in args.train_sizes if s not in args.decode_sizes]
  for i, size in enumerate(sizes):
    if size in args.decode_sizes:
      parts += [f"decode:{size}:{dtype}" for dtype in args.dtypes]
    if size in args.train_sizes:
      parts += [f"train:{size}:{kind}" for kind in ("ar", "padir")]
    if i == 0 and args.attention_ab and size in args.decode_sizes:
      dtype = "bfloat16" if "bfloat16" in args.dtypes else args.dtypes[0]
      parts.append(f"decode:{size}:{dtype}:{args.attention_ab}")
  return parts


def _slug(name: str) -> str:
  return name.replace(":", "_")


# ------------------------------------------------------------------------------------------------
# Parts (each runs in its own process unless --isolate none).


def matmul_rate(size: int, dtype: str, repeats: int = 10) -> float:
  """Dense [size, size] x [size, size] FLOP/s of this device in `dtype` (random data), from the
  fastest call (JAX's default matmul precision)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from padir import timing  # pylint: disable=g-import-not-at-top
  x = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32).astype(dtype)
  f = jax.jit(lambda a: a @ a)
  return 2 * size ** 3 / min(timing.wall_seconds(lambda: f(x), repeats))


def _on_cpu() -> bool:
  import jax  # pylint: disable=g-import-not-at-top
  return jax.devices()[0].platform == "cpu"


def part_rates(args: argparse.Namespace) -> Dict[str, Any]:
  import jax  # pylint: disable=g-import-not-at-top
  from padir import timing  # pylint: disable=g-import-not-at-top
  cpu = _on_cpu()
  size = args.matmul_size or (1024 if cpu else 8192)
  megabytes = args.bandwidth_mb or (256 if cpu else 1024)
  machine = timing.machine()
  peak = nominal_peak(machine["device_kind"])
  return {"machine": machine, "matmul_size": size,
          "default_matmul_precision": str(jax.config.jax_default_matmul_precision),
          "matmul_flop_s": {dtype: matmul_rate(size, dtype) for dtype in ("float32", "bfloat16")},
          "memory_bytes_s": timing.memory_bandwidth(megabytes), "bandwidth_mb": megabytes,
          "nominal_bf16_peak_flop_s": peak}


def nominal_peak(device_kind: str) -> Optional[float]:
  for name, peak in NOMINAL_BF16_PEAK:
    if name.lower() in device_kind.lower():
      return peak
  return None


def _reference_setup():
  """The fixed random `test` networks (AR and PaDIR, float32, decode_speed's numpy-seeded
  weights) and the correctness batch."""
  from benchmarks import decode_speed  # pylint: disable=g-import-not-at-top
  dargs = decode_speed.parse_args(["--model", "test", "--dtype", "float32", "--deep_shallow",
                                   "none", "--data_dir", "", "--seed", str(REFERENCE_SEED)])
  setup = decode_speed.setup(dargs)
  batch = decode_speed.make_batch(REFERENCE_SENTENCES, setup.special_tokens.num_pieces,
                                  REFERENCE_SEED)
  return setup, batch


REFERENCE_SYSTEMS = (("ar_greedy", None, 1), ("padir", 4, 1), ("padir", 4, 3))


def _system_key(name: str, iterations: Optional[int], length_beam: int) -> str:
  return name if iterations is None else f"{name}@{iterations}_lb{length_beam}"


def reference_tokens(setup, batch: Mapping[str, np.ndarray]) -> Dict[str, List[List[int]]]:
  """Each reference system's tokens [B, T] on the stored batch, on this device."""
  import jax  # pylint: disable=g-import-not-at-top
  from benchmarks import decode_speed  # pylint: disable=g-import-not-at-top
  out = {}
  for name, iterations, length_beam in REFERENCE_SYSTEMS:
    system = decode_speed.System(name, "ar" if iterations is None else "padir", "standard",
                                 iterations, length_beam)
    fn = jax.jit(decode_speed.predict_fn(setup.model_for(system), system))
    tokens = fn(setup.params[system.kind, "standard"], jax.device_put(dict(batch)), setup.rng)
    out[_system_key(name, iterations, length_beam)] = np.asarray(tokens).tolist()
  return out


def params_checksum(params) -> float:
  import jax  # pylint: disable=g-import-not-at-top
  return float(sum(np.sum(np.abs(np.asarray(x, np.float64)))
                   for x in jax.tree_util.tree_leaves(params)))


def ar_greedy_margins(setup, batch: Mapping[str, np.ndarray], tokens) -> List[float]:
  """Per row, the smallest gap between the best and the second-best logit over the greedy steps
  (teacher-forced on the greedy tokens): how far each choice is from a tie."""
  from padir import models  # pylint: disable=g-import-not-at-top
  model = setup.ar_models["standard"]
  tokens = np.asarray(tokens, np.int32)
  forced = dict(batch, decoder_input_tokens=np.asarray(
      models.shift_right(tokens, setup.special_tokens.bos_id)))
  # pylint: disable=protected-access
  logits = np.asarray(model._output_logits(
      model._logits(setup.params["ar", "standard"], forced, None)), np.float64)
  # pylint: enable=protected-access
  top2 = np.sort(logits, axis=-1)[..., -2:]
  return np.min(top2[..., 1] - top2[..., 0], axis=-1).tolist()


def write_reference(path: str) -> Dict[str, Any]:
  """The CPU reference: the batch, the weights' checksums, each system's tokens (float32), the
  AR greedy margins, and Multi30k test_2016_flickr's word counts for the decoding parts."""
  import jax  # pylint: disable=g-import-not-at-top
  from padir import timing  # pylint: disable=g-import-not-at-top
  if not _on_cpu():
    raise SystemExit("--write_reference runs on the CPU (JAX_PLATFORMS=cpu)")
  setup, batch = _reference_setup()
  with jax.default_matmul_precision("highest"):
    tokens = reference_tokens(setup, batch)
    margins = ar_greedy_margins(setup, batch, tokens["ar_greedy"])
  words = []
  for side in ("en", "de"):
    with gzip.open(os.path.join(MULTI30K, f"test_2016_flickr.{side}.gz"), "rt",
                   encoding="utf-8") as f:
      words.append([len(line.split()) for line in f])
  reference = {
      "what": "benchmarks/device_check.py's correctness reference: the `test` network, random "
              f"weights (numpy seed {REFERENCE_SEED}, decode_speed.random_params), float32, "
              "computed on the CPU",
      "date": timing.now(), "jax": jax.__version__,
      "command": f"JAX_PLATFORMS=cpu python -m benchmarks.device_check --write_reference {path}",
      "sentences": [list(s) for s in REFERENCE_SENTENCES],
      "batch": {k: np.asarray(v).tolist() for k, v in batch.items()},
      "params_checksum": {kind: params_checksum(setup.params[kind, "standard"])
                          for kind in ("ar", "padir")},
      "tokens": tokens, "ar_greedy_min_margin": margins,
      "multi30k_test_2016_flickr_words": [list(x) for x in zip(*words)],
  }
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(reference, f, separators=(",", ":"))
    f.write("\n")
  return reference


def _first_difference(a: List[List[int]], b: List[List[int]]) -> Optional[Dict[str, Any]]:
  a, b = np.asarray(a), np.asarray(b)
  if a.shape != b.shape:
    return {"shape": [list(a.shape), list(b.shape)]}
  rows, cols = np.nonzero(a != b)
  if not len(rows):
    return None
  return {"row": int(rows[0]), "position": int(cols[0]), "expected": int(b[rows[0], cols[0]]),
          "got": int(a[rows[0], cols[0]]), "differing_tokens": int(len(rows))}


def part_correctness(args: argparse.Namespace) -> Dict[str, Any]:
  import jax  # pylint: disable=g-import-not-at-top
  with open(args.reference) as f:
    reference = json.load(f)
  setup, batch = _reference_setup()
  stored = {k: np.asarray(v, np.int32) for k, v in reference["batch"].items()}
  same_batch = all(np.array_equal(stored[k], batch[k]) for k in stored)
  checksums = {kind: params_checksum(setup.params[kind, "standard"]) for kind in ("ar", "padir")}
  same_weights = all(math.isclose(checksums[k], reference["params_checksum"][k], rel_tol=1e-6)
                     for k in checksums)
  result: Dict[str, Any] = {"reference": os.path.relpath(args.reference, REPO),
                            "same_batch": same_batch, "same_weights": same_weights,
                            "params_checksum": checksums}
  # On the CPU every precision is float32's: the default's pass would compile the same again.
  for precision in ("highest",) if _on_cpu() else ("highest", "default"):
    with jax.default_matmul_precision(None if precision == "default" else precision):
      tokens = reference_tokens(setup, stored)
    result[precision] = {
        name: {"match": tokens[name] == expected,
               "first_difference": _first_difference(tokens[name], expected)}
        for name, expected in reference["tokens"].items()}
  if "default" not in result:
    result["default"] = result["highest"]
  result["match"] = all(r["match"] for r in result["highest"].values())
  return result


def _lengths_dir(reference_path: str) -> Optional[str]:
  """A data dir holding Multi30k test_2016_flickr's word counts as placeholder words (what
  decode_speed.corpus_lengths reads), from the reference file; None if it has none."""
  try:
    with open(reference_path) as f:
      words = json.load(f)["multi30k_test_2016_flickr_words"]
  except (OSError, KeyError, ValueError):
    return None
  path = tempfile.mkdtemp(prefix="multi30k_lengths_")
  for i, side in enumerate(("en", "de")):
    with gzip.open(os.path.join(path, f"test_2016_flickr.{side}.gz"), "wt",
                   encoding="utf-8") as f:
      f.writelines(" ".join(["w"] * pair[i]) + "\n" for pair in words)
  return path


def _load_part(out_dir: str, name: str) -> Optional[Dict[str, Any]]:
  try:
    with open(os.path.join(out_dir, "parts", f"{_slug(name)}.json")) as f:
      record = json.load(f)
  except (OSError, ValueError):
    return None
  return record.get("result") if record.get("status") == "ok" else None


def part_decode(args: argparse.Namespace, size: str, dtype: str,
                attention: str = "einsum") -> Dict[str, Any]:
  from benchmarks import decode_speed  # pylint: disable=g-import-not-at-top
  data_dir = MULTI30K if os.path.exists(MULTI30K) else _lengths_dir(args.reference)
  out_dir = os.path.join(args.out_dir, f"decode_{size}_{dtype}"
                         + ("" if attention == "einsum" else f"_{attention}"))
  workers = args.compile_workers or min(8, os.cpu_count() or 1)
  dargs = decode_speed.parse_args([
      "--model", size, "--dtype", dtype, "--attention", attention, "--out_dir", out_dir,
      "--batch_sizes", ",".join(map(str, args.batch_sizes)), "--max_batch", "0",
      "--iterations", ",".join(map(str, args.iterations)),
      "--length_beams", ",".join(map(str, args.length_beams)), "--deep_shallow", "none",
      "--sweep_lengths", "", "--repeats", str(args.repeats),
      "--min_repeats", str(args.min_repeats), "--max_seconds", str(args.max_seconds),
      "--compile_workers", str(workers), "--row_rate_repeats", str(args.repeats),
      "--data_dir", data_dir or ""]
      + (["--compilation_cache_dir", args.compilation_cache_dir]
         if args.compilation_cache_dir else []))
  rates = _load_part(args.out_dir, "rates")
  measured = None
  if rates:
    measured = {"matmul_flop_s": rates["matmul_flop_s"][dtype],
                "memory_bytes_s": rates["memory_bytes_s"], "matmul_dtype": dtype}
  report = decode_speed.run(dargs, measured)
  return {"size": size, "dtype": dtype, "attention": attention,
          "out_dir": os.path.relpath(out_dir, args.out_dir),
          "command": report["command"], "model": report["model"],
          "sentences": report["sentences"]["source"], "results": report["results"],
          "headline": report["headline"], "roofline": report["roofline"],
          "notes": report["notes"]}


def train_batches(kind: str, special_tokens, rows: int, length: int, count: int,
                  seed: int = 0) -> List[Dict[str, np.ndarray]]:
  """`count` synthetic batches of full rows (every token real, EOS last): AR batches are shifted
  right; PaDIR's decoder inputs have half their tokens (EOS never) marked [MASK] (the model
  fills them with its initial decoder input), loss on the marked tokens and EOS."""
  from padir import models  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(seed)
  out = []
  for _ in range(count):
    src = rng.randint(4, special_tokens.num_pieces, size=(rows, length)).astype(np.int32)
    tgt = rng.randint(4, special_tokens.num_pieces, size=(rows, length)).astype(np.int32)
    src[:, -1] = tgt[:, -1] = special_tokens.eos_id
    batch = {"encoder_input_tokens": src, "decoder_target_tokens": tgt}
    if kind == "ar":
      batch["decoder_input_tokens"] = np.asarray(
          models.shift_right(tgt, special_tokens.bos_id), np.int32)
    else:
      noised = rng.rand(rows, length) < 0.5
      noised[:, -1] = False
      batch["decoder_input_tokens"] = np.where(noised, special_tokens.mask_id, tgt).astype(np.int32)
      weights = noised.copy()
      weights[:, -1] = True
      batch["decoder_loss_weights"] = weights.astype(np.float32)
    out.append(batch)
  return out


def train_model(kind: str, size: str, dtype: str):
  """The models/{ar,padir}_{size}.gin model without gin: T5.1.1 at `size`, `dtype`
  activations, dropout 0.1, label smoothing 0.1, z-loss 1e-4, Adafactor with T5's
  inverse-square-root schedule; PaDIR with its length classifier."""
  from benchmarks import decode_speed  # pylint: disable=g-import-not-at-top
  from padir import models  # pylint: disable=g-import-not-at-top
  from padir import network  # pylint: disable=g-import-not-at-top
  from padir import optimizers  # pylint: disable=g-import-not-at-top
  from padir.special_tokens import SpecialTokens  # pylint: disable=g-import-not-at-top
  special = SpecialTokens.create(
      decode_speed.NUM_PIECES.get(size, decode_speed.DEFAULT_NUM_PIECES),
      decode_speed.MAX_TARGET_LENGTH.get(size, decode_speed.DEFAULT_MAX_TARGET_LENGTH))
  optimizer = optimizers.adafactor(
      learning_rate=optimizers.rsqrt_schedule(scale=1.0, warmup_steps=10_000))
  module = network.Transformer(network.get_config(size, dtype=dtype, dropout_rate=0.1))
  common = dict(optimizer_def=optimizer, special_tokens=special, label_smoothing=0.1,
                z_loss=1e-4)
  if kind == "ar":
    return models.ARModel(module, **common)
  return models.PadirModel(module, length_predictor="classifier", **common)


def part_train(args: argparse.Namespace, size: str, kind: str) -> Dict[str, Any]:
  from benchmarks import train_speed  # pylint: disable=g-import-not-at-top
  if args.compilation_cache_dir:
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.update("jax_compilation_cache_dir", args.compilation_cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  model = train_model(kind, size, args.train_dtype)
  length = min(args.train_length, model.special_tokens.max_target_length)
  batches = train_batches(kind, model.special_tokens, args.train_batch, length,
                          args.train_steps + 1)
  timed = train_speed.time_train_step(model, args.train_batch, batches[0], batches[1:])
  tokens_per_step = args.train_batch * length
  rates = _load_part(args.out_dir, "rates") or {}
  measured = (rates.get("matmul_flop_s") or {}).get("bfloat16")
  peak = rates.get("nominal_bf16_peak_flop_s")
  return {"size": size, "kind": kind, "dtype": args.train_dtype, "batch_size": args.train_batch,
          "length": length, "target_tokens_per_step": tokens_per_step, **timed,
          "tokens_per_s": tokens_per_step * len(batches[1:]) / timed["seconds"],
          "mfu_nominal": timed["achieved_flop_s"] / peak if peak else None,
          "share_of_measured_bf16_rate": timed["achieved_flop_s"] / measured if measured else None}


def run_part(name: str, args: argparse.Namespace) -> Dict[str, Any]:
  kind, *rest = name.split(":")
  if kind == "rates":
    return part_rates(args)
  if kind == "correctness":
    return part_correctness(args)
  if kind == "decode":
    return part_decode(args, *rest)
  if kind == "train":
    return part_train(args, *rest)
  raise ValueError(f"unknown part {name!r}")


def _is_oom(text: str) -> bool:
  return bool(re.search(r"RESOURCE_EXHAUSTED|[Oo]ut of memory", text))


def run_in_process(name: str, args: argparse.Namespace) -> Dict[str, Any]:
  """One part here; its record (status ok / failed, seconds, result or error)."""
  start = time.perf_counter()
  try:
    result = run_part(name, args)
    return {"name": name, "status": "ok", "seconds": time.perf_counter() - start,
            "result": result}
  except Exception as e:  # pylint: disable=broad-except
    text = traceback.format_exc()
    return {"name": name, "status": "out_of_memory" if _is_oom(text) else "failed",
            "seconds": time.perf_counter() - start,
            "error": f"{type(e).__name__}: {str(e)[:2000]}", "log_tail": text[-3000:]}


def run_isolated(name: str, args: argparse.Namespace, timeout: float) -> Dict[str, Any]:
  """One part in a child process (`--part NAME`), killed after `timeout` seconds."""
  parts_dir = os.path.join(args.out_dir, "parts")
  log_path = os.path.join(parts_dir, f"{_slug(name)}.log")
  json_path = os.path.join(parts_dir, f"{_slug(name)}.json")
  command = [sys.executable, "-m", "benchmarks.device_check", *args.argv, "--part", name]
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
  if os.path.exists(json_path):
    os.remove(json_path)
  start = time.perf_counter()
  with open(log_path, "w") as log:
    try:
      proc = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            timeout=timeout, check=False)
      status = f"exit status {proc.returncode}"
    except subprocess.TimeoutExpired:
      status = f"timed out after {timeout:.0f} s"
  seconds = time.perf_counter() - start
  try:  # The child's own record (ok, or the exception it caught).
    with open(json_path) as f:
      record = json.load(f)
    record["seconds"] = seconds
    return record
  except (OSError, ValueError):  # Killed, crashed (e.g. aborted by XLA) or timed out.
    pass
  with open(log_path, errors="replace") as f:
    tail = f.read()[-3000:]
  return {"name": name, "status": ("timeout" if status.startswith("timed out") else
                                   "out_of_memory" if _is_oom(tail) else "failed"),
          "seconds": seconds, "error": status, "log_tail": tail}


def run(args: argparse.Namespace) -> Dict[str, Any]:
  """Every part of the plan within the budget; writes and returns the report."""
  from padir import timing  # pylint: disable=g-import-not-at-top  (jax, no device use)
  os.makedirs(os.path.join(args.out_dir, "parts"), exist_ok=True)
  start = time.perf_counter()
  records = []
  parts = plan(args)
  for name in parts:
    left = args.budget_s - (time.perf_counter() - start)
    if left < args.min_part_s:
      records.append({"name": name, "status": "skipped", "seconds": 0.0,
                      "error": f"budget: {max(left, 0):.0f} s left of {args.budget_s:.0f} s"})
      print(f"device_check: {name}: skipped (budget)", flush=True)
      continue
    if args.isolate == "process":
      record = run_isolated(name, args, min(left, args.part_timeout_s))
    else:
      record = run_in_process(name, args)
      files.write_json(os.path.join(args.out_dir, "parts", f"{_slug(name)}.json"), record)
    records.append(record)
    print(f"device_check: {name}: {record['status']} in {record['seconds']:.0f} s"
          + (f" ({record.get('error', '')[:200]})" if record["status"] != "ok" else ""),
          flush=True)
  rates = next((r["result"] for r in records if r["name"] == "rates" and r["status"] == "ok"),
               None)
  report = {
      "date": timing.now(),
      "command": " ".join(shlex.quote(a) for a in ["python", "-m", "benchmarks.device_check"]
                          + list(args.argv)),
      "machine": rates["machine"] if rates else None,
      "rates": rates and {k: v for k, v in rates.items() if k != "machine"},
      "budget_s": args.budget_s, "wall_s": time.perf_counter() - start,
      "options": {k: v for k, v in vars(args).items() if k not in ("argv", "part")},
      "parts": records,
  }
  report["headline"] = device_check_report.headline(records, args)
  files.write_json(os.path.join(args.out_dir, "device_check.json"), report)
  device_check_report.write_markdown(os.path.join(args.out_dir, "device_check.md"), report)
  try:
    device_check_report.write_plot(os.path.join(args.out_dir, "device_check.png"), report)
  except Exception:  # pylint: disable=broad-except  (the report stands without its plot)
    logging.exception("no device_check.png")
  return report


def main(argv: Optional[Sequence[str]] = None) -> int:
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
  args = parse_args(argv)
  if args.write_reference:
    reference = write_reference(args.write_reference)
    print(f"wrote {args.write_reference}: {json.dumps(reference['tokens'])[:300]}")
    return 0
  if args.part:  # A child: one part, its record as JSON (the parent reads it).
    record = run_in_process(args.part, args)
    os.makedirs(os.path.join(args.out_dir, "parts"), exist_ok=True)
    files.write_json(os.path.join(args.out_dir, "parts", f"{_slug(args.part)}.json"), record)
    if record["status"] != "ok":
      print(record.get("log_tail", ""), file=sys.stderr)
    return 0 if record["status"] == "ok" else 1
  report = run(args)
  print(f"wrote {args.out_dir}/device_check.{{json,md,png}}")
  for h in report["headline"]:
    print(f"  {h['point']}: {device_check_report.fmt(h['measured'], h['unit'])}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
