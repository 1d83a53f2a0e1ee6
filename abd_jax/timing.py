"""Where the wall time of a process goes: named phases (data loading, poisoning, training)
and XLA compilation, accumulated per process.

    with timing.phase('poison'):
      ...
    timing.snapshot()   # {'data': 0.4, 'poison': 1.2, 'train': 30.1, 'compile': 6.3}

Compilation is measured by JAX itself (its monitoring events for tracing, lowering and
backend compilation) and overlaps the phases it happens in. Timings are never part of a
run's results: they differ from one machine and one run to the next.
"""

from __future__ import annotations

import collections
import contextlib
import time

import jax

_TOTALS: collections.Counter = collections.Counter()
# JAX's duration events of turning a function into an executable.
_COMPILE_EVENTS = ('/jax/core/compile/jaxpr_trace_duration',
                   '/jax/core/compile/jaxpr_to_mlir_module_duration',
                   '/jax/core/compile/backend_compile_duration')
_listening = False


def _on_duration(event: str, seconds: float, **_) -> None:
  if event in _COMPILE_EVENTS:
    _TOTALS['compile'] += seconds


def _listen() -> None:
  global _listening
  if not _listening:
    jax.monitoring.register_event_duration_secs_listener(_on_duration)
    _listening = True


@contextlib.contextmanager
def phase(name: str):
  """Adds the wall time of the block to phase `name`."""
  _listen()
  start = time.perf_counter()
  try:
    yield
  finally:
    _TOTALS[name] += time.perf_counter() - start


def snapshot() -> dict[str, float]:
  """Seconds per phase so far in this process, and 'compile'."""
  _listen()
  return {k: round(v, 3) for k, v in _TOTALS.items()}


def reset() -> None:
  _listen()
  _TOTALS.clear()
