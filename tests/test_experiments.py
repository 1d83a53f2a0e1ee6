"""The reproduction scripts in experiments/: the paper tables parse, every script's arms
build and validate for every dataset it names, and every script runs end to end on a tiny
digits grid and writes its results beside the paper's numbers."""

import glob
import os
import runpy
import subprocess
import sys

import pytest

from abd_jax.reproduce import paper as paper_lib
from abd_jax.reproduce import results as results_lib
from abd_jax.reproduce import runner
from abd_jax.reproduce.spec import DATA, sweep_config
from abd_jax.sweep import grid
from cli import REPO, cli_env

PAPERS = sorted(glob.glob(os.path.join(REPO, 'experiments', 'paper', '*.md')))
SCRIPTS = sorted(p for p in glob.glob(os.path.join(REPO, 'experiments', '*.py'))
                 if not os.path.basename(p).startswith('_') and os.path.basename(p) != 'run_all.py')


def experiment_of(path):
  return runpy.run_path(path)['EXPERIMENT']


def test_every_paper_is_represented():
  names = {os.path.basename(p).split('_')[0] for p in SCRIPTS}
  assert names >= {'iclr22', 'weng', 'gao', 'aabl'}


@pytest.mark.parametrize('path', PAPERS, ids=os.path.basename)
def test_paper_table_parses(path):
  table = paper_lib.load(path)
  assert table.rows and table.values, path
  for row in table.rows:
    assert all(row[k] for k in table.keys), f'{path}: empty key cell in {row}'
  if table.meta['units'] in ('percent', 'fraction'):
    top = 100.0 if table.meta['units'] == 'percent' else 1.0
    for row in table.rows:
      for column in table.values:
        value = paper_lib.number(row[column])
        assert value is None or column.startswith(('avg', 'mean')) or -top <= value <= top, (
            f'{path}: {column} = {row[column]} outside the {table.meta["units"]} range')


@pytest.mark.parametrize('path', SCRIPTS, ids=os.path.basename)
def test_script_arms_build_for_every_dataset(path):
  experiment = experiment_of(path)
  assert experiment.name == os.path.splitext(os.path.basename(path))[0]
  assert experiment.description, f'{path}: no docstring'
  assert set(experiment.datasets) <= set(DATA) and experiment.datasets[0] == 'digits'
  tables = runner.paper_tables(experiment)
  assert tables
  for data in experiment.datasets:
    arms = list(experiment.arms(data))
    assert arms and len({a.name for a in arms}) == len(arms), path
    for arm in arms:
      points = grid.expand(sweep_config(arm))
      assert points
      for vary in arm.vary:
        assert len({vary.label(i) for i in range(len(vary.values))}) == len(vary.values)
  # Every key column of the paper tables is given by the digits arms (or the row joins nothing).
  for arm in experiment.arms('digits'):
    given = set(arm.keys) | {v.name for v in arm.vary}
    assert any(set(t.keys) <= given for t in tables), (
        f'{path}: arm {arm.name} gives keys {sorted(given)}, no table keyed by a subset of them')


@pytest.mark.slow
@pytest.mark.parametrize('path', SCRIPTS, ids=os.path.basename)
def test_script_runs_tiny_on_digits(path, tmp_path):
  experiment = experiment_of(path)
  paths = runner.run(experiment, 'digits', str(tmp_path / 'runs'), str(tmp_path / 'out'),
                     tiny=True, verbose=False)
  rows = results_lib.read_csv(paths['csv'])
  assert rows and all(r['data'] == 'digits' for r in rows)
  assert not [r for r in rows if r.get('error')], rows
  # The first arm at test size: it reports at least one of the script's metrics per row.
  for row in rows:
    assert any(row.get(m) is not None for m in experiment.metrics), row
  text = open(paths['md'], encoding='utf-8').read()
  assert '| digits |' in text  # the runs table
  if 'cifar10' in experiment.datasets:
    assert 'not run: needs CIFAR-10' in text


@pytest.mark.slow
def test_script_command_line_resumes_and_refuses_bad_data(tmp_path):
  script = os.path.join(REPO, 'experiments', 'iclr22_fig3a.py')
  command = [sys.executable, script, '--tiny', f'--workdir={tmp_path / "runs"}',
             f'--out={tmp_path / "out"}']
  first = subprocess.run(command, cwd=REPO, env=cli_env(), capture_output=True, text=True,
                         timeout=600)
  assert first.returncode == 0, first.stderr[-3000:]
  csv_text = (tmp_path / 'out' / 'iclr22_fig3a.csv').read_text()
  again = subprocess.run(command, cwd=REPO, env=cli_env(), capture_output=True, text=True,
                         timeout=600)
  assert again.returncode == 0 and 'already holds the finished sweep' in again.stdout
  assert (tmp_path / 'out' / 'iclr22_fig3a.csv').read_text() == csv_text
  bad = subprocess.run([*command, '--data=mnist'], cwd=REPO, env=cli_env(), capture_output=True,
                       text=True, timeout=600)
  assert bad.returncode == 2 and "--data='mnist' is not allowed" in bad.stderr
