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
from typing import Any, Callable

IGNORED_SECTIONS = ('log',)


class WorkdirError(RuntimeError):
  """The workdir holds something this run must not overwrite."""


def flatten_dict(d: dict, prefix: str = '') -> dict[str, Any]:
  """{'a': {'b': 1}} -> {'a.b': 1}: the dotted field names of a config dict."""
  out = {}
  for k, v in d.items():
    key = f'{prefix}{k}'
    if isinstance(v, dict):
      out.update(flatten_dict(v, key + '.'))
    else:
      out[key] = v
  return out


def config_differences(old: dict, new: dict) -> list[str]:
  a = {k: v for k, v in flatten_dict(old).items() if k.split('.')[0] not in IGNORED_SECTIONS}
  b = {k: v for k, v in flatten_dict(new).items() if k.split('.')[0] not in IGNORED_SECTIONS}
  return [f'{k}: {a.get(k, "<absent>")!r} -> {b.get(k, "<absent>")!r}'
          for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def claim(workdir: str, config: dict, overwrite: bool, marker: str = 'config.json',
          stored: Callable[[Any], dict] = lambda saved: saved, what: str = 'run') -> bool:
  """Checks that `workdir` is empty or holds this `config` (read from its `marker` file by
  `stored`). Returns True when it does (a resume); deletes it when `overwrite`; raises
  WorkdirError for anything else. `what` names the kind of workdir in messages."""
  path = os.path.join(workdir, marker)
  if os.path.isdir(workdir) and os.listdir(workdir):
    problem = None
    if not os.path.exists(path):
      problem = f'{workdir} is not empty and holds no {marker}, so it is not a {what} of this library'
      if marker != 'config.json' and os.path.exists(os.path.join(workdir, 'config.json')):
        problem += ' (it holds a single run)'
    else:
      diffs = config_differences(stored(read_json(path)), config)
      if diffs:
        shown = '; '.join(diffs[:8]) + (f'; and {len(diffs) - 8} more' if len(diffs) > 8 else '')
        problem = f'{workdir} holds a {what} of a different config ({shown})'
    if problem is None:
      return True
    if not overwrite:
      raise WorkdirError(f'{problem}. Use another --workdir, or pass --overwrite to delete it '
                         'and start again.')
    shutil.rmtree(workdir)
  os.makedirs(workdir, exist_ok=True)
  return False


def prepare(workdir: str, config: dict, overwrite: bool) -> bool:
  """Makes `workdir` ready for `config`. Returns True when an earlier run is resumed."""
  if claim(workdir, config, overwrite):
    return True
  write_json(os.path.join(workdir, 'config.json'), config)
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
