"""How the project times things, in one place: every benchmark, `padir demo`'s report
(`padir.reporting`) and `launch/` use these.

  wall_seconds(fn, repeats)           wall seconds of each of `repeats` calls, after an untimed
                                      one (compilation, warm-up); JAX results waited for
  latency_ms(fn, items, repeats)      one item a call: the fastest of `repeats` calls per item
                                      (the rest is the machine's noise), the median over items;
                                      `interleaved_latency_ms` for several settings in turn
  time_compiled(compiled, args, ...)  an ahead-of-time compiled function: median, p90 and
                                      fastest of repeats, bounded by a time budget
  time_compiled_interleaved(...)      the same for several, timed in turn
  matmul_flop_rate(), memory_bandwidth()   this machine's attainable rates (rooflines)
  machine(), load_average(), now()    what a measurement ran on, and when

Compilation is never timed: every timer makes an untimed call first.
"""
import datetime
import os
import platform
import statistics
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import jax
import numpy as np


def now() -> str:
  """The current UTC time, ISO 8601 to the second: the date of a measurement."""
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def machine() -> Dict[str, Any]:
  """What a measurement ran on: JAX's devices, the CPU, the system, the versions."""
  device = jax.devices()[0]
  return {"platform": device.platform, "device_kind": device.device_kind,
          "device_count": jax.device_count(), "cpu_count": os.cpu_count(),
          "processor": _cpu_model(), "system": f"{platform.system()} {platform.release()}",
          "hostname": platform.node(), "python": platform.python_version(),
          "jax": jax.__version__}


def load_average() -> Optional[List[float]]:
  """The 1, 5 and 15-minute load averages (speed numbers are worth little without them)."""
  return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def wall_seconds(fn: Callable[[], Any], repeats: int) -> List[float]:
  """Wall seconds of each of `repeats` calls of `fn`, after one untimed call (compilation,
  warm-up); JAX results are waited for before the clock stops."""
  jax.block_until_ready(fn())
  seconds = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    seconds.append(time.perf_counter() - start)
  return seconds


def interleaved_latency_ms(calls: Mapping[str, Callable[[Any], Any]], items: Sequence[Any],
                           repeats: int, clock: Callable[[], float] = time.perf_counter
                           ) -> Dict[str, Dict[str, Any]]:
  """One item a call, for each of several settings: per setting, 'ms' the median over `items`
  of the fastest of `repeats` calls on each (the rest is the machine's noise), and
  'per_sentence_ms' [len(items)]. The settings are called in turn (interleaved, so a load change
  hits them alike); each is called once on items[0] first, untimed (compilation, warm-up)."""
  for call in calls.values():
    jax.block_until_ready(call(items[0]))
  fastest = {name: [] for name in calls}
  for item in items:
    times = {name: [] for name in calls}
    for _ in range(repeats):
      for name, call in calls.items():
        start = clock()
        jax.block_until_ready(call(item))
        times[name].append(1e3 * (clock() - start))
    for name in calls:
      fastest[name].append(min(times[name]))
  return {name: {"ms": statistics.median(ms), "per_sentence_ms": ms}
          for name, ms in fastest.items()}


def latency_ms(fn: Callable[[Any], Any], items: Sequence[Any], repeats: int) -> float:
  """Milliseconds of `fn(item)`, one item a call: after an untimed call on the first item, the
  fastest of `repeats` calls per item, the median over `items` (`interleaved_latency_ms` of one
  setting)."""
  return interleaved_latency_ms({"": fn}, items, repeats)[""]["ms"]


def time_compiled(compiled: Callable, args: Tuple, repeats: int, min_repeats: int,
                  max_seconds: float) -> Dict[str, Any]:
  """`time_compiled_interleaved` of one program."""
  return time_compiled_interleaved([(compiled, args)], repeats, min_repeats, max_seconds)[0]


def time_compiled_interleaved(programs: Sequence[Tuple[Callable, Tuple]], repeats: int,
                              min_repeats: int, max_seconds: float) -> List[Dict[str, Any]]:
  """Programs (compiled, args) timed in turn: a warm-up call of each, then rounds of one timed
  call (blocked on) of every program, until `repeats` rounds, or until `max_seconds` per
  program have passed once `min_repeats` rounds are done, so that a drift of this machine's
  speed reaches every program alike. A warm-up is untimed, except for calls longer than
  `max_seconds`, where it counts as the program's first repeat: compilation is already done
  (ahead of time) and first-call allocations are then a small part of the call.
  Returns per program latency_ms_p50, latency_ms_p90, latency_ms_min (the fastest call),
  repeats, warmup_timed."""
  times = []
  for compiled, args in programs:
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    first = time.perf_counter() - start
    times.append([first] if first > max_seconds else [])
  warm = [bool(t) for t in times]
  start = time.perf_counter()
  budget = max_seconds * len(programs)
  while min(len(t) for t in times) < repeats:
    if min(len(t) for t in times) >= min_repeats and time.perf_counter() - start > budget:
      break
    for (compiled, args), program_times in zip(programs, times):
      if len(program_times) < repeats:
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        program_times.append(time.perf_counter() - t0)
  out = []
  for program_times, warmup_timed in zip(times, warm):
    times_ms = np.asarray(program_times) * 1e3
    out.append({"latency_ms_p50": float(np.median(times_ms)),
                "latency_ms_p90": float(np.percentile(times_ms, 90)),
                "latency_ms_min": float(np.min(times_ms)),
                "repeats": len(program_times), "warmup_timed": warmup_timed})
  return out


def matmul_flop_rate(size: int = 1024, repeats: int = 20) -> float:
  """This machine's dense float32 matmul rate, FLOP/s: [size, size] x [size, size], from the
  fastest call (the attainable rate of a roofline; medians move between runs on a shared
  machine)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  x = jnp.ones((size, size), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  return 2 * size ** 3 / min(wall_seconds(lambda: f(x), repeats))


def memory_bandwidth(megabytes: int = 256, repeats: int = 10) -> float:
  """This machine's memory read bandwidth, bytes/s: a float32 array of `megabytes`, larger than
  any cache, summed (read once; writing a new array of that size measures page faults)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  x = jnp.ones((megabytes * 2 ** 18,), jnp.float32)
  f = jax.jit(jnp.sum)
  return x.nbytes / min(wall_seconds(lambda: f(x), repeats))
