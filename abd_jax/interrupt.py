"""Ctrl-C and SIGTERM as a `KeyboardInterrupt` that is never lost.

Python raises KeyboardInterrupt wherever the main thread happens to be. Inside a garbage
collector callback or a `__del__` (JAX runs one on every collection) it is printed as
"Exception ignored" and dropped, and the run goes on. The handler here remembers the
signal, raises at once unless it landed in such a place, and `check()` (called by the
training loop at every host sync) raises it again if it was dropped.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Iterator

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Frames whose exceptions Python drops: raising there would lose the interrupt.
_SWALLOWING = ('__del__', '_xla_gc_callback')
_received: str | None = None


def _handler(signum, frame) -> None:
  global _received
  _received = signal.Signals(signum).name
  if frame is None or frame.f_code.co_name not in _SWALLOWING:
    raise KeyboardInterrupt(_received)


def received() -> str | None:
  """The name of the signal received inside `handled()` ('SIGINT', 'SIGTERM'), or None."""
  return _received


def check() -> None:
  """Raises the KeyboardInterrupt of a signal received (and possibly dropped) earlier."""
  if _received is not None:
    raise KeyboardInterrupt(_received)


@contextlib.contextmanager
def handled() -> Iterator[None]:
  """Within the block, SIGINT and SIGTERM raise KeyboardInterrupt(signal name)."""
  global _received
  _received = None
  previous = {s: signal.signal(s, _handler) for s in _SIGNALS}
  try:
    yield
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
