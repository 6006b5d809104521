"""benchmarks/prune_speed.py: the protocol's bookkeeping (interleaving, fastest, median) on a
fake clock, and its settings; no model is timed here."""
import pytest

from benchmarks import prune_speed
from padir import timing


def test_settings_interleaved_fastest_of_repeats_then_median():
  now, order = [0.0], []
  cost = {"a": {"s1": 1.0, "s2": 3.0, "s3": 2.0}, "b": {"s1": 5.0, "s2": 4.0, "s3": 6.0}}

  # Extra ms of each call (the warm-up first): one repeat of every sentence is slower.
  slower = {"a": iter([9.0] + [0.5, 0.0] * 3), "b": iter([9.0] + [0.0, 0.7] * 3)}

  def call(name):
    def run(source):
      order.append((name, source))
      now[0] += (cost[name][source] + next(slower[name])) * 1e-3
    return run

  def clock():
    return now[0]

  calls = {"a": call("a"), "b": call("b")}
  timed = timing.interleaved_latency_ms(calls, ["s1", "s2", "s3"], repeats=2, clock=clock)
  assert order[:2] == [("a", "s1"), ("b", "s1")]  # The untimed warm-up call of each.
  assert order[2:6] == [("a", "s1"), ("b", "s1"), ("a", "s1"), ("b", "s1")]  # Interleaved.
  assert [round(x, 6) for x in timed["a"]["per_sentence_ms"]] == [1.0, 3.0, 2.0]
  assert round(timed["a"]["ms"], 6) == 2.0 and round(timed["b"]["ms"], 6) == 5.0


def test_settings_differ_only_in_candidates_and_pruning():
  named = prune_speed.settings(4, 3)
  assert len(named) == 4
  one, every, best1, best2 = named.values()
  assert all(p["num_decode_iterations"] == 4 and p["early_exit"] is False
             for p in named.values())
  assert [p["top_k_lengths"] for p in named.values()] == [1, 3, 3, 3]
  assert (best1["keep_candidates_after_first_pass"], best2["keep_candidates_after_first_pass"]) == (
      1, 2)
  assert "keep_candidates_after_first_pass" not in every
  weighted = prune_speed.settings(4, 3, {"length_score_weight": 0.1, "early_exit": True})
  assert all(p["length_score_weight"] == 0.1 and p["early_exit"] is False  # Fixed work stays.
             for p in weighted.values())


def test_latency_systems_are_parsed_with_their_decoder_params():
  from benchmarks import latency  # pylint: disable=g-import-not-at-top
  assert latency.parse_system("ar=runs/t") == ("ar", "runs/t", None)
  assert latency.parse_system('ctc@1=runs/s={"blank_penalty": 2.0}') == (
      "ctc@1", "runs/s", {"blank_penalty": 2.0})
  for bad in ("runs/t", "=runs/t", "ar=runs/t={not json"):
    with pytest.raises(SystemExit, match="--system"):
      latency.parse_system(bad)
