"""Console progress: a bar with images/s and ETA, and the final result table."""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Mapping

from tqdm.auto import tqdm

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


class Progress:
  """Counts trained images. Updated only when the host already synchronized, so the rate
  is real throughput, not dispatch speed."""

  def __init__(self, total_images: int, done_images: int, enabled: bool, desc: str = 'train'):
    self._bar = tqdm(total=total_images, initial=done_images, unit='img', unit_scale=True,
                     desc=desc, disable=not enabled, dynamic_ncols=True, file=sys.stderr,
                     smoothing=0.3, leave=not _NESTED, position=1 if _NESTED else None)

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
