"""JAX's persistent compilation cache for the command lines.

A digits run spends most of its wall time compiling the same programs every time (the
model's PGD step, its evaluation), so the command lines keep compiled programs on disk and
a second run with the same shapes loads them instead:

    ABD_JAX_COMPILATION_CACHE=DIR   the cache folder (default: ~/.cache/abd_jax/xla/MACHINE,
                                    under $XDG_CACHE_HOME when set)
    ABD_JAX_COMPILATION_CACHE=off   no cache

JAX's own JAX_COMPILATION_CACHE_DIR, when set, wins. The cache never changes a result: a
loaded program is the program the compiler would build. The default folder is per kind of
machine (processor and its instruction-set flags), so a home directory shared by different
machines never hands one a program built for another's instructions.

The entries are stored by `AtomicFileCache`, not by JAX's own file cache: with a size
limit, JAX's takes a lock and lists the whole folder on every write (0.3 s per compiled
program once the folder holds 6,000 entries, most of a short run); without one, it writes
entries in place, so a process starting beside another (a sweep's points, a job's
processes, test workers) can read half an entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import platform
import tempfile
import time

ENV = 'ABD_JAX_COMPILATION_CACHE'
_OFF = ('', '0', 'off', 'false', 'no', 'none')
# The folder is trimmed to this size when a process turns the cache on, least recently
# used entries first.
MAX_BYTES = 4 << 30
_SUFFIX = '-cache'
_TMP_PREFIX = '.tmp-'


def machine() -> str:
  """A short name for this kind of processor: its architecture and a digest of its model
  and instruction-set flags (Linux), e.g. 'x86_64-3f09a1c2'."""
  seen = [platform.machine(), platform.processor()]
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        key = line.split(':', 1)[0].strip()
        if key in ('model name', 'flags', 'Features', 'CPU part') and line not in seen:
          seen.append(line)
  except OSError:
    pass
  return f'{platform.machine() or "cpu"}-{hashlib.sha1(repr(seen).encode()).hexdigest()[:8]}'


def default_dir() -> str:
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'abd_jax', 'xla', machine())


def chosen_dir() -> str | None:
  """The folder the environment asks for, or None when the cache is off."""
  value = os.environ.get(ENV)
  if value is None:
    return default_dir()
  return None if value.strip().lower() in _OFF else value


def enable() -> str | None:
  """Turns the cache on for this process, before its first compile; returns its folder
  (None: off, or the folder cannot be used, which only costs the time it would save and
  is said in one line on stdout: stderr is kept for errors)."""
  import jax
  path = os.environ.get('JAX_COMPILATION_CACHE_DIR') or chosen_dir()
  if path is None:
    return None
  try:
    os.makedirs(path, exist_ok=True)
    if not os.access(path, os.W_OK):
      raise PermissionError('not writable')
  except OSError as e:
    print(f'abd_jax: the compilation cache folder {path} cannot be used ({e.strerror or e}); '
          f'compiling without it ({ENV}=DIR chooses another, {ENV}=off turns it off)', flush=True)
    return None
  jax.config.update('jax_compilation_cache_dir', path)
  # Digits programs compile in well under JAX's default threshold (1 s): cache them all.
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', -1)
  trim(path, MAX_BYTES)
  _install(AtomicFileCache(path))
  return path


def _install(cache) -> None:
  """Makes `cache` JAX's persistent cache. JAX has no public hook for the storage; if its
  internals move, JAX's own file cache stays (tests/test_compile_cache.py notices)."""
  try:
    from jax._src import compilation_cache as jax_cache
    jax_cache.reset_cache()
    jax_cache._cache = cache
    jax_cache._cache_initialized = True
  except (ImportError, AttributeError):
    pass


class AtomicFileCache:
  """JAX's cache interface (`get`, `put`, `_path`) over one file per compiled program,
  `KEY-cache`, as JAX's file cache names them. A write
  goes to a temporary file renamed into place (atomic within a file system): a reader
  sees a whole entry or none, with no lock. A read marks the entry used (its mtime), for
  `trim`."""

  def __init__(self, path: str):
    self._path = pathlib.Path(path)

  def get(self, key: str) -> bytes | None:
    entry = self._path / f'{key}{_SUFFIX}'
    try:
      value = entry.read_bytes()
    except FileNotFoundError:
      return None
    with contextlib.suppress(OSError):
      os.utime(entry)
    return value

  def put(self, key: str, value: bytes) -> None:
    entry = self._path / f'{key}{_SUFFIX}'
    if entry.exists():
      return
    fd, tmp = tempfile.mkstemp(dir=self._path, prefix=_TMP_PREFIX)
    try:
      with os.fdopen(fd, 'wb') as f:
        f.write(value)
      os.replace(tmp, entry)
    except BaseException:
      with contextlib.suppress(OSError):
        os.unlink(tmp)
      raise


def trim(path: str, max_bytes: int, stale_tmp_secs: float = 3600.0) -> None:
  """Deletes the least recently used entries until the folder holds at most 3/4 of
  `max_bytes` (when it holds more than `max_bytes`), and temporary files a killed process
  left (older than `stale_tmp_secs`). One listing per process, not per write."""
  entries, total, now = [], 0, time.time()
  with contextlib.suppress(OSError), os.scandir(path) as it:
    for e in it:
      with contextlib.suppress(OSError):
        st = e.stat()
        if e.name.startswith(_TMP_PREFIX):
          if now - st.st_mtime > stale_tmp_secs:
            os.unlink(e.path)
        elif e.name.endswith(_SUFFIX):
          entries.append((st.st_mtime, st.st_size, e.path))
          total += st.st_size
  if total <= max_bytes:
    return
  for _, size, entry in sorted(entries):
    if total <= max_bytes * 3 // 4:
      break
    with contextlib.suppress(OSError):
      os.unlink(entry)
      total -= size
    with contextlib.suppress(OSError):
      os.unlink(entry[:-len(_SUFFIX)] + '-atime')  # JAX's own cache's access time
