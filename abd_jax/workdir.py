"""The run directory: checks its path, locks it, claims it for a config, refuses one that
holds a different run.

A workdir holds `config.json`, `metrics.jsonl`, `results.json`, `checkpoints/` and figures.
Rerunning the same config resumes; a different config is refused unless `overwrite`,
which deletes the old run first. Fields under `log` (console output) and `distributed`
(how the job is launched) are not compared. While a run works in it, the workdir is
locked (`.lock`, an exclusive `flock` that the kernel releases when the process dies, so a
killed run never leaves a stale lock); a second process on the same workdir is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
from typing import Any, Callable, Iterator

try:
  import fcntl
except ImportError:  # Windows: no advisory locks; runs are not protected from each other
  fcntl = None

# How a run is shown and launched (each process of a job has its own process_id), not
# what it computes.
IGNORED_SECTIONS = ('log', 'distributed')
LOCK = '.lock'
# A run refused after some of its phases trained leaves this in place of its config.json
# (`hand_back`): the corrected command claims the workdir and reuses those phases.
REFUSED = 'refused.json'


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


def check_path(workdir: str, flag: str = '--workdir') -> None:
  """Raises WorkdirError when `workdir` cannot be a run directory: empty, a file, under a
  file, or not creatable / not writable. Writes nothing. In a job of several processes only
  process 0 tries the path (another's probe, created and removed, would race with its own)
  and every process raises its refusal."""
  parallel = sys.modules.get('abd_jax.parallel')  # imported once JAX is configured
  if parallel is None or not parallel.in_job():
    return _check_path(workdir, flag)
  problem = None
  if parallel.is_writer():
    try:
      _check_path(workdir, flag)
    except WorkdirError as e:
      problem = str(e)
  if parallel.agree(problem is not None):
    raise WorkdirError(problem or f'{flag}={workdir} cannot be used: see process 0')


def _check_path(workdir: str, flag: str) -> None:
  if not workdir or not workdir.strip():
    raise WorkdirError(f'{flag} is empty: give the directory the run should use, e.g. '
                       f'{flag}=runs/quickstart')
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f'{flag}={workdir} is a file, not a directory: give another path')
  existing = os.path.abspath(workdir)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise WorkdirError(f'{flag}={workdir} lies under the file {existing}: give another path')
  # Tried, not predicted from permission bits: root, read-only mounts and /proc differ.
  target = os.path.abspath(workdir)
  try:
    if existing == target:
      tempfile.TemporaryFile(dir=target).close()
    else:
      # Tolerant of another process probing the same path: a job's processes reach the
      # command line's check together, before they are connected.
      os.makedirs(target, exist_ok=True)
      while target != existing:  # leave no trace of the probe
        with contextlib.suppress(OSError):
          os.rmdir(target)
        target = os.path.dirname(target)
  except OSError as e:
    what = 'is not writable' if existing == os.path.abspath(workdir) else 'cannot be created'
    raise WorkdirError(f'{flag}={workdir} {what} ({e.strerror}): give a path you can '
                       'write to') from None


def _entries(workdir: str) -> list[str]:
  return [e for e in os.listdir(workdir) if e != LOCK] if os.path.isdir(workdir) else []


def _clear(workdir: str) -> None:
  """Deletes everything in `workdir` but the lock file (which this process may hold)."""
  for entry in _entries(workdir):
    path = os.path.join(workdir, entry)
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)
    else:
      os.remove(path)


def problem(workdir: str, config: dict, marker: str = 'config.json',
            stored: Callable[[Any], dict] = lambda saved: saved, what: str = 'run') -> str | None:
  """Why `workdir` cannot hold this `config` (None: empty or the same run): not a workdir
  of this library, a damaged `marker` file, or another config. Writes nothing."""
  if not _entries(workdir) or _handed_back(workdir, marker):
    return None
  path = os.path.join(workdir, marker)
  if not os.path.exists(path):
    why = f'{workdir} is not empty and holds no {marker}, so it is not a {what} of this library'
    if marker != 'config.json' and os.path.exists(os.path.join(workdir, 'config.json')):
      why += ' (it holds a single run)'
    return why
  try:
    saved = stored(read_json(path))
    if not isinstance(saved, dict):
      raise ValueError(f'holds a JSON {type(saved).__name__}, not an object')
  except (OSError, ValueError, UnicodeDecodeError, KeyError, TypeError) as e:
    return (f'{path} is damaged ({" ".join(str(e).split())[:120]}), so it is unknown which '
            f'config this {what} holds')
  diffs = config_differences(saved, config)
  if diffs:
    shown = '; '.join(diffs[:8]) + (f'; and {len(diffs) - 8} more' if len(diffs) > 8 else '')
    return f'{workdir} holds a {what} of a different config ({shown})'
  return None


def inspect(workdir: str, config: dict, overwrite: bool, marker: str = 'config.json',
            stored: Callable[[Any], dict] = lambda saved: saved, what: str = 'run') -> bool:
  """Whether `workdir` holds this `config` already (a resume); writes nothing. Raises
  WorkdirError when it holds something else and not `overwrite`, or something that is not
  a workdir of this library at all (`overwrite` never deletes those)."""
  why = problem(workdir, config, marker, stored, what)
  if why is None:
    return bool(_entries(workdir)) and not overwrite and not _handed_back(workdir, marker)
  if not overwrite:
    raise WorkdirError(f'{why}. Use another --workdir, or pass --overwrite to delete it '
                       'and start again.')
  if not any(os.path.exists(os.path.join(workdir, m)) for m in (marker, 'config.json')):
    raise WorkdirError(f'{why}; --overwrite deletes only workdirs of this library. '
                       'Use another --workdir.')
  return False


def claim(workdir: str, config: dict, overwrite: bool, marker: str = 'config.json',
          stored: Callable[[Any], dict] = lambda saved: saved, what: str = 'run') -> bool:
  """Checks that `workdir` is empty or holds this `config` (read from its `marker` file by
  `stored`). Returns True when it does (a resume); with `overwrite` deletes what it holds
  (also the same run, finished or not) and returns False; raises WorkdirError for anything
  else. `what` names the kind of workdir in messages."""
  if inspect(workdir, config, overwrite, marker, stored, what):
    return True
  if overwrite:
    _clear(workdir)
  os.makedirs(workdir, exist_ok=True)
  return False


@contextlib.contextmanager
def locked(workdir: str, enabled: bool = True) -> Iterator[None]:
  """Holds `workdir`'s exclusive lock (creating the directory) for the block. A second
  holder, in this process or another, gets a WorkdirError naming the holder's PID."""
  if not enabled or fcntl is None:
    yield
    return
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      holder = os.pread(fd, 200, 0).decode(errors='replace').strip() or 'unknown'
      raise WorkdirError(f'{workdir} is in use by another run (process {holder}); wait for it '
                         'to finish or stop it (the same command resumes a stopped run), or '
                         'use another --workdir') from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f'{os.getpid()} on {socket.gethostname()}\n'.encode(), 0)
    yield
  finally:
    os.close(fd)  # closing the only descriptor releases the flock


