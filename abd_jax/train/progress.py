"""Console progress: a bar with images/s and ETA, and the final result table.

On a terminal the bar redraws in place; without one (a log file, a cluster job's output)
the same text is written as plain lines every `LINE_INTERVAL_S` seconds and at the end,
so the log is readable and does not fill with carriage returns.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any, Mapping

from tqdm.auto import tqdm

LINE_INTERVAL_S = float(os.environ.get('ABD_JAX_PROGRESS_INTERVAL', 30))

# Inside a sweep the run bars sit under the sweep's bar and vanish when done.
_NESTED = False


@contextlib.contextmanager
def nested_bars():
  """Run progress bars opened inside the block are drawn one line below an outer bar and
  removed when they close."""
  global _NESTED
  previous, _NESTED = _NESTED, True
  try:
    yield
  finally:
    _NESTED = previous


class LineProgress:
  """tqdm's interface for a stream that is not a terminal: a plain line per interval."""

  def __init__(self, total: int, initial: int = 0, unit: str = 'it', desc: str = '',
               unit_scale: bool = False, interval: float = LINE_INTERVAL_S, file=None):
    self.total, self.n, self.unit, self.desc, self.unit_scale = total, initial, unit, desc, unit_scale
    self._initial, self._interval, self._file = initial, interval, file or sys.stderr
    self._start = self._last = time.monotonic()
    self._postfix = ''
    self._written = initial

  def update(self, n: int = 1) -> None:
    self.n += n
    now = time.monotonic()
    if now - self._last >= self._interval:
      self._write(now)

  def set_postfix(self, values: Mapping[str, Any], refresh: bool = True) -> None:
    del refresh
    self._postfix = ', '.join(f'{k}={v}' for k, v in values.items())

  def _write(self, now: float) -> None:
    self._last, self._written = now, self.n
    elapsed = now - self._start
    rate = (self.n - self._initial) / elapsed if elapsed > 0 else None
    line = tqdm.format_meter(self.n, self.total, elapsed, prefix=self.desc, unit=self.unit,
                             unit_scale=self.unit_scale, rate=rate, postfix=self._postfix,
                             ncols=0, initial=self._initial)
    print(line, file=self._file, flush=True)

  def close(self) -> None:
    if self.n != self._written:
      self._write(time.monotonic())


def progress_bar(total: int, initial: int = 0, unit: str = 'it', desc: str = '',
                 enabled: bool = True, unit_scale: bool = False, **tqdm_kwargs):
  """A tqdm bar on stderr when it is a terminal, else a `LineProgress`; disabled: a bar
  that prints nothing."""
  if enabled and not sys.stderr.isatty():
    return LineProgress(total, initial, unit, desc, unit_scale)
  return tqdm(total=total, initial=initial, unit=unit, desc=desc, disable=not enabled,
              unit_scale=unit_scale, dynamic_ncols=True, file=sys.stderr, **tqdm_kwargs)


class Progress:
  """Counts trained images. Updated only when the host already synchronized, so the rate
  is real throughput, not dispatch speed."""

  def __init__(self, total_images: int, done_images: int, enabled: bool, desc: str = 'train'):
    self._bar = progress_bar(total_images, done_images, unit='img', desc=desc, enabled=enabled,
                             unit_scale=True, smoothing=0.3, leave=not _NESTED,
                             position=1 if _NESTED else None)

  def update(self, images: int, **postfix: Any) -> None:
    self._bar.update(images)
    if postfix:
      self._bar.set_postfix({k: f'{v:.4g}' if isinstance(v, float) else v
                             for k, v in postfix.items()}, refresh=False)

  def close(self) -> None:
    self._bar.close()


def format_table(results: Mapping[str, Any]) -> str:
  """Two-column text table of the scalar results."""
  rows = [(k, f'{v:.4f}' if isinstance(v, float) else str(v)) for k, v in results.items()
          if isinstance(v, (int, float, str))]
  width = max(len(k) for k, _ in rows)
  vwidth = max(len(v) for _, v in rows)
  rule = '-' * (width + vwidth + 3)
  return '\n'.join([rule] + [f'{k:<{width}} | {v:>{vwidth}}' for k, v in rows] + [rule])
