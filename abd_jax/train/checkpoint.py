"""Orbax checkpoints of the train state, one per saved epoch (the checkpoint step is the
number of finished epochs). Storage-library failures become one `CheckpointError`.

Layout of a step folder `checkpoints/<epoch>/`:

    state/            the TrainState (orbax StandardSave)
    extra/            JSON (orbax JsonSave): {'train': [{'train_loss', 'train_acc'}, ...]},
                      the last epoch's train metrics per lane (one lane, or G stacked runs)
    abd_digest.json   size and blake2b hash of every other file of the folder, written
                      once orbax has finished the (asynchronous) save

Older checkpoints hold the state alone in `default/` and no digest; they are still read.

On resume, the newest checkpoint whose files match their digest and that restores is
used. A damaged one (a file missing, truncated or altered; or unreadable when it has no
digest) is moved to `checkpoints_damaged/<epoch>` next to `checkpoints/`, so that the
resumed run can write that epoch again, and one warning names it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import json
import logging
import os
import shutil
import sys
import warnings
from typing import Any

import jax
import orbax.checkpoint as ocp

from abd_jax.train.state import TrainState

DIGEST = 'abd_digest.json'
STATE, EXTRA, LEGACY = 'state', 'extra', 'default'
DAMAGED_SUFFIX = '_damaged'


class CheckpointError(RuntimeError):
  """A checkpoint exists but cannot be read back."""


class CheckpointDamagedError(CheckpointError):
  """A checkpoint's files are missing or differ from those its digest recorded (damage,
  not a checkpoint of another model)."""


@dataclasses.dataclass
class Restored:
  """What `restore_latest` found. `extra` is None for a fresh start and for checkpoints
  written before the train metrics were kept in them."""
  state: Any
  epoch: int
  extra: dict | None = None


def _one_line(e: BaseException) -> str:
  text = ' '.join(str(e).split())
  return f'{type(e).__name__}: {text[:200]}' if text else type(e).__name__


def _hash(path: str) -> str:
  h = hashlib.blake2b(digest_size=16)
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      h.update(block)
  return h.hexdigest()


def _files(step_dir: str) -> list[str]:
  """Paths (relative, '/'-separated) of the files of a step folder, without the digest."""
  out = []
  for root, dirs, files in os.walk(step_dir):
    dirs.sort()
    for name in sorted(files):
      rel = os.path.relpath(os.path.join(root, name), step_dir).replace(os.sep, '/')
      if rel != DIGEST and not rel.startswith(DIGEST + '.'):
        out.append(rel)
  return out


def write_digest(step_dir: str) -> None:
  """Records the size and hash of every file of a finished step folder (atomic write)."""
  record = {'version': 1, 'files': {rel: [os.path.getsize(os.path.join(step_dir, rel)),
                                          _hash(os.path.join(step_dir, rel))]
                                    for rel in _files(step_dir)}}
  path = os.path.join(step_dir, DIGEST)
  with open(path + '.tmp', 'w') as f:
    json.dump(record, f, sort_keys=True)
  os.replace(path + '.tmp', path)


def digest_problem(step_dir: str) -> str | None:
  """Why the files of a step folder do not match its digest; None when they do, or when
  it has no digest (a checkpoint written before digests, or whose writer was killed before
  it could record one: trusted if it restores). Files added later are ignored."""
  path = os.path.join(step_dir, DIGEST)
  if not os.path.isdir(step_dir):
    return 'it is not a folder'
  if not os.path.exists(path):
    return None
  try:
    with open(path, 'rb') as f:
      files = json.loads(f.read().decode('utf-8'))['files']
    files = {str(k): (int(v[0]), str(v[1])) for k, v in files.items()}
  except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
    return f'its {DIGEST} is damaged ({_one_line(e)})'
  for rel, (size, digest) in sorted(files.items()):
    full = os.path.join(step_dir, *rel.split('/'))
    if not os.path.isfile(full):
      return f'{rel} is missing'
    if os.path.getsize(full) != size:
      return f'{rel} has {os.path.getsize(full)} bytes instead of {size}'
    if _hash(full) != digest:
      return f'{rel} was altered'
  return None


def _structure_problem(step_dir: str) -> str | None:
  """What a step folder lacks of the files orbax needs to open it (checked when it has no
  digest, so that a plainly incomplete checkpoint is not handed to orbax at all)."""
  items = [n for n in (STATE, LEGACY) if os.path.isdir(os.path.join(step_dir, n))]
  if not items:
    return f'it holds no {STATE}/ folder'
  for item in items:
    needed = [os.path.join(item, '_METADATA'), os.path.join(item, 'manifest.ocdbt')]
    for name in sorted(os.listdir(os.path.join(step_dir, item))):
      if name.startswith('ocdbt.process_'):
        needed.append(os.path.join(item, name, 'manifest.ocdbt'))
    for rel in needed:
      full = os.path.join(step_dir, rel)
      if not os.path.isfile(full):
        return f'{rel} is missing'
      if os.path.getsize(full) == 0:
        return f'{rel} is empty'
  return None


_QUIET_PATHS: set[str] = set()


def _quiet_failed_read(step_dir: str) -> None:
  """Orbax (0.12) closes its event loop as soon as one read of a restore fails, while
  tensorstore finishes the others: each then reports 'Event loop is closed' through
  sys.unraisablehook, the reads that failed too report their errors there or through
  asyncio's logger ('Task exception was never retrieved'), and reads never started warn
  'coroutine ... was never awaited'. The failure itself is reported once (as a damaged
  checkpoint); from the first one on, these echoes of it are dropped, and nothing else."""
  if not _QUIET_PATHS:
    previous = sys.unraisablehook

    def hook(unraisable):
      e = unraisable.exc_value
      if isinstance(e, RuntimeError) and str(e) == 'Event loop is closed':
        return
      if _mentions_quiet_path(str(e)):
        return
      previous(unraisable)

    sys.unraisablehook = hook
    logging.getLogger('asyncio').addFilter(_asyncio_echo_filter)
    warnings.filterwarnings('ignore', message=r"coroutine '_read_array_index_and_device_put' "
                            'was never awaited', category=RuntimeWarning)
  _QUIET_PATHS.add(step_dir)
  gc.collect()  # most echoes come when the failed read's tasks are collected: now


def _mentions_quiet_path(text: str) -> bool:
  return any(path in text for path in _QUIET_PATHS)


def _asyncio_echo_filter(record: logging.LogRecord) -> bool:
  try:
    message = record.getMessage()
  except Exception:  # a record that cannot be formatted is not ours to judge
    return True
  return not _mentions_quiet_path(message)


_OPENING: set[str] = set()


class _OrbaxEchoFilter(logging.Filter):
  """Drops what orbax logs about a checkpoint folder while a Checkpointer opens or reads
  it (e.g. 'Failed to json parse Metadata file' of a damaged step): the Checkpointer
  reports a damaged checkpoint itself, once."""

  def filter(self, record: logging.LogRecord) -> bool:
    if not _OPENING or 'orbax' not in record.pathname:
      return True
    try:
      message = record.getMessage()
    except Exception:  # a record that cannot be formatted is not ours to judge
      return True
    return not any(directory in message for directory in _OPENING)


_ECHO_FILTER = _OrbaxEchoFilter()


@contextlib.contextmanager
def _orbax_echoes_dropped(directory: str):
  absl_logger = logging.getLogger('absl')
  if _ECHO_FILTER not in absl_logger.filters:
    absl_logger.addFilter(_ECHO_FILTER)
  _OPENING.add(directory)
  try:
    yield
  finally:
    _OPENING.discard(directory)


def _numeric_steps(directory: str) -> list[int]:
  if not os.path.isdir(directory):
    return []
  return sorted(int(n) for n in os.listdir(directory)
                if n.isdigit() and os.path.isdir(os.path.join(directory, n)))


def final_checkpoint_problem(directory: str, epoch: int) -> str | None:
  """Why `directory` does not hold an intact checkpoint of `epoch` as its newest one (a
  cheap check of the files against their digest; orbax is not asked). None when it does."""
  if not os.path.isdir(directory):
    return f'{directory} is missing'
  if epoch not in _numeric_steps(directory):
    return f'{directory} holds no checkpoint of epoch {epoch}'
  problem = digest_problem(os.path.join(directory, str(epoch)))
  return None if problem is None else f'the checkpoint {os.path.join(directory, str(epoch))}: {problem}'


class Checkpointer:
  """`read_only`: for reading another run's checkpoints: creates, deletes and moves nothing."""

  def __init__(self, directory: str, max_to_keep: int, read_only: bool = False):
    self.directory = os.path.abspath(directory)
    self.read_only = read_only
    if os.path.exists(self.directory) and not os.path.isdir(self.directory):
      raise CheckpointError(
          f'{self.directory} is a file, where the folder of checkpoints belongs: move or '
          'delete it and rerun (the run then trains again from its first epoch), or rerun '
          'with --overwrite to start the run again.')
    self._options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=not read_only, cleanup_tmp_directories=not read_only)
    self._undigested: list[int] = []
    self._manager = None
    self._open()

  def _open(self) -> None:
    try:
      with _orbax_echoes_dropped(self.directory):
        self._manager = ocp.CheckpointManager(self.directory, options=self._options)
    except Exception as e:  # orbax raises many types; the user needs one message
      raise CheckpointError(f'the checkpoints in {self.directory} cannot be listed '
                            f'({_one_line(e)}); move that folder away, or rerun with '
                            '--overwrite to start the run again.') from None

  def _reopen(self) -> None:
    """A new manager: the old one caches the list of steps (and may hold a failed read)."""
    self._close_manager()
    self._open()

  def _close_manager(self) -> None:
    if self._manager is not None:
      manager, self._manager = self._manager, None
      try:
        manager.close()
      except Exception:  # closing after a failed read must not hide what failed
        pass

  def latest_epoch(self) -> int | None:
    return self._manager.latest_step()

  def step_dir(self, epoch: int) -> str:
    return os.path.join(self.directory, str(epoch))

  def save(self, epoch: int, state: TrainState, extra: dict | None = None) -> None:
    """Asynchronous: returns while the write goes on; a write is visible only once complete.
    `extra` (JSON) is kept next to the state: the train metrics a resumed run needs."""
    self._finish_pending()
    items = {STATE: ocp.args.StandardSave(state)}
    if extra is not None:
      items[EXTRA] = ocp.args.JsonSave(extra)
    self._manager.save(epoch, args=ocp.args.Composite(**items))
    self._undigested.append(epoch)

  def poll(self) -> None:
    """Records the digest of a finished save without waiting for one in flight (one
    process only: waiting is collective across processes)."""
    if (self._undigested and jax.process_count() == 1
        and not self._manager.is_saving_in_progress()):
      self._finish_pending()

  def _finish_pending(self) -> None:
    """Waits for the save in flight, then records the digest of each step it finished."""
    self._manager.wait_until_finished()
    pending, self._undigested = self._undigested, []
    if jax.process_index() != 0:
      return
    for epoch in pending:
      step_dir = self.step_dir(epoch)
      if not os.path.isdir(step_dir):  # max_to_keep may have deleted it already
        continue
      try:
        write_digest(step_dir)
      except OSError as e:  # e.g. a full disk: the step stays trusted if it restores
        logging.warning('could not record the digest of the checkpoint %s (%s)', step_dir,
                        _one_line(e))

  def _restore_step(self, epoch: int, abstract) -> tuple[Any, dict | None]:
    step_dir = self.step_dir(epoch)
    if os.path.isdir(os.path.join(step_dir, LEGACY)) and not os.path.isdir(
        os.path.join(step_dir, STATE)):
      with ocp.StandardCheckpointer() as legacy:
        return legacy.restore(os.path.join(step_dir, LEGACY), abstract), None
    items = {STATE: ocp.args.StandardRestore(abstract)}
    if os.path.isdir(os.path.join(step_dir, EXTRA)):
      items[EXTRA] = ocp.args.JsonRestore()
    restored = self._manager.restore(epoch, args=ocp.args.Composite(**items))
    extra = restored[EXTRA] if EXTRA in items else None
    return restored[STATE], extra if isinstance(extra, dict) else None

  def restore_latest(self, template: TrainState, fallback: bool = True) -> Restored:
    """The newest readable checkpoint, or `template` at epoch 0 if there is none.

    `template` gives the tree structure, shapes, dtypes and shardings to restore into.
    With `fallback`, a damaged checkpoint is moved to `checkpoints_damaged/` and the one
    before it is tried (one warning names what was moved and where the run resumes);
    without, it raises CheckpointDamagedError. A checkpoint whose files are intact but that
    does not fit `template` raises CheckpointError either way.
    """
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    damaged: list[tuple[int, str, str]] = []  # (epoch, moved to, why)
    result = Restored(template, 0)
    while True:
      epoch = self.latest_epoch()
      if epoch is None:
        break
      path = self.step_dir(epoch)
      has_digest = os.path.exists(os.path.join(path, DIGEST))
      problem = digest_problem(path) if has_digest else _structure_problem(path)
      if problem is None:
        try:
          with _orbax_echoes_dropped(self.directory):
            state, extra = self._restore_step(epoch, abstract)
          result = Restored(state, epoch, extra)
          break
        except Exception as e:  # orbax/tensorstore raise many types
          _quiet_failed_read(path)
          self._reopen()
          if has_digest:  # the files are those written: not damage, another model
            raise CheckpointError(
                f'the checkpoint of epoch {epoch} at {path} cannot be read into this run '
                f'({_one_line(e)}); it was written by a different model or library version.'
                + ('' if self.read_only else
                   ' Rerun with --overwrite to start the run again.')) from None
          if not fallback or self.read_only:  # no digest: damage or another model?
            raise CheckpointError(
                f'the checkpoint of epoch {epoch} at {path} cannot be read ({_one_line(e)}): '
                'it is damaged, or was written by a different model or library '
                'version.') from None
          problem = f'it cannot be read ({_one_line(e)})'
      if not fallback or self.read_only:
        run_dir = os.path.dirname(self.directory)
        raise CheckpointDamagedError(
            f'the checkpoint of epoch {epoch} at {path} is damaged ({problem}). To write it '
            f'again, delete {os.path.join(run_dir, "results.json")} and rerun the run of '
            f'{run_dir}: it resumes from its previous checkpoint.')
      damaged.append((epoch, self._set_aside(epoch), problem))
    if damaged:
      self._warn_damaged(damaged, result.epoch)
    return result

  def _set_aside(self, epoch: int) -> str:
    """Moves a damaged step folder out of orbax's way; returns where it went."""
    root = self.directory.rstrip(os.sep) + DAMAGED_SUFFIX
    target = os.path.join(root, str(epoch))
    n = 1
    while os.path.exists(target):
      target = os.path.join(root, f'{epoch}.{n}')
      n += 1
    self._close_manager()
    if jax.process_index() == 0:
      os.makedirs(root, exist_ok=True)
      shutil.move(self.step_dir(epoch), target)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices(f'abd_jax checkpoint set aside {epoch}')
    self._open()
    return target

  def _warn_damaged(self, damaged: list[tuple[int, str, str]], resumed: int) -> None:
    where = (f'resuming from the checkpoint of epoch {resumed}' if resumed
             else 'no readable checkpoint is left: training again from the first epoch')
    what = '; '.join(f'{self.step_dir(e)} is damaged ({why}), moved to {to}'
                     for e, to, why in damaged)
    logging.warning('%s; %s.', what, where)

  def wait(self) -> None:
    self._finish_pending()

  def close(self) -> None:
    if self._manager is None:
      return
    try:
      self._finish_pending()
    finally:
      self._close_manager()
