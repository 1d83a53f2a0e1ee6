"""`metrics.jsonl`: one JSON object per evaluation, appended and flushed at once so a
killed run keeps every line it wrote."""

from __future__ import annotations

import json
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
    if not os.path.exists(self.path):
      return []
    with open(self.path) as f:
      return [json.loads(line) for line in f if line.strip()]

  def truncate_after(self, epoch: int) -> None:
    """Drops lines of epochs > `epoch` — those a resumed run is about to redo."""
    if not self.enabled:
      return
    kept = [r for r in self.read() if r.get('epoch', 0) <= epoch]
    with open(self.path, 'w') as f:
      f.writelines(json.dumps(r, sort_keys=True) + '\n' for r in kept)
