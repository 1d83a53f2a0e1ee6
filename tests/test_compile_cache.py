"""The command lines' persistent compilation cache: where it goes, how it is turned off, and
that a run which loads its programs from it gives the results of one that compiles them."""

import os
import subprocess

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
