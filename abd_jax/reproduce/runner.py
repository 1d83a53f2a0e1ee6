"""Runs a reproduction script: its arms through the sweep engine, then its results beside
the paper's numbers.

    python experiments/gao_table1.py                  # digits (offline), full grid
    python experiments/gao_table1.py --data=cifar10   # the paper's dataset, when prepared
    python experiments/gao_table1.py --tiny --out=/tmp/x   # test size

Each arm runs in `WORKDIR/DATA/ARM-HASH` (default WORKDIR `runs/experiments`; HASH of its
sweep config, so experiments running the same sweep share it); rerun after an
interruption, every arm resumes (finished points are kept). The results go to
`OUT/NAME.{md,csv,json,png}` (default OUT `experiments/results`).

Everything that can refuse a run (the flags, --workdir, --out and the results it holds,
each arm's directory, the data and the checks every point makes with it) is checked before
the first arm trains; a refusal or an interruption is one `error:` line on stderr.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import json
import os
import platform
import shlex
import sys
import time
from typing import Callable, Mapping, Sequence, TypeVar

from abd_jax.reproduce import paper as paper_lib
from abd_jax.reproduce import results as results_lib
from abd_jax.reproduce.paper import PaperTableError
from abd_jax.reproduce.spec import (REPO, Arm, ReproductionError, Reproduction, check_data, shrink,
                                    sweep_config)

T = TypeVar('T')

PAPER_DIR = os.path.join(REPO, 'experiments', 'paper')
RESULTS_DIR = os.path.join(REPO, 'experiments', 'results')
OUTPUTS = ('.csv', '.json', '.md', '.png')  # NAME.* in --out
RUN_FIELDS = ('command', 'machine', 'wall_s', 'date')  # of each dataset's record in NAME.json


def paper_tables(experiment: Reproduction, paper_dir: str = PAPER_DIR) -> list[paper_lib.PaperTable]:
  return [paper_lib.load(os.path.join(paper_dir, name + '.md')) for name in experiment.papers]


def measured_rows(arm: Arm, data: str, rows: Sequence[Mapping], metrics: Sequence[str]
                  ) -> list[dict]:
  """The sweep's rows as key cells (the arm's keys, each axis's label) + the metrics."""
  out = []
  for row in rows:
    line = {'data': data, 'arm': arm.name, **arm.keys}
    for vary in arm.vary:
      field = vary.first_field()
      index = next(i for i, v in enumerate(vary.values)
                   if (v[0] if isinstance(v, tuple) else v) == row[field])
      line[vary.name] = vary.label(index)
    line['axes'] = ' '.join(v.name for v in arm.vary)
    line['seed'] = row.get('seed', arm.seeds[0])
    for metric in metrics:
      line[metric] = row.get(metric)
      if metric in results_lib.RATIO:
        line[results_lib.RATIO[metric]] = row.get(results_lib.RATIO[metric])
    line['point'] = row['point']
    if row.get('error'):
      line['error'] = row['error']
    out.append(line)
  return out


def arm_key(arm: Arm) -> str:
  """The arm's run directory name: its name and a hash of its sweep config, so that
  experiments that run the same sweep (e.g. a figure's clean accuracies and its ASRs)
  share one run."""
  import hashlib
  from abd_jax import config as config_lib
  text = json.dumps(config_lib.to_dict(sweep_config(arm)), sort_keys=True, default=str)
  return f'{arm.name}-{hashlib.sha256(text.encode()).hexdigest()[:8]}'


def machine() -> str:
  import jax
  return (f'{platform.machine()} {os.cpu_count()} cores, {jax.default_backend()} '
          f'({jax.devices()[0].device_kind}), jax {jax.__version__}')


@dataclasses.dataclass
class Plan:
  """One experiment on one dataset, checked before anything trains: its paper tables, its
  arms with their sweep directories, and what `out_dir` already holds of its results."""
  experiment: Reproduction
  data: str
  out_dir: str
  tiny: bool
  tables: list[paper_lib.PaperTable]
  arms: list[Arm]
  arm_dirs: list[str]
  rows: list[dict]  # NAME.csv: the measured rows of every dataset
  runs: dict  # NAME.json: how each dataset's rows were obtained


def plan(experiment: Reproduction, data: str = 'digits', workdir: str = 'runs/experiments',
         out_dir: str = RESULTS_DIR, tiny: bool = False) -> Plan:
  """Every check of `run` that needs no data: the dataset, the paper tables, the arms'
  configs and directories, and the output files (a broken one would stop the run late)."""
  check_data(data, experiment.datasets)
  tables = paper_tables(experiment)
  arms = list(experiment.arms(data))
  if tiny:  # the first arm at test size
    arms = [shrink(arms[0])]
  names = [a.name for a in arms]
  if len(set(names)) != len(names):
    raise ValueError(f'{experiment.name}: arm names repeat: {names}')
  arm_dirs = [os.path.join(workdir, data, arm_key(arm)) for arm in arms]
  for arm, arm_dir in zip(arms, arm_dirs):
    _check_arm_dir(experiment, arm, arm_dir)
  rows, runs = read_outputs(out_dir, experiment.name)
  return Plan(experiment, data, out_dir, tiny, tables, arms, arm_dirs, rows, runs)