def undo_fresh(workdir: str, created: bool) -> bool:
  """Leaves the workdir of a fresh run that was refused (a config error found after the
  claim) as the run found it, so the corrected command needs no --overwrite: deletes what
  the run wrote, and the directory when the run created it. Does nothing (returns False)
  once anything has trained there (a `checkpoints/` folder anywhere in it)."""
  if not os.path.isdir(workdir):
    return True
  for _, dirs, _ in os.walk(workdir):
    if 'checkpoints' in dirs:
      return False
  _clear(workdir)
  with contextlib.suppress(FileNotFoundError):
    os.remove(os.path.join(workdir, LOCK))
  if created:
    with contextlib.suppress(OSError):
      os.rmdir(workdir)
  return True


def hand_back(workdir: str, created: bool, resumed: bool, error: str) -> None:
  """Leaves the workdir of a run refused after its claim (a config error found late) so
  that the corrected command needs no --overwrite. Nothing trained there and not resumed:
  `undo_fresh`. Phases trained but not the top level: its config.json becomes refused.json
  (with the error) and its files (detection, figures, manifest: made with the refused
  config) are deleted; the phases' run directories stay, and a later run reuses each one
  whose config is its phase's (`subrun.run_once` names any other). Nothing changes once
  the top level has trained (its checkpoints/ or results.json)."""
  if (not resumed and undo_fresh(workdir, created)) or not os.path.isdir(workdir):
    return
  if any(os.path.exists(os.path.join(workdir, n)) for n in ('checkpoints', 'results.json')):
    return
  config_path = os.path.join(workdir, 'config.json')
  saved, _ = read_object(config_path) if os.path.exists(config_path) else (None, None)
  # Written first: a kill before config.json goes leaves an ordinary run, not a lost one.
  write_json(os.path.join(workdir, REFUSED), {'config': saved, 'error': error})
  for entry in _entries(workdir):
    path = os.path.join(workdir, entry)
    if entry != REFUSED and not os.path.isdir(path):
      os.remove(path)


def _handed_back(workdir: str, marker: str) -> bool:
  """A run's workdir left by `hand_back`: any config may claim it."""
  return (marker == 'config.json' and os.path.exists(os.path.join(workdir, REFUSED))
          and not os.path.exists(os.path.join(workdir, marker)))


def prepare(workdir: str, config: dict, overwrite: bool) -> bool:
  """Makes `workdir` ready for `config`. Returns True when an earlier run is resumed."""
  if claim(workdir, config, overwrite):
    return True
  write_json(os.path.join(workdir, 'config.json'), config)
  with contextlib.suppress(FileNotFoundError):  # claimed: no longer handed back
    os.remove(os.path.join(workdir, REFUSED))
  return False


def write_json(path: str, obj: Any) -> None:
  """Atomic write: a kill never leaves half a file."""
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=2, sort_keys=True)
    f.write('\n')
  os.replace(tmp, path)


def read_object(path: str) -> tuple[dict | None, str | None]:
  """(the JSON object in `path`, None), or (None, why it cannot be used: unreadable, not
  an object, or empty) — for files a damaged disk or a hand edit may have spoiled."""
  try:
    value = read_json(path)
  except (OSError, ValueError, UnicodeDecodeError) as e:
    return None, f'cannot be read ({" ".join(str(e).split())[:120]})'
  if not isinstance(value, dict):
    return None, f'holds a JSON {type(value).__name__}, not an object'
  if not value:
    return None, 'is empty'
  return value, None


def read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)
