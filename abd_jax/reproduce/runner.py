"""Runs a reproduction script: its arms through the sweep engine, then its results beside
the paper's numbers.

    python experiments/gao_table1.py                  # digits (offline), full grid
    python experiments/gao_table1.py --data=cifar10   # the paper's dataset, when prepared
    python experiments/gao_table1.py --tiny --out=/tmp/x   # test size

Each arm runs in `WORKDIR/DATA/ARM-HASH` (default WORKDIR `runs/experiments`; HASH of its
sweep config, so experiments running the same sweep share it); rerun after an
interruption, every arm resumes (finished points are kept). The results go to
`OUT/NAME.{md,csv,json,png}` (default OUT `experiments/results`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time
from typing import Mapping, Sequence

from abd_jax.reproduce import paper as paper_lib
from abd_jax.reproduce import results as results_lib
from abd_jax.reproduce.spec import REPO, Arm, Reproduction, check_data, shrink, sweep_config

PAPER_DIR = os.path.join(REPO, 'experiments', 'paper')
RESULTS_DIR = os.path.join(REPO, 'experiments', 'results')


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


def run(experiment: Reproduction, data: str = 'digits', workdir: str = 'runs/experiments',
        out_dir: str = RESULTS_DIR, tiny: bool = False, command: str = '',
        verbose: bool = True) -> dict[str, str]:
  """Runs (or resumes) every arm of `experiment` on `data` and writes its results; returns
  the paths written. The paper tables are read first, so a broken one stops nothing late."""
  from abd_jax.sweep import engine
  check_data(data, experiment.datasets)
  tables = paper_tables(experiment)
  arms = list(experiment.arms(data))
  if tiny:  # the first arm at test size
    arms = [shrink(arms[0])]
  names = [a.name for a in arms]
  if len(set(names)) != len(names):
    raise ValueError(f'{experiment.name}: arm names repeat: {names}')
  start, measured, done_before = time.time(), [], 0
  for arm in arms:
    arm_dir = os.path.join(workdir, data, arm_key(arm))
    done_before += _finished_points(arm_dir)
    if verbose:
      print(f'{experiment.name} [{data}] arm {arm.name}: {arm_dir}', file=sys.stderr)
    rows = engine.run(sweep_config(arm), arm_dir, verbose=verbose)
    measured += measured_rows(arm, data, rows, experiment.metrics)
  csv_path = os.path.join(out_dir, experiment.name + '.csv')
  all_rows = results_lib.merge(results_lib.read_csv(csv_path), data, measured)
  runs = _read_runs(os.path.join(out_dir, experiment.name + '.json'))
  previous = runs.get(data)
  if not (previous and done_before == len(measured) and previous.get('tiny') == tiny):
    # The wall time of the runs that made these rows: a rerun that finds every point done
    # (or another experiment's) keeps the record of the run that trained them.
    resumed = done_before > 0
    wall = time.time() - start + (previous['wall_s'] if previous and resumed else 0.0)
    runs[data] = {'command': command or f'python experiments/{experiment.name}.py --data={data}',
                  'machine': machine(), 'wall_s': round(wall, 1),
                  'date': datetime.date.today().isoformat(), 'points': len(measured),
                  'reused_points': done_before if not previous else previous.get('reused_points', 0),
                  'resumed': resumed and bool(previous), 'tiny': tiny}
  paths = results_lib.write_all(out_dir, experiment, tables, all_rows, runs)
  if verbose:
    with open(paths['md'], encoding='utf-8') as f:
      print(f.read())
  return paths


def _finished_points(arm_dir: str) -> int:
  points = os.path.join(arm_dir, 'points')
  if not os.path.isdir(points):
    return 0
  return sum(os.path.exists(os.path.join(points, p, 'results.json')) for p in os.listdir(points))


def _read_runs(path: str) -> dict:
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def main(experiment: Reproduction, argv: Sequence[str] | None = None) -> dict[str, str]:
  """The command line of a reproduction script."""
  parser = argparse.ArgumentParser(description=experiment.description.split('\n')[0] or None)
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
  command = 'python ' + ' '.join(shlex.quote(a) for a in
                                 [os.path.relpath(sys.argv[0], REPO) if argv is None else
                                  f'experiments/{experiment.name}.py', *(sys.argv[1:] if argv is None else argv)])
  from abd_jax import cli
  cli.use_cpu_cores(point_configs(experiment, args.data, args.tiny))
  return run(experiment, args.data, args.workdir, args.out, args.tiny, command)


def point_configs(experiment: Reproduction, data: str, tiny: bool = False):
  """The config of every point `run` would train (before JAX starts: for the CPU split)."""
  from abd_jax.sweep import grid
  arms = list(experiment.arms(data))
  for arm in arms[:1] if tiny else arms:
    yield from (p.config for p in grid.expand(sweep_config(shrink(arm) if tiny else arm)))