def _check_arm_dir(experiment: Reproduction, arm: Arm, arm_dir: str) -> None:
  """The checks the sweep engine makes of the arm's directory, made for every arm before
  the first one trains."""
  from abd_jax import config as config_lib, workdir as workdir_lib
  from abd_jax.sweep import engine
  where = f'{experiment.name}, arm {arm.name}'
  try:
    workdir_lib.check_path(arm_dir)
  except workdir_lib.WorkdirError as e:
    raise ReproductionError(f'{where}: {e}') from None
  problem = workdir_lib.problem(arm_dir, config_lib.to_dict(sweep_config(arm)),
                                marker=engine.SWEEP_JSON, stored=lambda saved: saved['config'],
                                what='sweep')
  if problem:  # the scripts take no --overwrite: the way out is another folder
    raise ReproductionError(f'{where}: {problem}; delete {arm_dir} or use another --workdir')


def read_outputs(out_dir: str, name: str) -> tuple[list[dict], dict]:
  """(the rows of NAME.csv, the records of NAME.json) in `out_dir`, empty where absent;
  a ReproductionError when `out_dir` or one of NAME.* cannot be used. They hold other
  datasets' results too: a damaged one is named, never replaced."""
  from abd_jax import workdir as workdir_lib
  try:
    workdir_lib.check_path(out_dir, '--out')
  except workdir_lib.WorkdirError as e:
    raise ReproductionError(str(e)) from None
  base = os.path.join(out_dir, name)
  for ext in OUTPUTS:
    if os.path.isdir(base + ext):
      raise ReproductionError(f'{base + ext} is a directory, so the results cannot be written '
                              'there: move it, or give another --out')
  try:
    rows = results_lib.read_csv(base + '.csv')
  except (OSError, ValueError, csv.Error) as e:  # UnicodeDecodeError is a ValueError
    raise ReproductionError(_damaged(base + '.csv', e)) from None
  return rows, _read_runs(base + '.json')


def _damaged(path: str, why) -> str:
  why = ' '.join(str(why).split())[:120]
  return (f'{path} is damaged ({why}); it holds the results of every dataset run: restore it, '
          'or delete it to start the table again')


def _read_runs(path: str) -> dict:
  if not os.path.exists(path):
    return {}
  try:
    with open(path) as f:
      runs = json.load(f)
  except (OSError, ValueError) as e:
    raise ReproductionError(_damaged(path, e)) from None
  if not isinstance(runs, dict) or not all(
      isinstance(r, dict) and all(k in r for k in RUN_FIELDS) for r in runs.values()):
    raise ReproductionError(_damaged(path, 'not an object of run records with '
                                     + ', '.join(RUN_FIELDS)))
  return runs


def preflight(plans: Sequence[Plan]) -> None:
  """Loads each dataset the plans train on (once: a dataset that is not there stops them
  all here) and makes the checks that need it for every point of every arm (a model too
  deep for the image, a trigger larger than it, a batch larger than the training set...),
  before the first arm trains. After `cli.use_cpu_cores`: resizing starts JAX."""
  from abd_jax import experiment as experiment_lib
  from abd_jax.errors import ConfigError
  from abd_jax.sweep import grid
  shared = experiment_lib.Shared()
  for p in plans:
    for arm in p.arms:
      for point in grid.expand(sweep_config(arm)):
        try:
          experiment_lib.check_data(point.config, shared.dataset(point.config))
        except ConfigError as e:
          raise ReproductionError(f'{p.experiment.name}, arm {arm.name}, point {point.name}: '
                                  f'{e}') from None


def run(experiment: Reproduction, data: str = 'digits', workdir: str = 'runs/experiments',
        out_dir: str = RESULTS_DIR, tiny: bool = False, command: str = '',
        verbose: bool = True) -> dict[str, str]:
  """Runs (or resumes) every arm of `experiment` on `data` and writes its results; returns
  the paths written. Everything that can refuse the run is checked before the first arm
  trains (`plan`, `preflight`)."""
  checked = plan(experiment, data, workdir, out_dir, tiny)
  preflight([checked])
  return execute(checked, command, verbose)


