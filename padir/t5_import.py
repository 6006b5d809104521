"""Pretrained T5 checkpoints (T5X or Hugging Face) as this project's parameters: `padir convert`.

Reads
  - a T5X checkpoint directory (`checkpoint_<step>/`: the `checkpoint` msgpack file with the
    parameters under `target/`, large arrays in tensorstore zarr folders beside it), and
  - a Hugging Face T5 / T5.1.1 / mT5 checkpoint (a `save_pretrained` folder: `config.json` +
    `model.safetensors`, a sharded `model.safetensors.index.json`, or `pytorch_model.bin` when
    torch is installed),
and returns the network's parameters under this project's names (which are T5X's) plus the
`network.get_config` fields that rebuild the same network. Nothing downloads.

The mapping, one row per parameter (i: layer; HF's torch `Linear` weights are `[out, in]`, so
every HF kernel is transposed; T5X's arrays are taken as they are):

  this project (= T5X, under `target/`)           Hugging Face                                 HF op
  token_embedder/embedding [V, d]                 shared.weight                                -
  encoder/relpos_bias/rel_embedding [H, B]        encoder.block.0.layer.0.SelfAttention.
                                                    relative_attention_bias.weight [B, H]      T
  encoder/layers_i/attention/{query,key,value}/   encoder.block.i.layer.0.SelfAttention.
    kernel [d, H*kv]                                {q,k,v}.weight                             T
  encoder/layers_i/attention/out/kernel [H*kv, d] encoder.block.i.layer.0.SelfAttention.o.weight T
  encoder/layers_i/pre_attention_layer_norm/scale encoder.block.i.layer.0.layer_norm.weight     -
  encoder/layers_i/mlp/{wi | wi_0,wi_1}/kernel    encoder.block.i.layer.1.DenseReluDense.
    [d, F]                                          {wi | wi_0,wi_1}.weight                    T
  encoder/layers_i/mlp/wo/kernel [F, d]           encoder.block.i.layer.1.DenseReluDense.wo.weight T
  encoder/layers_i/pre_mlp_layer_norm/scale       encoder.block.i.layer.1.layer_norm.weight     -
  encoder/encoder_norm/scale                      encoder.final_layer_norm.weight              -
  decoder/relpos_bias/rel_embedding               decoder.block.0.layer.0.SelfAttention.
                                                    relative_attention_bias.weight             T
  decoder/layers_i/self_attention/*               decoder.block.i.layer.0.SelfAttention.*      T
  decoder/layers_i/pre_self_attention_layer_norm  decoder.block.i.layer.0.layer_norm           -
  decoder/layers_i/encoder_decoder_attention/*    decoder.block.i.layer.1.EncDecAttention.*    T
  decoder/layers_i/pre_cross_attention_layer_norm decoder.block.i.layer.1.layer_norm           -
  decoder/layers_i/mlp/*                          decoder.block.i.layer.2.DenseReluDense.*     T
  decoder/layers_i/pre_mlp_layer_norm/scale       decoder.block.i.layer.2.layer_norm.weight     -
  decoder/decoder_norm/scale                      decoder.final_layer_norm.weight              -
  decoder/logits_dense/kernel [d, V] (unscaled)   lm_head.weight [V, d] (transformers 5 saves  T
                                                    none: then shared.weight)

HF's `encoder.embed_tokens.weight` / `decoder.embed_tokens.weight` (and `lm_head.weight` of a
T5 v1.0, whose logits are the shared embedding's scaled by 1/sqrt(d_model)) are copies of
`shared.weight`: accepted when equal. Both formats give the same
network: pre-norm RMSNorm layers, one relative position bias per stack (in block 0), no biases,
tied logits scaled by 1/sqrt(d_model). umT5's per-layer relative biases are not this network.

  padir convert --source PATH --output DIR   # DIR/checkpoints/0/params, DIR/network.gin
"""
import dataclasses
import datetime
import glob
import json
import os
import re
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from padir import checkpoints

