"""A sweep owns its points and its files: a point changed or damaged behind the sweep's back
is retrained or named in one line, never reported as its cell; every damaged sweep file is
recomputed or one line, in `--report` and in reruns; `abd_jax.main` refuses to overwrite a
sweep's point and to run a sweep config; an unknown metric name is one line before
anything trains. What a user sees runs as subprocesses; the finer cases call the engine."""

import csv
import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest

from cli import REPO, cli_env, read_json
from test_reliability import assert_one_line_error

from abd_jax import config as config_lib
from abd_jax.sweep import engine, grid
from abd_jax.sweep.grid import SweepError
from abd_jax.workdir import WorkdirError

pytestmark = pytest.mark.slow

CONFIG = 'configs/sweeps/eps_alpha.py:digits'
# Two points of one epoch without PGD or robust evaluation: the cheapest finished sweep.
OVERRIDES = {'sweep.axes.eps.values': ((0.0, 0.0),), 'sweep.axes.alpha.values': (0.2, 1.0),
             'train.epochs': 1, 'perturb.name': 'none', 'model.width': 0.25,
             'eval.robust': False, 'eval.every_epochs': 1, 'log.progress': False}
GRID = tuple(f'--config.{k}={grid.flag_value(v)}' for k, v in OVERRIDES.items())
POINTS = ('eps=0_alpha=0.2', 'eps=0_alpha=1')
DAMAGED_JSON = {'truncated': b'{"config": {"seed": 0, "sw', 'random bytes': bytes(range(256)),
                'empty': b'', 'a list': b'[]', 'an empty object': b'{}'}


def sweep_cli(workdir, *args):
  return subprocess.run([sys.executable, '-m', 'abd_jax.sweep', f'--workdir={workdir}', *args],
                        cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600)


def rerun(workdir, *args):
  """The sweep's command (its first run, or a rerun)."""
  return sweep_cli(workdir, f'--config={CONFIG}', *GRID, *args)


def sweep_config():
  """The config the command line builds from CONFIG and GRID, for in-process runs."""
  config = config_lib.load_file(CONFIG)
  with config.unlocked():
    for dotted, value in OVERRIDES.items():
      *parents, leaf = dotted.split('.')
      node = config
      for part in parents:
        node = node[part]
      node[leaf] = value
  return config


