"""Pretrained T5 import: Hugging Face and T5X checkpoints give this network the same function.

The Hugging Face side is transformers' PyTorch T5 (a test dependency, CPU torch): random tiny
T5.1.1 (gated GELU, untied output) and T5 v1.0 (ReLU, tied embeddings) configs saved with
`save_pretrained`, imported, and compared on encoder output, logits and cached greedy decodes.
"""
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from padir import checkpoints
from padir import decoding
from padir import network
from padir import t5_import
from padir.commands import convert as convert_command

torch = pytest.importorskip("torch", reason="torch (a test dependency in setup.py) is needed")
transformers = pytest.importorskip("transformers",
                                   reason="transformers (a test dependency) is needed")

VOCAB = 96
HF_CONFIGS = {
    "t5_1_1": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False),
    "t5_v1_0": dict(feed_forward_proj="relu", tie_word_embeddings=True),
}


def _hf_model(kind: str, seed: int = 0):
  torch.manual_seed(seed)
  config = transformers.T5Config(
      vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=3,
      num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=20,
      dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
      **HF_CONFIGS[kind])
  model = transformers.T5ForConditionalGeneration(config).eval()
  return model


@pytest.fixture(scope="module", params=sorted(HF_CONFIGS))
def hf_checkpoint(request, tmp_path_factory):
  """(kind, HF model, its save_pretrained folder)."""
  model = _hf_model(request.param)
  path = str(tmp_path_factory.mktemp(request.param))
  model.save_pretrained(path)
  return request.param, model, path


def _ours(imported: t5_import.ImportedCheckpoint):
  config = network.T5Config(vocab_size=imported.vocab_size, dropout_rate=0.0,
                            **imported.network)
  return network.Transformer(config), {"params": imported.nested_params()}


def _batch():
  rng = np.random.default_rng(0)
  src = rng.integers(2, VOCAB, (3, 7))
  src[1, 5:] = 0  # padding
  tgt = rng.integers(2, VOCAB, (3, 6))
  tgt[:, 0] = 0  # T5's decoder start: id 0, attended
  tgt[2, 4:] = 0  # padding after the sequence
  return src, tgt


def _relative_error(ours, theirs, valid):
  """max |ours - theirs| / max |theirs| over the valid positions."""
  ours, theirs = np.asarray(ours)[valid], np.asarray(theirs)[valid]
  return np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs))


# float32 through 2 + 3 layers at HF's initialisation (logits up to ~25): measured 3-5e-7 on
# the logits and the encoder (seeds 0-2); a misplaced transpose, bias or mask is O(1).
TOLERANCE = 1e-5


@pytest.mark.slow
def test_huggingface_encoder_and_logits_match(hf_checkpoint):
  kind, hf, path = hf_checkpoint
  imported = t5_import.read(path)
  assert imported.format == "huggingface"
  # T5 v1.0's logits are the shared embedding's, scaled; T5.1.1's an unscaled output layer.
  assert imported.network["logits_via_embedding"] == (kind == "t5_v1_0")
  module, variables = _ours(imported)
  src, tgt = _batch()
  with torch.no_grad():
    out = hf(input_ids=torch.tensor(src), attention_mask=torch.tensor(src != 0),
             decoder_input_ids=torch.tensor(tgt), output_hidden_states=True)
  encoded = module.apply(variables, jnp.asarray(src), method=module.encode)
  logits = module.apply(variables, encoded, jnp.asarray(src), jnp.asarray(tgt),
                        method=module.decode)
  src_valid = src != 0
  assert _relative_error(encoded, out.encoder_last_hidden_state.numpy(), src_valid) < TOLERANCE
  # Every position up to each row's last real one (T5's start token 0 included).
  tgt_valid = np.ones_like(tgt, bool)
  tgt_valid[2, 4:] = False
  assert _relative_error(logits, out.logits.numpy(), tgt_valid) < TOLERANCE


@pytest.mark.slow
def test_huggingface_greedy_decodes_match(hf_checkpoint):
  """Cached greedy decoding (this project's decoding + KV cache) emits HF's tokens."""
  _, hf, path = hf_checkpoint
  module, variables = _ours(t5_import.read(path))
  src, _ = _batch()
  length = 10
  with torch.no_grad():
    expected = hf.generate(input_ids=torch.tensor(src), attention_mask=torch.tensor(src != 0),
                           max_new_tokens=length, min_new_tokens=length, do_sample=False,
                           num_beams=1,
                           # transformers' KV cache assumes num_decoder_layers == num_layers.
                           use_cache=False).numpy()[:, 1:]  # drop the start token
  encoded = module.apply(variables, jnp.asarray(src), method=module.encode)
  cross_kv = module.apply(variables, encoded, method=module.precompute_cross_kv)
  src = jnp.asarray(src)
  _, init = module.apply(variables, None, src, jnp.ones((3, length), jnp.int32),
                         cross_kv=cross_kv, decode=True, max_decode_length=length,
                         mutable=["cache"], method=module.decode)
  cache = jax.tree_util.tree_map(jnp.zeros_like, init["cache"])

  def tokens_to_logits(ids, step_cache):
    logits, new = module.apply({**variables, "cache": step_cache}, None, src, ids,
                               cross_kv=cross_kv, decode=True, max_decode_length=length,
                               mutable=["cache"], method=module.decode)
    # No EOS: HF was told to emit `length` tokens (min_new_tokens), so EOS never ends a row.
    return logits[:, 0].at[:, 1].set(-1e9), new["cache"]

  tokens, _ = decoding.temperature_sample(jnp.zeros((3, 0), jnp.int32), cache,
                                          tokens_to_logits, max_decode_len=length,
                                          temperature=0.0, eos_id=1, bos_id=0, pad_id=0)
  hf_no_eos = expected.copy()
  assert not np.any(hf_no_eos == 1)
  np.testing.assert_array_equal(np.asarray(tokens)[:, 0], hf_no_eos)


