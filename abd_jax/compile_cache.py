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
"""

from __future__ import annotations

import hashlib
import os
import platform

ENV = 'ABD_JAX_COMPILATION_CACHE'
_OFF = ('', '0', 'off', 'false', 'no', 'none')
# Finite, so that JAX guards every read and write with a file lock: processes started
# together (a sweep's points, a job's processes, test workers) never read a half-written
# entry. Least recently used entries go first.
MAX_BYTES = 4 << 30


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
  jax.config.update('jax_compilation_cache_max_size', MAX_BYTES)
  return path
