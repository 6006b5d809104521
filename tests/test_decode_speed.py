"""The decoding-speed benchmark end to end at the toy `test` size (one subprocess, < 60 s)."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from benchmarks import decode_speed
from benchmarks import roofline
from padir import network

REPO = pathlib.Path(__file__).resolve().parents[1]

SYSTEMS = {  # name -> (iterations, length beams) the run below asks for.
    "ar_greedy": ([None], [1]),
    "ar_beam4": ([None], [1]),
    "padir": ([1, 2], [1, 3]),
    "ar_greedy_deep_shallow": ([None], [1]),
    "padir_deep_shallow": ([1], [1]),
}
BATCH_SIZES = [1, 2]


@pytest.mark.slow
def test_decode_speed_benchmark_writes_every_system_and_batch_size(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             # Toy size: compile fast (compilation is never timed); the numbers are not the point.
             XLA_FLAGS="--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false")
  command = [sys.executable, "-m", "benchmarks.decode_speed", "--model", "test",
             "--out_dir", str(tmp_path), "--batch_sizes", "1,2", "--max_batch", "0",
             "--iterations", "1,2", "--length_beams", "1,3", "--ds_iterations", "1",
             "--sweep_lengths", "8,16", "--repeats", "2", "--min_repeats", "1"]
  proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-4000:]

  report = json.loads((tmp_path / "decode_speed.json").read_text())
  assert report["model"]["preset"] == "test"
  assert report["weights"] and all("random" in w for w in report["weights"].values())
  assert report["machine"]["platform"] == "cpu"
  assert report["batch_sizes"] == BATCH_SIZES
  found = {(r["system"], r["iterations"], r["length_beam"], r["batch_size"]): r
           for r in report["results"]}
  for system, (iterations, beams) in SYSTEMS.items():
    for k in iterations:
      for beam in beams:
        for batch_size in BATCH_SIZES:
          r = found.get((system, k, beam, batch_size))
          assert r is not None, f"missing {system} iterations={k} length_beam={beam} " \
                                f"batch={batch_size}"
          for key in ("latency_ms_p50", "latency_ms_p90", "sentences_per_s",
                      "latency_ms_per_sentence_p50", "speedup_vs_ar_greedy"):
            assert r[key] > 0, (key, r)
          assert r["latency_ms_p90"] >= r["latency_ms_p50"]
  assert len(found) == len(report["results"])  # No duplicates.
  sweep = {(s["system"], s["target_length"]) for s in report["length_sweep"]}
  assert sweep == {(s, n) for s in ("ar_greedy", "padir") for n in (8, 16)}
  assert all(s["latency_ms_p50"] > 0 for s in report["length_sweep"])
  assert report["headline"]

  roof = report["roofline"]
  assert roof["matmul_flop_s"] > 1e8 and roof["memory_bytes_s"] > 1e8
  assert {(r["batch_size"], r["length_beam"]) for r in roof["rows"]} == {
      (b, lb) for b in BATCH_SIZES for lb in (1, 3)}
  for r in roof["rows"]:
    step, pass_ = r["ar_step"], r["padir_pass"]
    # A pass over C x T positions does more arithmetic than a step over 1 position per row.
    assert pass_["flops"] > r["target_length"] * r["length_beam"] * step["flops"] / 2
    assert step["bytes"] > 0 and pass_["flop_bound_ms"] > 0 and step["byte_bound_ms"] > 0
    # FLOP bounds from the rates at each call's own row count: B for a step, B x C x T a pass.
    assert step["rows"] == r["batch_size"]
    assert pass_["rows"] == r["batch_size"] * r["length_beam"] * r["target_length"]
    # The ceiling of PaDIR at K against greedy: T steps at their bound over K passes at theirs.
    bound = lambda call: max(call["flop_bound_ms"], call["byte_bound_ms"])
    assert r["ceiling"] == pytest.approx(
        r["target_length"] * bound(step) / (r["iterations"] * bound(pass_)))
    assert r["share_of_ceiling"] == pytest.approx(r["speedup_fastest"] / r["ceiling"])
  config = network.get_config("test")
  counts = {r["rows"] for r in roof["row_rates"]}
  assert counts == {b for b in BATCH_SIZES} | {
      r["padir_pass"]["rows"] for r in roof["rows"]}
  assert {(r["d_in"], r["d_out"]) for r in roof["row_rates"]} == set(
      roofline.decoder_products(config))
  for r in roof["rows"]:
    for call, keys in ((r["ar_step"], r["target_length"]), (r["padir_pass"], r["target_length"])):
      assert call["flop_bound_ms"] == pytest.approx(roofline.row_flop_bound_ms(
          config, call["rows"], keys, r["source_length"], roof["row_rates"]), rel=1e-6)

  markdown = (tmp_path / "decode_speed.md").read_text()
  assert "speedup vs AR greedy" in markdown and "Length scaling" in markdown
  assert "Roofline" in markdown and "row count" in markdown and "share of the ceiling" in markdown
  assert (tmp_path / "decode_speed.png").stat().st_size > 0


# ------------------------------------------------------------------------------------------------
# The decoding speed-ups keep the semantics.


def test_argmax_choice_matches_the_log_softmax_reference():
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from padir import decoding  # pylint: disable=g-import-not-at-top
  from padir.special_tokens import SpecialTokens  # pylint: disable=g-import-not-at-top

  st = SpecialTokens.create(num_pieces=300, max_target_length=8)
  logits = jax.random.normal(jax.random.PRNGKey(0), (3, 8, st.vocab_size)) * 4.0
  logits = logits.at[0, 0, st.mask_id].set(50.0).at[0, 1, st.eos_id].set(50.0)  # Never chosen.
  logits = logits.at[1, :, 7].set(30.0).at[1, :, 9].set(30.0)  # A tie: the first id wins.
  initial = decoding.initial_decoder_inputs(jnp.array([8, 5, 1]), 8, "mask", st)
  config = decoding.RefinementConfig()
  tokens, log_probs = jax.jit(decoding.choose_tokens, static_argnums=(2, 3))(
      logits, None, config, st, initial)
  reference = decoding._output_log_probs(logits, st)  # pylint: disable=protected-access
  expected = jnp.argmax(reference.at[..., st.eos_id].set(-jnp.inf), axis=-1)
  keep = (initial == st.eos_id) | (initial == st.pad_id)
  expected = jnp.where(keep, initial, expected)
  expected_log_probs = jnp.where(
      expected == st.pad_id, 0.0,
      jnp.take_along_axis(reference, expected[..., None], axis=-1)[..., 0])
  assert tokens.tolist() == expected.tolist()
  assert tokens[1, :4].tolist() == [7] * 4
  np.testing.assert_allclose(log_probs, expected_log_probs, rtol=1e-5, atol=1e-5)


def test_refine_without_early_exit_runs_every_pass_and_changes_nothing():
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from padir import decoding  # pylint: disable=g-import-not-at-top
  from padir.special_tokens import SpecialTokens  # pylint: disable=g-import-not-at-top

  st = SpecialTokens.create(num_pieces=20, max_target_length=6)
  calls = []

  def logits_fn(tokens):  # Always predicts id 5: converged after the second pass.
    jax.debug.callback(lambda: calls.append(1))
    return jnp.zeros(tokens.shape + (st.vocab_size,)).at[..., 5].set(1.0), None

  initial = decoding.initial_decoder_inputs(jnp.array([4, 6]), 6, "mask", st)
  outputs = {}
  for early_exit in (True, False):
    calls.clear()
    config = decoding.RefinementConfig(num_decode_iterations=5, early_exit=early_exit)
    tokens, log_probs, aux = jax.jit(
        lambda i, c=config: decoding.refine(logits_fn, i, jax.random.PRNGKey(0), c, st))(initial)
    jax.block_until_ready(tokens)
    outputs[early_exit] = (tokens.tolist(), log_probs.tolist(), aux["iterations"].tolist(),
                           len(calls))
  assert outputs[True][3] == 2 and outputs[False][3] == 5
  assert outputs[True][:3] == outputs[False][:3]