def test_convert_writes_a_checkpoint_and_network_gin(hf_checkpoint, tmp_path):
  kind, _, path = hf_checkpoint
  out = tmp_path / "converted"
  assert convert_command.main(["--source", path, "--output", str(out)]) == 0
  params, step = checkpoints.load_params(str(out))
  assert step == 0
  imported = t5_import.read(path)
  flat = {checkpoints.path_name(p): np.asarray(v)
          for p, v in jax.tree_util.tree_flatten_with_path(params)[0]}
  assert sorted(flat) == sorted(imported.params)
  for name, value in imported.params.items():
    np.testing.assert_array_equal(flat[name], value)
  gin_text = (out / t5_import.NETWORK_GIN).read_text()
  assert "network.get_config.num_decoder_layers = 3" in gin_text
  assert json.loads((out / t5_import.CONVERSION_FILE).read_text())["decoder_causal"] is True
  assert t5_import.is_converted(str(out))
  # A second conversion into the same folder writes nothing.
  assert convert_command.main(["--source", path, "--output", str(out)]) == 1
  assert sorted(os.listdir(out)) == sorted(["checkpoints", t5_import.NETWORK_GIN,
                                            t5_import.CONVERSION_FILE])


def _edit_config(path, tmp_path, **changes):
  copy = tmp_path / "edited"
  shutil.copytree(path, copy)
  config = json.loads((copy / "config.json").read_text())
  config.update(changes)
  (copy / "config.json").write_text(json.dumps(config))
  return str(copy)


@pytest.mark.parametrize("changes,message", [
    (dict(model_type="bart"), "model_type 'bart' is not a T5"),
    (dict(model_type="umt5"), "relative position bias in every layer"),
    (dict(feed_forward_proj="gelu"), "feed_forward_proj 'gelu' is not supported"),
    (dict(num_layers=3), "missing: encoder/layers_2/"),
    (dict(num_layers=1), "tensors with no place in this network: encoder.block.1."),
    (dict(d_ff=40), "expected (32, 40)"),
])
def test_bad_huggingface_checkpoints_are_named(hf_checkpoint, tmp_path, changes, message):
  _, _, path = hf_checkpoint
  with pytest.raises(t5_import.CheckpointImportError, match=None) as error:
    t5_import.read(_edit_config(path, tmp_path, **changes))
  assert message in str(error.value)


def test_not_a_checkpoint(tmp_path):
  with pytest.raises(t5_import.CheckpointImportError, match="not a T5X checkpoint"):
    t5_import.read(str(tmp_path))


def _write_t5x(params, directory, step):
  """A T5X checkpoint as T5X's checkpoints.py lays it out (version 3): `checkpoint_<step>/
  checkpoint`, msgpack of {'version': 3, 'optimizer': {'target': ..., 'state': ...}}, where
  each large array is a tensorstore spec dict (zarr, gzip) of a folder named by its dotted path
  and small arrays are inline."""
  import tensorstore as ts
  from flax import serialization
  step_dir = os.path.join(directory, f"checkpoint_{step}")
  os.makedirs(step_dir)
  target = {}
  for name, value in params.items():
    node = target
    *parents, leaf = name.split("/")
    for part in parents:
      node = node.setdefault(part, {})
    if value.size <= 64:  # inline
      node[leaf] = value
      continue
    dotted = "target." + name.replace("/", ".")
    spec = {"driver": "zarr", "dtype": "float32",
            "kvstore": {"driver": "file", "path": dotted},
            "metadata": {"chunks": list(value.shape), "compressor": {"id": "gzip"},
                         "shape": list(value.shape)}}
    written = ts.open({**spec, "kvstore": {"driver": "file",
                                           "path": os.path.join(step_dir, dotted)}},
                      create=True, open=True).result()
    written.write(value).result()
    node[leaf] = spec
  state = {"version": 3, "optimizer": {"target": target,
                                       "state": {"step": np.int64(step), "param_states": {}}}}
  with open(os.path.join(step_dir, "checkpoint"), "wb") as f:
    f.write(serialization.msgpack_serialize(state))