def csv_rows(workdir):
  with open(workdir / 'results.csv', newline='') as f:
    return {row['point']: row for row in csv.DictReader(f)}


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
  """The finished sweep, made by its command line; tests damage copies of it only."""
  workdir = tmp_path_factory.mktemp('sweep') / 'finished'
  proc = rerun(workdir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir


@pytest.fixture
def sweep(finished, tmp_path):
  """A private copy of the finished sweep."""
  copy = tmp_path / 'sweep'
  shutil.copytree(finished, copy)
  return copy


def point(workdir, name, file):
  return workdir / 'points' / name / file


def test_in_process_config_is_the_command_lines(finished):
  """Guards the in-process tests below: they must hit the sweep the CLI made."""
  stored = read_json(finished / 'sweep.json')['config']
  assert config_lib.to_dict(sweep_config()) == stored


# ------------------------------------------------------------------------ sweep.json


def test_report_on_a_damaged_sweep_json_is_one_line(sweep):
  for content in DAMAGED_JSON.values():
    (sweep / 'sweep.json').write_bytes(content)
    with pytest.raises(WorkdirError, match='sweep.json') as error:
      engine.report_only(str(sweep), verbose=False)
    assert '\n' not in str(error.value) and '--overwrite' in str(error.value)
  (sweep / 'sweep.json').write_text(json.dumps({'points': [], 'axes': []}))  # keys missing
  with pytest.raises(WorkdirError, match='no sweep config under `config`'):
    engine.report_only(str(sweep), verbose=False)
  (sweep / 'sweep.json').write_bytes(DAMAGED_JSON['random bytes'])
  assert_one_line_error(sweep_cli(sweep, '--report'), 'sweep.json', 'cannot be read', code=1)


def test_rerun_on_a_damaged_sweep_json_is_one_line_and_trains_nothing(sweep):
  (sweep / 'sweep.json').write_bytes(DAMAGED_JSON['truncated'])
  before = point(sweep, POINTS[0], 'results.json').stat().st_mtime_ns
  assert_one_line_error(rerun(sweep), 'sweep.json', 'damaged', '--overwrite', code=1)
  assert point(sweep, POINTS[0], 'results.json').stat().st_mtime_ns == before


# ------------------------------------------------------------------------ a point's results


@pytest.mark.parametrize('content', [None, *DAMAGED_JSON.values()])
def test_a_point_without_readable_results_is_unfinished(sweep, content):
  path = point(sweep, POINTS[1], 'results.json')
  if content is None:
    path.unlink()
  else:
    path.write_bytes(content)
  points = grid.expand(sweep_config())
  state = engine.point_state(str(sweep), points[1])
  assert state.results is None and not state.foreign and 'results.json' in state.missing
  assert engine.point_state(str(sweep), points[0]).results is not None
  rows = engine.report_only(str(sweep), verbose=False)
  assert rows[1]['asr'] is None and rows[1]['error'].startswith('no results:')
  assert rows[0]['asr'] is not None and rows[0]['error'] is None


def test_truncated_point_results_are_marked_by_report_and_recomputed_by_a_rerun(sweep, finished):
  path = point(sweep, POINTS[1], 'results.json')
  path.write_text(path.read_text()[:40])
  proc = sweep_cli(sweep, '--report')
  assert_one_line_error(proc, '1 of 2 points', POINTS[1], 'results.csv', code=1)
  rows, reference = csv_rows(sweep), csv_rows(finished)
  assert rows[POINTS[0]]['asr'] == reference[POINTS[0]]['asr']
  assert rows[POINTS[1]]['asr'] == '' and 'results.json cannot be read' in rows[POINTS[1]]['error']
  engine.run(sweep_config(), str(sweep), verbose=False)  # resumes the point from its checkpoint
  assert read_json(path) == read_json(point(finished, POINTS[1], 'results.json'))
  assert (sweep / 'results.csv').read_bytes() == (finished / 'results.csv').read_bytes()


# ------------------------------------------------------------------------ a point's config


def test_a_point_taken_by_another_run_is_refused_and_never_reported(sweep, finished):
  """The issue's case: `abd_jax.main --overwrite` with another config on a sweep's point."""
  command = next(p['command'] for p in read_json(sweep / 'sweep.json')['points']
                 if p['name'] == POINTS[1])
  args = [sys.executable, *shlex.split(command)[1:], '--config.log.progress=false']
  assert '--sweep_point' in args
  # sweep.json names the original's folder: this copy's point instead.
  args = [f'--workdir={sweep / "points" / POINTS[1]}' if a.startswith('--workdir=') else a
          for a in args]
  run = lambda *extra: subprocess.run(args + list(extra), cwd=REPO, env=cli_env(),
                                      capture_output=True, text=True, timeout=600)
  proc = run()  # the point's own command only reports it
  assert proc.returncode == 0 and 'already holds the finished run' in proc.stdout, proc.stderr
  before = point(sweep, POINTS[1], 'results.json').read_bytes()
  assert_one_line_error(run('--overwrite', '--config.train.lr=0.123'), 'is a point of the sweep',
                        '--leave_sweep', code=2)
  assert point(sweep, POINTS[1], 'results.json').read_bytes() == before
  proc = run('--overwrite', '--leave_sweep', '--config.train.lr=0.123')
  assert proc.returncode == 0, proc.stderr[-3000:]
  other = read_json(point(sweep, POINTS[1], 'results.json'))
  assert other != json.loads(before)
  assert_one_line_error(rerun(sweep), f'sweep point {POINTS[1]}', 'different config',
                        'train.lr', 'move it away', code=1)
  assert read_json(point(sweep, POINTS[1], 'results.json')) == other  # nothing trained over it
  rows = engine.report_only(str(sweep), verbose=False)
  assert rows[1]['asr'] is None and rows[1]['error'].startswith('not reported:')
  assert repr(other['train_loss']) not in (sweep / 'results.csv').read_text()
  assert rows[0]['asr'] == read_json(point(finished, POINTS[0], 'results.json'))['asr']


@pytest.mark.parametrize('damage', ['garbage', 'a list', 'no config.json'])
def test_a_point_with_a_damaged_config_is_refused_before_anything_trains(sweep, damage):
  path = point(sweep, POINTS[0], 'config.json')
  if damage == 'no config.json':
    path.unlink()
  else:
    path.write_text('not json' if damage == 'garbage' else '[1, 2]')
  before = point(sweep, POINTS[1], 'results.json').stat().st_mtime_ns
  with pytest.raises(SweepError, match=f'sweep point {POINTS[0]}: .*move it away') as error:
    engine.run(sweep_config(), str(sweep), verbose=False)
  assert '\n' not in str(error.value)
  assert point(sweep, POINTS[1], 'results.json').stat().st_mtime_ns == before
  rows = engine.report_only(str(sweep), verbose=False)
  assert rows[0]['asr'] is None and rows[0]['error'].startswith('not reported:')


def test_a_point_replaced_by_a_file_is_refused(sweep):
  shutil.rmtree(sweep / 'points' / POINTS[1])
  (sweep / 'points' / POINTS[1]).write_text('a file')
  with pytest.raises(SweepError, match=f'sweep point {POINTS[1]}: .* is a file'):
    engine.run(sweep_config(), str(sweep), verbose=False)


# ------------------------------------------------------------------------ the sweep's folders


def test_points_or_groups_replaced_by_a_file_are_one_line(sweep):
  shutil.rmtree(sweep / 'points')
  (sweep / 'points').write_text('a file')
  assert_one_line_error(sweep_cli(sweep, '--report'), 'points is a file', 'move it away', code=1)
  assert_one_line_error(rerun(sweep), 'points is a file', 'move it away', code=1)
  (sweep / 'points').unlink()
  (sweep / 'groups').write_text('a file')
  with pytest.raises(WorkdirError, match='groups is a file'):
    engine.run(sweep_config(), str(sweep), verbose=False)


@pytest.mark.parametrize('content', [*DAMAGED_JSON.values(), b'[{"results": {}}]'])
def test_damaged_group_outcomes_train_the_group_again(tmp_path, content):
  """A vmapped group's saved results.json is read only when whole: a damaged one (or one of
  another group size) is trained again, never a traceback."""
  path = tmp_path / 'results.json'
  assert engine.saved_outcomes(str(path), 2) is None  # none saved yet
  path.write_bytes(content)
  assert engine.saved_outcomes(str(path), 2) is None
  path.write_text(json.dumps([{'results': {'asr': 0.5}}, {'error': 'diverged'}]))
  assert engine.saved_outcomes(str(path), 2) == [{'results': {'asr': 0.5}}, {'error': 'diverged'}]


def test_damaged_report_files_are_rewritten(sweep, finished):
  (sweep / 'results.csv').write_bytes(DAMAGED_JSON['random bytes'])
  (sweep / 'results.jsonl').write_text('{"point": "eps=0_al')
  (sweep / 'heatmap_asr.png').write_bytes(b'')
  proc = sweep_cli(sweep, '--report')
  assert proc.returncode == 0, proc.stderr[-3000:]
  for name in ('results.csv', 'results.jsonl'):
    assert (sweep / name).read_bytes() == (finished / name).read_bytes(), name
  assert (sweep / 'heatmap_asr.png').stat().st_size > 1000
  os.remove(sweep / 'results.csv')
  (sweep / 'results.csv').mkdir()  # not a file at all: one line, not a traceback
  with pytest.raises(WorkdirError, match='the report cannot be written'):
    engine.report_only(str(sweep), verbose=False)


# ------------------------------------------------------------------------ refused up front


def test_unknown_metric_is_one_line_before_anything_trains(tmp_path):
  workdir = tmp_path / 'sweep'
  proc = rerun(workdir, "--config.sweep.metrics=('asr', 'clean_accuracy')")
  assert_one_line_error(proc, 'sweep.metrics', '`clean_accuracy`', 'did you mean `clean_acc`',
                        code=1)
  assert not workdir.exists()
  with pytest.raises(SweepError, match='`kept_rate` is not a result key'):
    grid.check_block({'metrics': ('asr', 'kept_rate')})


def test_result_keys_cover_what_runs_write(finished):
  """The metric names `sweep.metrics` accepts include every numeric key a run writes."""
  import numpy as np
  from abd_jax.defenses import cbd, dbd, detection, dst, finetuning, runner
  from abd_jax.train.loop import TRAIN_KEYS
  written = set(read_json(point(finished, POINTS[0], 'results.json')))
  flags = np.array([True, False, True, False])
  written |= set(detection.detection_summary(flags, ~flags, np.arange(4.0)))
  written |= set(dst._subset_summary(np.array([0, 1, 2, 0], np.int8), flags))
  written |= set(runner._step_statistics(np.arange(4), flags)) | set(TRAIN_KEYS)
  written |= {f'{p}_{k}' for p in ('detector', 'isolation', 'finetune')
              for k in runner.DETECTOR_KEYS}
  written |= {f'{p}_{k}' for p in ('backdoored', 'teacher')
              for k in finetuning.REPORTED + cbd.REPORTED}
  written |= {f'warmup_{k}' for k in dbd.REPORTED}
  assert written <= grid.RESULT_KEYS, written - grid.RESULT_KEYS
  assert {'asr', 'clean_acc', 'backdoor_acc', 'num_params', 'steps'} <= written


def test_a_sweep_config_given_to_main_is_one_line(tmp_path):
  workdir = tmp_path / 'run'
  proc = subprocess.run([sys.executable, '-m', 'abd_jax.main', f'--config={CONFIG}',
                         f'--workdir={workdir}'], cwd=REPO, env=cli_env(), capture_output=True,
                        text=True, timeout=300)
  assert_one_line_error(proc, '`sweep` block', 'python -m abd_jax.sweep', '--sweep_point', code=2)
  assert not workdir.exists()


def test_sweep_of_point_needs_the_sweep_to_list_it(sweep, tmp_path):
  assert engine.sweep_of_point(str(sweep / 'points' / POINTS[0])) == str(sweep)
  assert engine.sweep_of_point(str(sweep / 'points' / POINTS[0]) + '/') == str(sweep)
  assert engine.sweep_of_point(str(sweep / 'points' / 'eps=0_alpha=0.5')) is None
  assert engine.sweep_of_point(str(sweep)) is None
  assert engine.sweep_of_point(str(tmp_path / 'points' / POINTS[0])) is None  # no sweep.json
  (sweep / 'sweep.json').write_text('[]')
  assert engine.sweep_of_point(str(sweep / 'points' / POINTS[0])) is None
