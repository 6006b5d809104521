"""benchmarks/profile_pass: own times of nested trace events, ops attributed to their source
through the compiled HLO, and a profile of the session's tiny PaDIR checkpoint."""
import json
import os

import jax
import jax.numpy as jnp
import pytest

from benchmarks import profile_pass
from padir import decoding
from padir.special_tokens import SpecialTokens


def test_self_times_subtract_nested_events_per_thread():
  events = [
      {"name": "while.1", "pid": 1, "tid": 1, "ts": 0, "dur": 100},
      {"name": "fusion.2", "pid": 1, "tid": 1, "ts": 10, "dur": 30},
      {"name": "fusion.3", "pid": 1, "tid": 1, "ts": 50, "dur": 20},
      {"name": "fusion.2", "pid": 1, "tid": 1, "ts": 120, "dur": 5},
      {"name": "fusion.4", "pid": 1, "tid": 2, "ts": 10, "dur": 7},  # Another thread.
  ]
  assert profile_pass.self_times(events) == {"while.1": 50, "fusion.2": 35, "fusion.3": 20,
                                             "fusion.4": 7}


def test_ops_are_attributed_to_their_source():
  def fn(logits):
    config = decoding.RefinementConfig()
    special = SpecialTokens.create(num_pieces=12, max_target_length=8)
    return decoding.choose_tokens(logits, None, config, special)[0]

  text = jax.jit(fn).lower(jnp.ones((1, 3, 16))).compile().as_text()
  sources = profile_pass.op_sources(text)
  assert sources and any("choose_tokens" in s for s in sources.values())
  groups = {profile_pass.group_of(s) for s in sources.values() if "choose_tokens" in s}
  assert groups == {"token choice"}
  assert profile_pass.group_of("jit(predict)/Transformer.decode/decoder/logits_dense/dot") == (
      "output projection")
  assert profile_pass.group_of("jit(predict)/Transformer.decode/decoder/layers_0/mlp") == (
      "decoder layers")
  assert profile_pass.group_of("while.3") == "loop / branch control"
  assert profile_pass.group_of("jit(predict)/add") == profile_pass.OTHER


def test_an_op_without_metadata_takes_its_users_source():
  text = """
  %dot.7 = f32[1,32]{1,0} dot(%x.1, %w.2), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  %fusion.9 = f32[2,16]{1,0} fusion(%dot.7), kind=kLoop, calls=%c.1, metadata={op_name="jit(f)/while/body/Transformer.decode/decoder/layers_1/mlp/mul"}
  %while.3 = (f32[1,32]{1,0}) while(%tuple.4), condition=%cond.1, body=%body.1
  """
  sources = profile_pass.op_sources(text)
  assert sources["dot.7"] == sources["fusion.9"]
  assert profile_pass.group_of(sources["dot.7"]) == "decoder layers"
  assert sources["while.3"] == "while.3" and "tuple.4" not in sources  # Control keeps its own.


def test_a_dot_without_metadata_onto_the_vocabulary_is_the_output_projection():
  text = """
  %dot.410 = f32[1,320]{1,0} dot(%norm.1, %w.2), lhs_contracting_dims={0}, rhs_contracting_dims={0}
  %dot.411 = f32[1,64]{1,0} dot(%norm.1, %w.3), lhs_contracting_dims={0}, rhs_contracting_dims={0}
  %select.5 = f32[1,320]{1,0} fusion(%dot.410, %dot.411), kind=kLoop, calls=%c.1, metadata={op_name="jit(f)/while/body/jit(_where)/select_n"}
  """
  sources = profile_pass.op_sources(text, vocab_size=320)
  assert profile_pass.group_of(sources["dot.410"]) == "output projection"
  assert sources["dot.411"] == sources["select.5"]  # Not onto the vocabulary: its user's.
  assert profile_pass.group_of(profile_pass.op_sources(text)["dot.410"]) == "other"


def test_profile_of_a_checkpoint_splits_a_pass_from_the_fixed_part(tiny_padir_dir, tmp_path):
  sources = tmp_path / "sources.txt"
  sources.write_text("a dog sees the cat .\nthe cat sees a dog .\n")
  out = tmp_path / "profile"
  assert profile_pass.main(["--checkpoint", tiny_padir_dir, "--sources", str(sources),
                            "--iterations", "1,3", "--repeats", "2", "--output", str(out)]) == 0
  report = json.loads((out / "profile.json").read_text())
  one, three = report["runs"]
  assert one["decoder_params"]["num_decode_iterations"] == 1
  for run in (one, three):
    assert run["wall_us"] > 0 and run["op_cpu_us"] > 0
    assert abs(sum(run["groups_us"].values()) - run["wall_us"]) < 1e-6 * run["wall_us"]
    assert run["groups_us"]["decoder layers"] > 0 and run["groups_us"]["encoder"] > 0
  # Three passes run more decoder work than one; the split adds back up to the first run.
  assert three["groups_us"]["decoder layers"] > one["groups_us"]["decoder layers"]
  assert abs(report["fixed"]["wall_us"] + report["per_pass"]["wall_us"] - one["wall_us"]) < 1e-6
  assert "| one pass, µs | the fixed part, µs |" in (out / "profile.md").read_text()


@pytest.mark.slow
def test_profile_of_a_preset_with_random_weights_has_ar_greedy_beside_it(tmp_path):
  out = tmp_path / "profile"
  assert profile_pass.main(["--model", "test", "--iterations", "1,2", "--repeats", "2",
                            "--output", str(out)]) == 0
  report = json.loads((out / "profile.json").read_text())
  assert [r["decoder_params"]["num_decode_iterations"] for r in report["runs"]] == [1, 2]
  assert report["ar_greedy"]["decoder_params"] == {"decode_method": "greedy"}
  assert report["ar_greedy"]["groups_us"]["decoder layers"] > 0
  assert report["runs"][0]["shape"] == report["ar_greedy"]["shape"]
  assert report["per_pass"]["groups_us"]["decoder layers"] > 0
  table = (out / "profile.md").read_text()
  assert '{"decode_method": "greedy"}' in table and "random weights" in table
