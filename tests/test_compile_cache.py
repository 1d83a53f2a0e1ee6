"""The command lines' persistent compilation cache: where it goes, how it is turned off, and
that a run which loads its programs from it gives the results of one that compiles them."""

import os
import subprocess
import time

import pytest

from abd_jax import compile_cache
from cli import REPO, cli_command, cli_env, read_json


def test_the_environment_chooses_the_folder_or_turns_it_off(monkeypatch, tmp_path):
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
  monkeypatch.delenv(compile_cache.ENV)
  assert compile_cache.chosen_dir() == os.path.join(tmp_path, 'abd_jax', 'xla',
                                                    compile_cache.machine())
  monkeypatch.setenv(compile_cache.ENV, str(tmp_path / 'mine'))
  assert compile_cache.chosen_dir() == str(tmp_path / 'mine')
  for off in ('off', 'OFF', '0', '', 'none'):
    monkeypatch.setenv(compile_cache.ENV, off)
    assert compile_cache.chosen_dir() is None


def test_the_machine_name_is_stable_and_names_the_architecture():
  assert compile_cache.machine() == compile_cache.machine()
  assert compile_cache.machine().count('-') >= 1 and len(compile_cache.machine()) > 9


def _run(workdir, quiet=True, **env):
  proc = subprocess.run(
      cli_command(workdir, '--config.log.progress=false', config='configs/quickstart.py:digits,smoke'),
      cwd=REPO, env=cli_env(**env), capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  if quiet:
    assert proc.stderr.strip() == '', proc.stderr[-3000:]
  return read_json(workdir / 'results.json')


def _entries(folder):
  return sorted(f for f in os.listdir(folder) if f.endswith('-cache')) if os.path.isdir(folder) else []


@pytest.mark.slow
def test_a_run_from_the_cache_equals_a_compiled_one_and_off_writes_nothing(tmp_path):
  cache, home = tmp_path / 'cache', tmp_path / 'home'
  cold = _run(tmp_path / 'cold', ABD_JAX_COMPILATION_CACHE=str(cache))
  written = _entries(cache)
  assert len(written) >= 3  # the train step, the evaluation, the attack at least
  warm = _run(tmp_path / 'warm', ABD_JAX_COMPILATION_CACHE=str(cache))
  assert _entries(cache) == written  # every program was found: nothing new compiled
  # (A new XDG_CACHE_HOME also makes matplotlib log that it builds its font cache there.)
  off = _run(tmp_path / 'off', quiet=False, ABD_JAX_COMPILATION_CACHE='off',
             XDG_CACHE_HOME=str(home))
  assert not (home / 'abd_jax').exists()
  assert cold == warm == off


def test_a_folder_that_cannot_be_used_is_one_line_on_stdout_and_no_cache(monkeypatch, tmp_path,
                                                                          capsys):
  blocker = tmp_path / 'a_file'
  blocker.write_text('')
  monkeypatch.setenv(compile_cache.ENV, str(blocker / 'cache'))
  monkeypatch.delenv('JAX_COMPILATION_CACHE_DIR', raising=False)
  assert compile_cache.enable() is None
  out, err = capsys.readouterr()
  assert err == '' and out.count('\n') == 1
  assert f'the compilation cache folder {blocker / "cache"} cannot be used' in out


def test_jax_stores_its_programs_through_the_atomic_cache(tmp_path):
  """conftest.py turned the cache on: JAX must use `AtomicFileCache` (a JAX release that
  moves its internals would silently fall back to its own, slower file cache)."""
  import jax
  import jax.numpy as jnp
  from jax._src import compilation_cache as jax_cache

  assert isinstance(jax_cache._cache, compile_cache.AtomicFileCache)
  folder = os.environ[compile_cache.ENV]
  before = set(_entries(folder))
  n = int.from_bytes(os.urandom(2), 'little') + 3  # a shape no other test compiles
  jax.jit(lambda x: jnp.cumsum(x) * 3.0)(jnp.ones(n)).block_until_ready()
  assert len(set(_entries(folder)) - before) >= 1
  assert not [f for f in os.listdir(folder) if f.startswith('.tmp-')]


def test_atomic_cache_writes_whole_entries_once_and_marks_reads(tmp_path):
  cache = compile_cache.AtomicFileCache(str(tmp_path))
  assert cache.get('k') is None
  cache.put('k', b'first')
  cache.put('k', b'second')  # a key is written once: a program has one compilation
  assert cache.get('k') == b'first'
  assert sorted(os.listdir(tmp_path)) == ['k-cache']
  os.utime(tmp_path / 'k-cache', (1, 1))
  cache.get('k')
  assert os.path.getmtime(tmp_path / 'k-cache') > 1  # a read marks the entry used


def test_trim_drops_least_recently_used_entries_and_stale_temporaries(tmp_path):
  for i, age in enumerate([50, 40, 30, 20, 10]):  # seconds ago: entry 0 is the oldest
    path = tmp_path / f'e{i}-cache'
    path.write_bytes(b'x' * 100)
    os.utime(path, (time.time() - age,) * 2)
  (tmp_path / 'e0-atime').write_bytes(b'12345678')  # JAX's own cache's companion file
  stale, fresh = tmp_path / '.tmp-old', tmp_path / '.tmp-new'
  stale.write_bytes(b'x')
  fresh.write_bytes(b'x')
  os.utime(stale, (time.time() - 7200,) * 2)
  compile_cache.trim(str(tmp_path), max_bytes=600)  # 500 bytes: under the limit, kept
  assert len(_entries(tmp_path)) == 5 and not stale.exists() and fresh.exists()
  compile_cache.trim(str(tmp_path), max_bytes=400)  # over: down to 3/4 of 400 = 300
  assert _entries(tmp_path) == ['e2-cache', 'e3-cache', 'e4-cache']
  assert not (tmp_path / 'e0-atime').exists()