def execute(p: Plan, command: str = '', verbose: bool = True) -> dict[str, str]:
  """Runs the arms of a checked plan, then writes NAME.* in its `out_dir`."""
  from abd_jax.sweep import engine
  experiment, data = p.experiment, p.data
  start, measured, done_before = time.time(), [], 0
  for arm, arm_dir in zip(p.arms, p.arm_dirs):
    done_before += _finished_points(arm_dir)
    if verbose:  # stdout: stderr is kept for the one line of an error
      print(f'{experiment.name} [{data}] arm {arm.name}: {arm_dir}', flush=True)
    rows = engine.run(sweep_config(arm), arm_dir, verbose=verbose)
    measured += measured_rows(arm, data, rows, experiment.metrics)
  all_rows = results_lib.merge(p.rows, data, measured)
  runs = dict(p.runs)
  previous = runs.get(data)
  if not (previous and done_before == len(measured) and previous.get('tiny') == p.tiny):
    # The wall time of the runs that made these rows: a rerun that finds every point done
    # (or another experiment's) keeps the record of the run that trained them.
    resumed = done_before > 0
    wall = time.time() - start + (previous['wall_s'] if previous and resumed else 0.0)
    runs[data] = {'command': command or f'python experiments/{experiment.name}.py --data={data}',
                  'machine': machine(), 'wall_s': round(wall, 1),
                  'date': datetime.date.today().isoformat(), 'points': len(measured),
                  'reused_points': done_before if not previous else previous.get('reused_points', 0),
                  'resumed': resumed and bool(previous), 'tiny': p.tiny}
  paths = results_lib.write_all(p.out_dir, experiment, p.tables, all_rows, runs)
  if verbose:
    with open(paths['md'], encoding='utf-8') as f:
      print(f.read())
  return paths


def _finished_points(arm_dir: str) -> int:
  points = os.path.join(arm_dir, 'points')
  if not os.path.isdir(points):
    return 0
  return sum(os.path.exists(os.path.join(points, p, 'results.json')) for p in os.listdir(points))


class Parser(argparse.ArgumentParser):
  """argparse with a usage mistake as one line on stderr (exit 2), as `abd_jax.main`."""

  def error(self, message: str):
    from abd_jax import cli
    cli.fail(f'{message}; see {self.prog} --help', 2)


def check_paths(workdir: str, out_dir: str) -> None:
  """--workdir and --out, checked before anything loads (one line, exit 2)."""
  from abd_jax import cli
  cli.check_workdir(workdir)
  cli.check_workdir(out_dir, '--out')


def guarded(workdir: str, fn: Callable[[], T]) -> T:
  """fn() with the library's errors as one line (exit 1), and an interruption as one line
  saying that the same command resumes (each arm's sweep keeps its finished points)."""
  from abd_jax import cli
  from abd_jax.sweep.grid import SweepError
  with cli.interruptible(f'the work in {workdir}'):
    return cli.run_or_exit(fn, extra=(ReproductionError, PaperTableError, SweepError))


def main(experiment: Reproduction, argv: Sequence[str] | None = None) -> dict[str, str]:
  """The command line of a reproduction script."""
  parser = Parser(description=experiment.description.split('\n')[0] or None)
  parser.add_argument('--data', default=experiment.datasets[0],
                      help='one of: ' + ', '.join(experiment.datasets))
  parser.add_argument('--workdir', default='runs/experiments',
                      help='where the sweeps run (resumed when rerun)')
  parser.add_argument('--out', default=RESULTS_DIR, help='where NAME.md/.csv/.json/.png go')
  parser.add_argument('--tiny', action='store_true',
                      help='test size: the first arm, 1 epoch, 2-step attacks, at most 2 points')
  args = parser.parse_args(argv)
  if args.data not in experiment.datasets:
    parser.error(f'--data={args.data!r} is not allowed: {experiment.name} runs on '
                 + ', '.join(experiment.datasets))
  check_paths(args.workdir, args.out)
  command = 'python ' + ' '.join(shlex.quote(a) for a in
                                 [os.path.relpath(sys.argv[0], REPO) if argv is None else
                                  f'experiments/{experiment.name}.py', *(sys.argv[1:] if argv is None else argv)])

  def checked_run():
    from abd_jax import cli
    cli.start_jax(point_configs(experiment, args.data, args.tiny))
    return run(experiment, args.data, args.workdir, args.out, args.tiny, command)

  return guarded(args.workdir, checked_run)


def point_configs(experiment: Reproduction, data: str, tiny: bool = False):
  """The config of every point `run` would train (before JAX starts: for the CPU split)."""
  from abd_jax.sweep import grid
  arms = list(experiment.arms(data))
  for arm in arms[:1] if tiny else arms:
    yield from (p.config for p in grid.expand(sweep_config(shrink(arm) if tiny else arm)))
