"""Multi-stage jobs that resume: `padir demo` and `benchmarks/multi30k.py`.

A job is an ordered list of named stages, each with a wall-time budget (what it is expected to
take on 2 quiet CPU cores). `WORKDIR/stages.json` records every finished stage: its wall time,
this process's CPU time, its budget and what the stage reported (steps, pairs, ...). Re-running
the job with the same workdir skips the finished stages; a stage interrupted half-way is run
again, and resumes from what it wrote itself (a training from its newest checkpoint, a
distillation from its finished shards).

  stages = pipeline.Stages(workdir, {"teacher": 780, "distill": 60, "evaluate": 90})
  stages.run("teacher", train_teacher)              # skipped if stages.json has it
  stages.run("distill", lambda: {"pairs": distill()})  # a returned dict goes into the record
"""
import logging
import os
import time
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from padir import files
from padir import reporting

logger = logging.getLogger(__name__)

STAGES_FILE = "stages.json"


class Stages:
  """The finished stages of a workdir (`stages.json`) and the timing of this run's.

  Args:
    workdir: the job's directory (created if missing).
    budgets_s: expected wall seconds of each stage on 2 quiet CPU cores, in the stages' order.
  """

  def __init__(self, workdir: str, budgets_s: Mapping[str, float]):
    os.makedirs(workdir, exist_ok=True)
    self._path = os.path.join(workdir, STAGES_FILE)
    self._budgets = dict(budgets_s)
    self.finished: Dict[str, Dict[str, Any]] = files.read_json(self._path) or {}
    self._start = time.time()

  @property
  def names(self) -> Tuple[str, ...]:
    return tuple(self._budgets)

  def done(self, stage: str) -> bool:
    return stage in self.finished

  def all_done(self) -> bool:
    return all(self.done(stage) for stage in self._budgets)

  def start(self, stage: str) -> Tuple[float, float]:
    """Logs the stage's start (its budget, the time elapsed and about what is left); returns the
    (wall, CPU) clock readings that `finish` takes."""
    index = self.names.index(stage) + 1
    left = sum(budget for name, budget in list(self._budgets.items())[index - 1:]
               if not self.done(name))
    logger.info("stage %d/%d %s (budget %s; elapsed %s, about %s left)", index, len(self.names),
                stage, reporting.clock(self._budgets[stage]),
                reporting.clock(time.time() - self._start), reporting.clock(left))
    return time.time(), time.process_time()

  def finish(self, stage: str, started: Tuple[float, float], **record) -> None:
    """Records the stage's wall time and this process's CPU time (on a loaded machine, CPU
    seconds / cores is what the stage would take alone) in stages.json."""
    wall, cpu = time.time() - started[0], time.process_time() - started[1]
    budget = self._budgets[stage]
    self.finished[stage] = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "budget_s": budget,
                            **record}
    files.write_json(self._path, self.finished)
    log = logger.warning if wall > budget else logger.info
    log("stage %s done in %s, %.0f CPU seconds (budget %s)", stage, reporting.clock(wall), cpu,
        reporting.clock(budget))

  def reuse(self, stage: str) -> None:
    logger.info("stage %d/%d %s: finished in an earlier run (%s), reused",
                self.names.index(stage) + 1, len(self.names), stage,
                reporting.clock(self.finished[stage]["wall_s"]))

  def run(self, stage: str, fn: Callable[[], Optional[Mapping[str, Any]]]) -> bool:
    """Runs `fn` as `stage` unless it finished earlier (then logs the reuse); `fn`'s returned
    mapping (if any) goes into the stage's record. Returns whether it ran."""
    if self.done(stage):
      self.reuse(stage)
      return False
    started = self.start(stage)
    self.finish(stage, started, **(fn() or {}))
    return True