FORMATS = ("t5x", "huggingface")
CONVERSION_FILE = "conversion.json"
NETWORK_GIN = "network.gin"
LAYER_NORM_EPSILON = 1e-6  # padir.layers.RMSNorm's
# Hugging Face `feed_forward_proj` -> T5X `mlp_activations` (HF's gated GELU is the tanh
# approximation, as jax.nn.gelu's default; its plain "gelu" is the exact one, not supported).
HF_MLP_ACTIVATIONS = {"relu": ("relu",), "gated-gelu": ("gelu", "linear"),
                      "gated-relu": ("relu", "linear")}
HF_MODEL_TYPES = ("t5", "mt5")
_HF_ATTENTION = {"query": "q", "key": "k", "value": "v", "out": "o"}


class CheckpointImportError(ValueError):
  """A checkpoint that is not a T5 this network can hold; the message says what is wrong."""


@dataclasses.dataclass(frozen=True)
class ImportedCheckpoint:
  """A pretrained T5, in this project's terms.

  Attributes:
    params: flat parameter name ('encoder/layers_0/attention/query/kernel') -> float32 array.
    network: `network.get_config` fields of the same network (dims, depth, MLP, buckets, tying).
    vocab_size: rows of the checkpoint's embedding; the model's vocabulary must have as many.
    source: the path read.
    format: 't5x' or 'huggingface'.
    step: the T5X checkpoint's step (0 for Hugging Face).
  """
  params: Dict[str, np.ndarray]
  network: Dict[str, Any]
  vocab_size: int
  source: str
  format: str
  step: int = 0

  def nested_params(self) -> Dict[str, Any]:
    """`params` as the nested tree a Flax module takes."""
    tree: Dict[str, Any] = {}
    for name, value in self.params.items():
      node = tree
      *parents, leaf = name.split("/")
      for part in parents:
        node = node.setdefault(part, {})
      node[leaf] = value
    return tree


# ----------------------------------------------------------------------------------------------
# The name table.


def _mlp_matrices(mlp_activations: Sequence[str]) -> List[str]:
  if len(mlp_activations) == 1:
    return ["wi", "wo"]
  return [f"wi_{i}" for i in range(len(mlp_activations))] + ["wo"]


