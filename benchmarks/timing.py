"""Interleaved timing shared by the benchmarks that compare jitted functions side by side."""

import statistics
import time
from typing import Any, Callable

import jax


def interleaved_medians(fns: dict[str, Callable[[int], Any]], rounds: int,
                        reps: int) -> dict[str, float]:
  """Median seconds per call of each `fn(i)` (i the repetition, e.g. to vary a key).

  Runs `rounds` rounds that each call every function `reps` times in turn, so that a
  change in machine load hits all of them alike. Call each once beforehand to compile.
  """
  times = {name: [] for name in fns}
  for _ in range(rounds):
    for name, fn in fns.items():
      for i in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(i))
        times[name].append(time.perf_counter() - t0)
  return {name: statistics.median(t) for name, t in times.items()}
