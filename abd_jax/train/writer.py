"""`metrics.jsonl`: one JSON object per evaluation, appended and flushed at once so a
killed run keeps every line it wrote.

Reading is forgiving: a line that is not a JSON object (a kill in mid-write, a full disk,
a hand edit, binary garbage) is dropped with one warning naming the file and the count;
a resumed run rewrites the file without them (`truncate_after`)."""

from __future__ import annotations

import json
import logging
import os
from typing import Any


class JsonlWriter:

  def __init__(self, path: str, enabled: bool = True):
    self.path, self.enabled = path, enabled

  def write(self, record: dict[str, Any]) -> None:
    if not self.enabled:
      return
    with open(self.path, 'a') as f:
      f.write(json.dumps(record, sort_keys=True) + '\n')

  def read(self) -> list[dict[str, Any]]:
    """The readable records, in order (unreadable lines dropped, with one warning)."""
    if not os.path.exists(self.path):
      return []
    with open(self.path, 'rb') as f:
      lines = f.read().split(b'\n')
    records, dropped = [], 0
    for raw in lines:
      if not raw.strip():
        continue
      try:
        record = json.loads(raw.decode('utf-8'))
      except (UnicodeDecodeError, ValueError):
        record = None
      if isinstance(record, dict):
        records.append(record)
      else:
        dropped += 1
    if dropped:
      logging.warning('%s: dropped %d unreadable line%s (not a JSON object; a damaged or '
                      'interrupted write)', self.path, dropped, '' if dropped == 1 else 's')
    return records

  def truncate_after(self, epoch: int) -> None:
    """Drops lines of epochs > `epoch` — those a resumed run is about to redo — and
    unreadable lines."""
    if not self.enabled:
      return
    kept = [r for r in self.read() if _epoch(r) <= epoch]
    tmp = self.path + '.tmp'
    with open(tmp, 'w') as f:
      f.writelines(json.dumps(r, sort_keys=True) + '\n' for r in kept)
    os.replace(tmp, self.path)


def _epoch(record: dict) -> float:
  value = record.get('epoch', 0)
  return value if isinstance(value, (int, float)) else float('inf')