def hf_name_table(network: Mapping[str, Any]) -> List[Tuple[str, str, bool]]:
  """(our name, Hugging Face name, transpose) for every parameter of `network`'s T5."""
  rows = [("token_embedder/embedding", "shared.weight", False)]
  mlp = _mlp_matrices(network["mlp_activations"])
  stacks = (("encoder", network["num_encoder_layers"],
             (("attention", 0, "SelfAttention", "pre_attention_layer_norm"),), 1),
            ("decoder", network["num_decoder_layers"],
             (("self_attention", 0, "SelfAttention", "pre_self_attention_layer_norm"),
              ("encoder_decoder_attention", 1, "EncDecAttention",
               "pre_cross_attention_layer_norm")), 2))
  for stack, depth, attentions, mlp_sublayer in stacks:
    rows.append((f"{stack}/relpos_bias/rel_embedding",
                 f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight", True))
    for i in range(depth):
      ours, hf = f"{stack}/layers_{i}", f"{stack}.block.{i}.layer"
      for name, sublayer, hf_name, norm in attentions:
        rows += [(f"{ours}/{name}/{p}/kernel", f"{hf}.{sublayer}.{hf_name}.{q}.weight", True)
                 for p, q in _HF_ATTENTION.items()]
        rows.append((f"{ours}/{norm}/scale", f"{hf}.{sublayer}.layer_norm.weight", False))
      rows += [(f"{ours}/mlp/{m}/kernel", f"{hf}.{mlp_sublayer}.DenseReluDense.{m}.weight", True)
               for m in mlp]
      rows.append((f"{ours}/pre_mlp_layer_norm/scale", f"{hf}.{mlp_sublayer}.layer_norm.weight",
                   False))
    norm = "encoder_norm" if stack == "encoder" else "decoder_norm"
    rows.append((f"{stack}/{norm}/scale", f"{stack}.final_layer_norm.weight", False))
  if not network["logits_via_embedding"]:
    rows.append(("decoder/logits_dense/kernel", "lm_head.weight", True))
  return rows


def expected_shapes(network: Mapping[str, Any], vocab_size: int) -> Dict[str, Tuple[int, ...]]:
  """Our parameter name -> shape, for a network of `network`'s fields (no PaDIR heads)."""
  d, joined = network["emb_dim"], network["num_heads"] * network["head_dim"]
  f, heads = network["mlp_dim"], network["num_heads"]
  buckets = network["relative_attention_num_buckets"]
  shapes = {}
  for name, _, _ in hf_name_table(network):
    leaf = name.split("/")
    if name == "token_embedder/embedding":
      shape = (vocab_size, d)
    elif name == "decoder/logits_dense/kernel":
      shape = (d, vocab_size)
    elif leaf[-1] == "rel_embedding":
      shape = (heads, buckets)
    elif leaf[-1] == "scale":
      shape = (d,)
    elif leaf[-2] in ("query", "key", "value"):
      shape = (d, joined)
    elif leaf[-2] == "out":
      shape = (joined, d)
    elif leaf[-2] == "wo":
      shape = (f, d)
    else:
      shape = (d, f)
    shapes[name] = shape
  return shapes


def check_params(params: Mapping[str, np.ndarray], network: Mapping[str, Any], vocab_size: int,
                 source: str) -> None:
  """Raises CheckpointImportError listing every missing, unexpected or misshapen parameter."""
  expected = expected_shapes(network, vocab_size)
  missing = sorted(set(expected) - set(params))
  unknown = sorted(set(params) - set(expected))
  wrong = [f"{n} is {tuple(params[n].shape)}, expected {expected[n]}"
           for n in sorted(set(expected) & set(params))
           if tuple(params[n].shape) != expected[n]]
  problems = ([f"missing: {', '.join(missing)}"] if missing else []) + (
      [f"not a parameter of this network: {', '.join(unknown)}"] if unknown else []) + wrong
  if problems:
    raise CheckpointImportError(f"{source}: " + "; ".join(problems))


# ----------------------------------------------------------------------------------------------
# Hugging Face.


def _hf_network(config: Mapping[str, Any], path: str) -> Tuple[Dict[str, Any], int]:
  """`network.get_config` fields and vocab size from a Hugging Face T5 `config.json`."""
  model_type = config.get("model_type")
  if model_type == "umt5":
    raise CheckpointImportError(
        f"{path}: model_type 'umt5' has a relative position bias in every layer; this network "
        "shares one per stack (T5, T5.1.1, mT5)")
  if model_type not in HF_MODEL_TYPES:
    raise CheckpointImportError(f"{path}: model_type {model_type!r} is not a T5; expected one "
                                f"of {HF_MODEL_TYPES}")
  proj = config.get("feed_forward_proj", "relu")
  if proj not in HF_MLP_ACTIVATIONS:
    raise CheckpointImportError(f"{path}: feed_forward_proj {proj!r} is not supported; expected "
                                f"one of {sorted(HF_MLP_ACTIVATIONS)}")
  epsilon = config.get("layer_norm_epsilon", LAYER_NORM_EPSILON)
  if abs(epsilon - LAYER_NORM_EPSILON) > 1e-12:
    raise CheckpointImportError(f"{path}: layer_norm_epsilon {epsilon}; this network's RMSNorm "
                                f"uses {LAYER_NORM_EPSILON}")
  try:
    network = dict(
        emb_dim=int(config["d_model"]), num_heads=int(config["num_heads"]),
        head_dim=int(config["d_kv"]), mlp_dim=int(config["d_ff"]),
        num_encoder_layers=int(config["num_layers"]),
        num_decoder_layers=int(config.get("num_decoder_layers") or config["num_layers"]),
        mlp_activations=HF_MLP_ACTIVATIONS[proj],
        # Tied and scaled by 1/sqrt(d_model) (T5 v1.0) or not. transformers 5 writes
        # `scale_decoder_outputs` for it and always ties lm_head to shared.weight; earlier
        # versions wrote tie_word_embeddings=False for T5.1.1.
        logits_via_embedding=bool(config.get("scale_decoder_outputs",
                                             config.get("tie_word_embeddings", True))),
        relative_attention_num_buckets=int(config.get("relative_attention_num_buckets", 32)),
        relative_attention_max_distance=int(config.get("relative_attention_max_distance", 128)))
    vocab_size = int(config["vocab_size"])
  except KeyError as e:
    raise CheckpointImportError(f"{path}: config.json has no {e.args[0]!r}") from None
  return network, vocab_size


def _hf_tensors(directory: str) -> Iterator[Tuple[str, np.ndarray]]:
  """(name, float32 array) of every tensor in a `save_pretrained` folder."""
  single = os.path.join(directory, "model.safetensors")
  index = os.path.join(directory, "model.safetensors.index.json")
  if os.path.isfile(single) or os.path.isfile(index):
    from safetensors import safe_open  # pylint: disable=g-import-not-at-top
    if os.path.isfile(index):
      with open(index, encoding="utf-8") as f:
        files = sorted(set(json.load(f)["weight_map"].values()))
    else:
      files = ["model.safetensors"]
    for file in files:
      with safe_open(os.path.join(directory, file), framework="flax") as f:
        for name in f.keys():
          yield name, np.asarray(f.get_tensor(name), np.float32)
    return
  bin_path = os.path.join(directory, "pytorch_model.bin")
  if os.path.isfile(bin_path):
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise CheckpointImportError(
          f"{bin_path}: a torch pickle needs torch installed; or save the model with "
          "save_pretrained(..., safe_serialization=True) for model.safetensors") from None
    for name, tensor in torch.load(bin_path, map_location="cpu", weights_only=True).items():
      yield name, tensor.float().numpy()
    return
  raise CheckpointImportError(f"{directory}: no model.safetensors, model.safetensors.index.json "
                              "or pytorch_model.bin")


def read_huggingface(directory: str) -> ImportedCheckpoint:
  """A Hugging Face T5 / T5.1.1 / mT5 `save_pretrained` folder."""
  config_path = os.path.join(directory, "config.json")
  with open(config_path, encoding="utf-8") as f:
    network, vocab_size = _hf_network(json.load(f), config_path)
  table = {hf: (ours, transpose) for ours, hf, transpose in hf_name_table(network)}
  copies = {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"}
  if network["logits_via_embedding"]:
    copies.add("lm_head.weight")
  params, tied, unknown = {}, {}, []
  for name, value in _hf_tensors(directory):
    if name in table:
      ours, transpose = table[name]
      params[ours] = value.T if transpose else value
    elif name in copies:
      tied[name] = value
    else:
      unknown.append(name)
  if unknown:
    raise CheckpointImportError(f"{directory}: tensors with no place in this network: "
                                f"{', '.join(sorted(unknown))}")
  shared = params.get("token_embedder/embedding")
  if (not network["logits_via_embedding"] and "decoder/logits_dense/kernel" not in params
      and shared is not None):  # transformers 5: an unscaled output layer tied to shared.weight
    params["decoder/logits_dense/kernel"] = shared.T.copy()
  for name, value in tied.items():
    if shared is not None and (value.shape != shared.shape or not np.array_equal(value, shared)):
      raise CheckpointImportError(f"{directory}: {name} differs from shared.weight, but this "
                                  "network ties it to the shared embedding")
  check_params(params, network, vocab_size, directory)
  return ImportedCheckpoint(params, network, vocab_size, directory, "huggingface")


# ----------------------------------------------------------------------------------------------
# T5X.


def _t5x_step_dir(path: str) -> Tuple[str, int]:
  """`path` if it is a `checkpoint_<step>` directory, else its newest `checkpoint_<step>`."""
  match = re.fullmatch(r"checkpoint_(\d+)", os.path.basename(os.path.normpath(path)))
  if os.path.isfile(os.path.join(path, "checkpoint")):
    return path, int(match.group(1)) if match else 0
  steps = []
  for candidate in glob.glob(os.path.join(path, "checkpoint_*", "checkpoint")):
    match = re.fullmatch(r"checkpoint_(\d+)", os.path.basename(os.path.dirname(candidate)))
    if match:
      steps.append((int(match.group(1)), os.path.dirname(candidate)))
  if not steps:
    raise CheckpointImportError(f"{path}: no T5X checkpoint_<step>/checkpoint file")
  step, directory = max(steps)
  return directory, step


def _is_ts_spec(value: Any) -> bool:
  return isinstance(value, dict) and {"driver", "kvstore", "metadata"} <= set(value)


def _read_t5x_array(value: Any, directory: str, name: str) -> np.ndarray:
  """An inline array, a tensorstore spec (T5X's) or an orbax placeholder, as float32."""
  if isinstance(value, (np.ndarray, np.generic)):
    return np.asarray(value, np.float32)
  if _is_ts_spec(value) or (isinstance(value, str) and "://" in value):
    import tensorstore as ts  # pylint: disable=g-import-not-at-top
    if isinstance(value, str):  # orbax's 'PLACEHOLDER://target.encoder...'
      relative = value.split("://", 1)[1]
    else:
      relative = value["kvstore"].get("path") or value.get("path")
    spec = {"driver": "zarr", "kvstore": {"driver": "file",
                                          "path": os.path.join(directory, relative)}}
    try:
      return np.asarray(ts.open(spec, open=True).result().read().result(), np.float32)
    except Exception as e:  # tensorstore raises ValueError / its own errors
      raise CheckpointImportError(f"{directory}: cannot read {name} from "
                                  f"{os.path.join(directory, relative)}: {e}") from None
  raise CheckpointImportError(f"{directory}: {name} is {type(value).__name__}, not an array")


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> Iterator[Tuple[str, Any]]:
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict) and not _is_ts_spec(value):
      yield from _flatten(value, name + "/")
    else:
      yield name, value


def _t5x_network(params: Mapping[str, np.ndarray], source: str) -> Tuple[Dict[str, Any], int]:
  """The network's fields from the parameter shapes (T5X keeps the config in gin, not in the
  checkpoint): a 2-matrix MLP is read as T5.1.1's gated GELU, a 1-matrix one as T5's ReLU, and
  the relative-position max distance is T5's 128."""
  try:
    vocab_size, emb_dim = params["token_embedder/embedding"].shape
    num_heads, buckets = params["encoder/relpos_bias/rel_embedding"].shape
    joined = params["encoder/layers_0/attention/query/kernel"].shape[1]
    mlp_dim = params["encoder/layers_0/mlp/wo/kernel"].shape[0]
  except KeyError as e:
    raise CheckpointImportError(f"{source}: no {e.args[0]} (not a T5 network's parameters, or "
                                "a scanned-layers checkpoint)") from None
  depth = lambda stack: len({n.split("/")[1] for n in params
                             if n.startswith(f"{stack}/layers_")})
  gated = "encoder/layers_0/mlp/wi_0/kernel" in params
  network = dict(emb_dim=emb_dim, num_heads=num_heads, head_dim=joined // num_heads,
                 mlp_dim=mlp_dim, num_encoder_layers=depth("encoder"),
                 num_decoder_layers=depth("decoder"),
                 mlp_activations=("gelu", "linear") if gated else ("relu",),
                 logits_via_embedding="decoder/logits_dense/kernel" not in params,
                 relative_attention_num_buckets=buckets, relative_attention_max_distance=128)
  return network, vocab_size


def read_t5x(path: str) -> ImportedCheckpoint:
  """A T5X checkpoint: a `checkpoint_<step>` directory, or the model dir holding them (newest)."""
  from flax import serialization  # pylint: disable=g-import-not-at-top
  directory, step = _t5x_step_dir(path)
  with open(os.path.join(directory, "checkpoint"), "rb") as f:
    try:
      state = serialization.msgpack_restore(f.read())
    except Exception as e:  # msgpack's many exception types
      raise CheckpointImportError(f"{directory}/checkpoint: not a T5X msgpack file ({e})") from None
  if isinstance(state, dict) and state.get("version", 0) != 0:
    if state["version"] != 3:
      raise CheckpointImportError(f"{directory}/checkpoint: T5X checkpoint version "
                                  f"{state['version']}; version 3 (and unversioned) is read")
    state = state.get("optimizer", {})
  target = state.get("target") if isinstance(state, dict) else None
  if not isinstance(target, dict):
    raise CheckpointImportError(f"{directory}/checkpoint: no `target` parameter tree")
  params = {name: _read_t5x_array(value, directory, name) for name, value in _flatten(target)}
  network, vocab_size = _t5x_network(params, directory)
  check_params(params, network, vocab_size, directory)
  return ImportedCheckpoint(params, network, vocab_size, directory, "t5x", step)


# ----------------------------------------------------------------------------------------------
# Entry points.


def detect_format(path: str) -> Optional[str]:
  """'huggingface', 't5x', or None (not a pretrained-T5 checkpoint, e.g. a padir model_dir)."""
  if os.path.isfile(os.path.join(path, "config.json")):
    return "huggingface"
  if os.path.isfile(os.path.join(path, "checkpoint")) or glob.glob(
      os.path.join(path, "checkpoint_*", "checkpoint")):
    return "t5x"
  return None


def read(path: str) -> ImportedCheckpoint:
  """The checkpoint at `path`, in whichever format it is."""
  fmt = detect_format(path)
  if fmt == "huggingface":
    return read_huggingface(path)
  if fmt == "t5x":
    return read_t5x(path)
  raise CheckpointImportError(
      f"{path}: not a T5X checkpoint (a `checkpoint` file, or checkpoint_<step>/checkpoint) or "
      "a Hugging Face folder (config.json + model.safetensors)")


def network_gin(checkpoint: ImportedCheckpoint) -> str:
  """Gin bindings that rebuild `checkpoint`'s network (to include after a models/*.gin)."""
  lines = [f"# Written by `padir convert` from {checkpoint.source} ({checkpoint.format}).",
           "# Include it after a models/*.gin file; the task's vocabulary must give the model",
           f"# {checkpoint.vocab_size} ids (the checkpoint's embedding rows).",
           "from __gin__ import dynamic_registration", "", "from padir import network", ""]
  for key, value in checkpoint.network.items():
    lines.append(f"network.get_config.{key} = {value!r}")
  return "\n".join(lines) + "\n"


def convert(source: str, output_dir: str) -> ImportedCheckpoint:
  """Writes `output_dir/checkpoints/0/params` (orbax, this project's layout),
  `output_dir/network.gin` and `output_dir/conversion.json`; refuses a non-empty output."""
  checkpoint = read(source)
  if os.path.isdir(output_dir) and os.listdir(output_dir):
    raise FileExistsError(f"--output {output_dir} exists and is not empty; nothing was written")
  os.makedirs(output_dir, exist_ok=True)
  checkpoints.save_params(checkpoints.checkpoint_dir(output_dir), checkpoint.step,
                          checkpoint.nested_params())
  with open(os.path.join(output_dir, NETWORK_GIN), "w", encoding="utf-8") as f:
    f.write(network_gin(checkpoint))
  record = {"source": os.path.abspath(source), "format": checkpoint.format,
            "step": checkpoint.step, "vocab_size": checkpoint.vocab_size,
            "network": checkpoint.network, "decoder_causal": True,
            "parameters": len(checkpoint.params),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
  with open(os.path.join(output_dir, CONVERSION_FILE), "w", encoding="utf-8") as f:
    json.dump(record, f, indent=2)
  return checkpoint


def is_converted(path: str) -> bool:
  """Whether `path` (a model_dir-like folder) was written by `padir convert`."""
  return os.path.isfile(os.path.join(os.path.abspath(path), CONVERSION_FILE))
