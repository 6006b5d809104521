"""padir.timing (the project's one set of timers) and padir.tables (its table writer)."""
import time

import pytest

from padir import tables
from padir import timing


def test_latency_is_the_median_of_each_items_fastest_call():
  now, calls = [0.0], []
  cost = {"a": [3.0, 1.0], "b": [2.0, 2.5], "c": [9.0, 5.0]}  # ms of each timed call

  def fn(item):
    calls.append(item)
    if len(calls) > 1:  # The first call (on "a") is the untimed warm-up.
      now[0] += cost[item].pop(0) * 1e-3

  timed = timing.interleaved_latency_ms({"fn": fn}, ["a", "b", "c"], repeats=2,
                                        clock=lambda: now[0])
  assert calls == ["a", "a", "a", "b", "b", "c", "c"]
  assert [round(x, 6) for x in timed["fn"]["per_sentence_ms"]] == [1.0, 2.0, 5.0]
  assert round(timed["fn"]["ms"], 6) == 2.0


def test_timers_return_what_they_promise():
  assert len(timing.wall_seconds(lambda: 1, repeats=3)) == 3
  assert timing.latency_ms(lambda x: x, [1, 2, 3], repeats=2) >= 0
  timed = timing.time_compiled(lambda x: x + 1, (1,), repeats=5, min_repeats=2, max_seconds=10.0)
  assert timed["repeats"] == 5 and timed["latency_ms_p90"] >= timed["latency_ms_p50"] >= 0
  assert 0 <= timed["latency_ms_min"] <= timed["latency_ms_p50"]
  assert not timed["warmup_timed"]
  assert set(timing.machine()) >= {"platform", "device_kind", "cpu_count", "jax"}


def test_compiled_programs_are_timed_in_turn_until_the_budget():
  order = []
  programs = [(lambda name: order.append(name), ("a",)), (lambda name: order.append(name), ("b",))]
  timed = timing.time_compiled_interleaved(programs, repeats=3, min_repeats=1, max_seconds=10.0)
  assert order == ["a", "b"] + ["a", "b"] * 3  # Warm-ups, then one call of each a round.
  assert [t["repeats"] for t in timed] == [3, 3]
  # Past the budget (max_seconds per program), stop once min_repeats rounds are done.
  slow = [(lambda: time.sleep(0.02), ())] * 2
  timed = timing.time_compiled_interleaved(slow, repeats=50, min_repeats=2, max_seconds=0.01)
  assert [t["repeats"] for t in timed] == [2, 2]
  assert all(0 < t["latency_ms_min"] <= t["latency_ms_p50"] for t in timed)


def test_markdown_table():
  assert tables.markdown_table(("name", "BLEU"), [("ar", "30.00"), ("padir", 2)], "lr") == [
      "| name | BLEU |", "|---|---:|", "| ar | 30.00 |", "| padir | 2 |"]
  with pytest.raises(ValueError, match="align"):
    tables.markdown_table(("a", "b"), [], "l")
  with pytest.raises(ValueError, match="row of 1 cells"):
    tables.markdown_table(("a", "b"), [("x",)], "ll")