def test_t5x_round_trip(hf_checkpoint, tmp_path):
  """A T5X checkpoint of the same parameters reads back to them and to the same network (the
  relative-position max distance, which T5X keeps in gin, is T5's 128)."""
  _, _, path = hf_checkpoint
  reference = t5_import.read(path)
  _write_t5x(reference.params, str(tmp_path), 5000)
  _write_t5x({k: v * 0 for k, v in reference.params.items()}, str(tmp_path), 1000)
  for source in (str(tmp_path), str(tmp_path / "checkpoint_5000")):  # newest step, or named
    imported = t5_import.read(source)
    assert (imported.format, imported.step) == ("t5x", 5000)
    assert imported.network == {**reference.network, "relative_attention_max_distance": 128}
    assert sorted(imported.params) == sorted(reference.params)
    for name, value in reference.params.items():
      np.testing.assert_array_equal(imported.params[name], value)


def test_bad_t5x_checkpoints_are_named(hf_checkpoint, tmp_path):
  _, _, path = hf_checkpoint
  params = dict(t5_import.read(path).params)
  del params["decoder/layers_1/mlp/wo/kernel"]
  _write_t5x(params, str(tmp_path), 10)
  with pytest.raises(t5_import.CheckpointImportError, match="missing: decoder/layers_1/mlp/wo"):
    t5_import.read(str(tmp_path))
  (tmp_path / "checkpoint_10" / "checkpoint").write_bytes(b"not msgpack")
  with pytest.raises(t5_import.CheckpointImportError, match="not a T5X msgpack file"):
    t5_import.read(str(tmp_path))


@pytest.mark.slow
def test_huggingface_t5_fine_tuned_as_a_padir_student(tiny_corpus, tmp_path):
  """README's sequence: `padir convert` a (random, tiny) Hugging Face T5.1.1, then `padir train`
  a PaDIR student from it with the converted network.gin."""
  import gin
  import seqio
  from padir.commands import train as train_command
  vocabulary = seqio.get_mixture_or_task(
      tiny_corpus["padir_task"]).output_features["targets"].vocabulary
  torch.manual_seed(0)
  hf = transformers.T5ForConditionalGeneration(transformers.T5Config(
      vocab_size=vocabulary.model_vocab_size, d_model=32, d_kv=8, d_ff=48, num_layers=2,
      num_heads=4, feed_forward_proj="gated-gelu", tie_word_embeddings=False))
  hf.save_pretrained(str(tmp_path / "hf"))
  converted = tmp_path / "converted"
  assert convert_command.main(["--source", str(tmp_path / "hf"), "--output", str(converted)]) == 0
  experiment = tmp_path / "experiment.gin"
  experiment.write_text("\n".join([
      "from __gin__ import dynamic_registration",
      "from padir import network", "from padir import optimizers", "from padir import trainer",
      f"MIXTURE_OR_TASK_NAME = '{tiny_corpus['padir_task']}'",
      "TASK_FEATURE_LENGTHS = {'inputs': 32, 'targets': 32}",
      "network.get_config.dropout_rate = 0.0",
      "optimizers.adamw.learning_rate = 0.001",
      "trainer.train.eval_dataset_fn = None"]) + "\n")
  gin.clear_config()
  try:
    rc = train_command.main(["--gin_file=models/padir_tiny.gin", "--gin_file=runs/train.gin",
                       f"--gin_file={experiment}", f"--gin_file={converted / 'network.gin'}",
                       f"--gin.trainer.train.init_checkpoint='{converted}'",
                       "--gin.TRAIN_STEPS=2", "--gin.BATCH_SIZE=8", "--gin.SAVE_EVERY=2",
                       f"--model_dir={tmp_path / 'student'}"])
  finally:
    gin.clear_config()
  assert rc == 0
  student, step = checkpoints.load_params(str(tmp_path / "student"))
  assert step == 2
  source = t5_import.read(str(tmp_path / "hf")).params
  query = "encoder/layers_1/attention/query/kernel"
  trained = np.asarray(student["encoder"]["layers_1"]["attention"]["query"]["kernel"])
  # Two Adam steps at 1e-3 move a weight by ~2e-3; an unrelated initialisation would be ~0.1 away.
  assert np.max(np.abs(trained - source[query])) < 0.01
  assert np.std(source[query]) > 0.05  # HF initialises it at (d_model * d_kv) ** -0.5
  # The student's decoder biases are the HF decoder's, re-bucketed for a bidirectional decoder.
  assert student["decoder"]["relpos_bias"]["rel_embedding"].shape == (4, 32)


def test_torch_pickle_checkpoint_reads_the_same(hf_checkpoint, tmp_path):
  """An older `save_pretrained` folder (`pytorch_model.bin`, every tied copy included)."""
  _, hf, path = hf_checkpoint
  shutil.copy(os.path.join(path, "config.json"), tmp_path / "config.json")
  torch.save(hf.state_dict(), str(tmp_path / "pytorch_model.bin"))
  expected = t5_import.read(path).params
  imported = t5_import.read(str(tmp_path)).params
  assert sorted(imported) == sorted(expected)
  for name, value in expected.items():
    np.testing.assert_array_equal(imported[name], value)
