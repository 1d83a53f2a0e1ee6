"""The run directory: claims it for a config, refuses one that holds a different run.

A workdir holds `config.json`, `metrics.jsonl`, `results.json`, `checkpoints/` and figures.
Rerunning the same config resumes; a different config is refused unless `overwrite`,
which deletes the old run first. Fields under `log` only change console output and are
not compared.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

IGNORED_SECTIONS = ('log',)


class WorkdirError(RuntimeError):
  """The workdir holds something this run must not overwrite."""


def _flatten(d: dict, prefix: str = '') -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    key = f'{prefix}{k}'
    if isinstance(v, dict):
      out.update(_flatten(v, key + '.'))
    else:
      out[key] = v
  return out


def config_differences(old: dict, new: dict) -> list[str]:
  a = {k: v for k, v in _flatten(old).items() if k.split('.')[0] not in IGNORED_SECTIONS}
  b = {k: v for k, v in _flatten(new).items() if k.split('.')[0] not in IGNORED_SECTIONS}
  return [f'{k}: {a.get(k, "<absent>")!r} -> {b.get(k, "<absent>")!r}'
          for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def prepare(workdir: str, config: dict, overwrite: bool) -> bool:
  """Makes `workdir` ready for `config`. Returns True when an earlier run is resumed."""
  path = os.path.join(workdir, 'config.json')
  if os.path.isdir(workdir) and os.listdir(workdir):
    problem = None
    if not os.path.exists(path):
      problem = f'{workdir} is not empty and holds no config.json, so it is not a run of this library'
    else:
      with open(path) as f:
        diffs = config_differences(json.load(f), config)
      if diffs:
        shown = '; '.join(diffs[:8]) + (f'; and {len(diffs) - 8} more' if len(diffs) > 8 else '')
        problem = f'{workdir} holds a run of a different config ({shown})'
    if problem is None:
      return True
    if not overwrite:
      raise WorkdirError(f'{problem}. Use another --workdir, or pass --overwrite to delete it '
                         'and start again.')
    shutil.rmtree(workdir)
  os.makedirs(workdir, exist_ok=True)
  write_json(path, config)
  return False


def write_json(path: str, obj: Any) -> None:
  """Atomic write: a kill never leaves half a file."""
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=2, sort_keys=True)
    f.write('\n')
  os.replace(tmp, path)


def read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)
