"""The sweep engine: a grid of experiment configs as one command.

    rows = engine.run(config, 'runs/sweep', config_spec='configs/sweeps/eps_alpha.py:digits')

1. Expand and validate the grid (`grid.expand`): a bad point stops the sweep before
   anything is loaded or compiled.
2. Group the points by static structure (`static_signature`): everything but the values
   a compiled step takes as traced arrays (ε, step sizes, β, α, the seed's keys) and the
   attack's data. A group runs
     vmap        its train states stacked on a run axis, one compiled program stepping
                 them all; the clean data on the device once, each point's poisoned rows
                 on top (`train.train_and_evaluate_stacked`);
     sequential  point after point, sharing the loaded data, the poisonings and the
                 compiled programs (`experiment.Shared`, `train.programs`); each point is
                 exactly the run `abd_jax.main` makes of it alone.
   `auto` chooses per backend, model and device count (`choose_execution`).
3. Write `WORKDIR/points/NAME/` (ordinary run directories), `results.csv`,
   `results.jsonl` and the figures. Rerun after a kill, a sweep skips finished points and
   resumes an interrupted one (or a vmapped group's stacked checkpoint in
   `WORKDIR/groups/`).

The sweep owns its points: a point's folder counts only while its config.json is that
point's config (`point_state`). One that holds another run is refused by a rerun before
anything trains and never reported as the point; one without readable results is resumed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shlex
import shutil
import sys
from typing import Sequence

import jax
import ml_collections
import numpy as np

from abd_jax import config as config_lib
from abd_jax import experiment, parallel, timing, workdir as workdir_lib
from abd_jax.errors import ConfigError
from abd_jax.sweep import grid, report
from abd_jax.sweep.grid import Axis, Point, SweepError
from abd_jax.train import StackedRun, TrainingDivergedError, train_and_evaluate_stacked
from abd_jax.train.loop import HPARAM_FIELDS
from abd_jax.train.progress import nested_bars, progress_bar

SWEEP_JSON = 'sweep.json'
POINTS_DIR = 'points'
GROUPS_DIR = 'groups'
# Errors of one point that do not stop the others: its training diverged, or a check that
# needs the trained model (e.g. a defense that keeps less than a batch) refused it.
POINT_ERRORS = (TrainingDivergedError, ConfigError)


# ---------------------------------------------------------------------------- planning


def static_signature(config: ml_collections.ConfigDict) -> str:
  """JSON of what fixes a run's compiled programs and control flow: the config without
  the traced budgets (perturb / eval ε, step sizes, β, mixing α), the seed, the attack's
  parameters (only its name: the poisoned images are data), logging and the launch."""
  d = config_lib.to_dict(config)
  for name in ('seed', *workdir_lib.IGNORED_SECTIONS):
    d.pop(name, None)
  for section in ('perturb', 'eval'):
    for field in HPARAM_FIELDS:
      d[section].pop(field, None)
  d['attack'] = {'name': d['attack']['name']}
  return json.dumps(d, sort_keys=True)


# Measured with the project's own train step (PGD-10 AT; the README's sweep section):
# vmapped runs / the same runs one after another.
VMAP_MEASURED = {
    ('gpu', 'cnn'): 'H100, digits CNN batch 64: 4/16/64 runs vmapped = 1.65x/4.8x/9.0x',
    ('gpu', 'resnet'): 'H100, ResNet-18 bf16 batch 128: 4/8 runs vmapped = 0.72x/0.78x',
    ('cpu', 'any'): '2-core CPU, digits CNN: 4 runs vmapped = 0.25x',
}


def choose_execution(requested: str, points: Sequence[Point], backend: str,
                     num_devices: int) -> tuple[str, str]:
  """(execution, why) of a group. `auto`: vmap where one program stepping many runs was
  measured to pay (small models on accelerators), or where several accelerators can each
  step their own runs; sequential otherwise, and always on CPU (vmapped convolutions become
  grouped ones there; the data-parallel mesh spreads each batch over the CPU's devices). A
  group whose runs have a defense is always sequential: a defense runs phase by phase
  (detector, scoring, final training)."""
  config = points[0].config
  if config.defense.name != 'none':
    return 'sequential', f'defense {config.defense.name!r} runs phase by phase'
  if len(points) == 1:
    return 'sequential', 'a single point'
  if requested != 'auto':
    return requested, 'sweep.execution'
  if backend == 'cpu':  # CPU devices are its cores: each batch is split over them instead
    return 'sequential', VMAP_MEASURED[('cpu', 'any')]
  if num_devices > 1:
    return 'vmap', f'the run axis is split over {num_devices} devices'
  if config.model.name == 'cnn':
    return 'vmap', VMAP_MEASURED[('gpu', 'cnn')]
  return 'sequential', VMAP_MEASURED[('gpu', 'resnet')] + ' (vmapped convolutions are grouped)'


@dataclasses.dataclass(frozen=True)
class Group:
  name: str
  points: tuple[Point, ...]
  execution: str
  reason: str


def plan(points: Sequence[Point], requested: str, max_stack: int, backend: str,
         num_devices: int) -> list[Group]:
  """The points grouped by static structure (in grid order of first appearance), each
  group with its execution; vmapped groups hold at most `max_stack` points."""
  by_signature: dict[str, list[Point]] = {}
  for p in points:
    by_signature.setdefault(static_signature(p.config), []).append(p)
  groups = []
  for members in by_signature.values():
    execution, reason = choose_execution(requested, members, backend, num_devices)
    size = max_stack if execution == 'vmap' else len(members)
    for start in range(0, len(members), size):
      chunk = tuple(members[start:start + size])
      digest = hashlib.sha256(' '.join(p.name for p in chunk).encode()).hexdigest()[:8]
      groups.append(Group(f'g{len(groups):03d}-{digest}', chunk, execution, reason))
  return groups


# ---------------------------------------------------------------------------- the workdir


def point_dir(workdir: str, point: Point | str) -> str:
  return os.path.join(workdir, POINTS_DIR, point if isinstance(point, str) else point.name)


def point_command(point: Point, workdir: str, config_spec: str,
                  file_config: ml_collections.ConfigDict | None) -> str:
  """The `abd_jax.main` command line that runs `point` alone: the config file (a sweep config,
  hence `--sweep_point`), the point's swept values, and every other field where it differs
  from that file's defaults (the sweep's own command-line overrides)."""
  values = grid.flatten(point.config)
  defaults = grid.flatten(file_config) if file_config is not None else {}
  changed = dict(point.overrides)
  changed.update({k: v for k, v in values.items() if k not in changed
                  and k.split('.')[0] not in workdir_lib.IGNORED_SECTIONS
                  and grid.tupled(defaults.get(k)) != grid.tupled(v)})
  args = ['python', '-m', 'abd_jax.main', f'--config={config_spec or "CONFIG"}', '--sweep_point',
          f'--workdir={point_dir(workdir, point)}', *grid.overrides_to_flags(changed)]
  return shlex.join(args)


def claim_workdir(workdir: str, config: ml_collections.ConfigDict, overwrite: bool) -> bool:
  """Makes `workdir` ready for the sweep `config`. Returns True when it resumes (or just
  reports) the same sweep; refuses a different sweep or anything else unless `overwrite`."""
  return workdir_lib.claim(workdir, config_lib.to_dict(config), overwrite, **_CLAIM)


_CLAIM = dict(marker=SWEEP_JSON, stored=lambda saved: saved['config'], what='sweep')


def _sweep_record(config, axes: Sequence[Axis], points: Sequence[Point], groups: Sequence[Group],
                  workdir: str, config_spec: str, file_config) -> dict:
  group_of = {p.name: g.name for g in groups for p in g.points}
  return {
      'config': config_lib.to_dict(config),
      'config_file': config_spec,
      'axes': [{'name': a.name, 'fields': list(a.fields), 'values': [list(v) for v in a.values]}
               for a in axes],
      'points': [{'name': p.name, 'index': p.index, 'overrides': p.overrides,
                  'group': group_of[p.name],
                  'command': point_command(p, workdir, config_spec, file_config)} for p in points],
      'groups': [{'name': g.name, 'execution': g.execution, 'reason': g.reason,
                  'points': [p.name for p in g.points]} for g in groups],
      'backend': jax.default_backend(), 'devices': jax.device_count(),
      'processes': jax.process_count(),
  }


def sweep_of_point(workdir: str) -> str | None:
  """The sweep directory whose point `workdir` is (`SWEEP/points/NAME`, with NAME among the
  points of SWEEP/sweep.json), or None."""
  parent, name = os.path.split(os.path.abspath(workdir))
  sweep_dir, folder = os.path.split(parent)
  if folder != POINTS_DIR:
    return None
  record, _ = workdir_lib.read_object(os.path.join(sweep_dir, SWEEP_JSON))
  listed = record.get('points') if record else None
  names = [p.get('name') for p in listed if isinstance(p, dict)] if isinstance(listed, list) else []
  return sweep_dir if name in names else None


# ---------------------------------------------------------------------------- the points' folders

ERROR_TXT = 'error.txt'


@dataclasses.dataclass(frozen=True)
class PointState:
  """What a point's folder holds. `results`: the point's results (it is finished). Otherwise
  `missing` says why it has none (it is trained, or resumed), or `foreign` why the folder
  is not this point's run (another config, a damaged config.json, a file): such a folder is
  never reported as the point nor trained over."""
  results: dict | None = None
  missing: str = ''
  foreign: str = ''


def point_state(workdir: str, point: Point) -> PointState:
  """The state of `point`'s folder, its config.json compared as a run's claim compares it
  (fields under workdir.IGNORED_SECTIONS aside)."""
  path = point_dir(workdir, point)
  if not os.path.lexists(path):
    return PointState(missing='not trained yet')
  if not os.path.isdir(path):
    return PointState(foreign=f'{path} is a file, not the point\'s run directory')
  # A point refused before it trained keeps only its error.txt (the run left no other trace).
  if set(os.listdir(path)) <= {workdir_lib.LOCK, ERROR_TXT}:
    return PointState(missing='not trained yet')
  foreign = workdir_lib.problem(path, config_lib.to_dict(point.config))
  if foreign:
    return PointState(foreign=foreign)
  results_path = os.path.join(path, experiment.RESULTS)
  if not os.path.exists(results_path):
    return PointState(missing=f'unfinished ({path} holds no {experiment.RESULTS} yet)')
  results, problem = workdir_lib.read_object(results_path)
  if results is None:
    return PointState(missing=f'{results_path} {problem}')
  return PointState(results=results)


def _unfinished(workdir: str, points: Sequence[Point]) -> list[bool]:
  """Per point, whether it has no usable results: as process 0 sees it, on every process."""
  return parallel.agree([point_state(workdir, p).results is None for p in points])


# What the sweep keeps in its own folders, and what moving a file in their place away costs.
_FOLDERS = {POINTS_DIR: ("its points' run directories", 'it trains them again'),
            GROUPS_DIR: ("its vmapped groups' stacked checkpoints",
                         'it trains the unfinished vmapped groups from their start')}


def _check_folders(workdir: str, names: Sequence[str] = (POINTS_DIR, GROUPS_DIR)) -> None:
  """The sweep's own folders must be folders: one line, never a traceback or a table of
  empty rows."""
  for name in names:
    path = os.path.join(workdir, name)
    if os.path.lexists(path) and not os.path.isdir(path):
      holds, cost = _FOLDERS[name]
      raise workdir_lib.WorkdirError(f'{path} is a file, not the sweep\'s folder of {holds}; '
                                     f'move it away and run the sweep again ({cost})')


def _refuse_foreign(workdir: str, points: Sequence[Point]) -> None:
  """Stops a rerun before anything trains when a point's folder holds something other than
  that point's run (e.g. `abd_jax.main --overwrite` ran another config there): deleting it
  could lose a run someone wants, reporting it would put another run's numbers in the cell."""
  states = [point_state(workdir, p) for p in points]
  foreign = [i for i, s in enumerate(states) if s.foreign]
  first = parallel.agree(foreign[0] if foreign else -1)
  if first < 0:
    return
  p = points[first]
  why = states[first].foreign or f'{point_dir(workdir, p)} is not this point\'s run'
  others = [points[i].name for i in foreign[1:]]
  more = (f' (and {len(others)} more: {", ".join(others[:3])}{", ..." if len(others) > 3 else ""})'
          if others else '')
  raise SweepError(f'sweep point {p.name}: {why}{more}; move it away (the sweep then trains the '
                   'point again) or pass --overwrite to restart the whole sweep')


# ---------------------------------------------------------------------------- running


def _error_path(workdir: str, name: str) -> str:
  return os.path.join(point_dir(workdir, name), ERROR_TXT)


def _record_error(workdir: str, name: str, error: Exception) -> str:
  message = str(error)
  if jax.process_index() == 0:
    # A run refused before it trained removes the folder it created.
    os.makedirs(point_dir(workdir, name), exist_ok=True)
    with open(_error_path(workdir, name), 'w') as f:
      f.write(message + '\n')
  return message


def _preflight(points: Sequence[Point], shared: experiment.Shared) -> None:
  """The checks that need the data, for every unfinished point, before anything trains:
  a model too deep for the image, a trigger larger than the image, a target class out of
  range, a clean-label rate larger than the class, a batch larger than the training set."""
  for p in points:
    try:
      experiment.check_data(p.config, shared.dataset(p.config))
    except ConfigError as e:
      raise SweepError(f'sweep point {p.name}: {e}') from None


def _run_sequential(group: Group, workdir: str, shared: experiment.Shared, bar) -> dict[str, str]:
  errors = {}
  # Points with the same poisoning run back to back, so it is computed once.
  order = sorted(group.points, key=lambda p: (json.dumps(config_lib.to_dict(p.config.attack),
                                                         sort_keys=True), p.config.seed, p.index))
  for p, unfinished in zip(order, _unfinished(workdir, order)):
    if unfinished:
      try:
        experiment.run(p.config, point_dir(workdir, p), shared=shared, verbose=False)
      except POINT_ERRORS as e:
        errors[p.name] = _record_error(workdir, p.name, e)
    bar.update(1)
  return errors


def saved_outcomes(path: str, size: int) -> list | None:
  """The outcomes a vmapped group of `size` points saved in `path`, or None: none saved yet,
  or a damaged file (with a warning; the group is trained again)."""
  if not os.path.exists(path):
    return None
  try:
    outcomes = workdir_lib.read_json(path)
  except (OSError, ValueError, UnicodeDecodeError) as e:
    logging.warning('%s cannot be read (%s); training the group again', path,
                    ' '.join(str(e).split())[:120])
    return None
  if (isinstance(outcomes, list) and len(outcomes) == size
      and all(isinstance(o, dict) and ('results' in o or 'error' in o) for o in outcomes)):
    return outcomes
  logging.warning('%s does not hold the outcomes of %d points; training the group again', path,
                  size)
  return None


def _train_group(group: Group, workdir: str, shared: experiment.Shared) -> tuple[list, list]:
  """(outcomes, poisonings) of a vmapped group: each point's {'results'} or {'error'}, and
  its poisoning where its figures need one."""
  group_dir = os.path.join(workdir, GROUPS_DIR, group.name)
  saved_path = os.path.join(group_dir, 'results.json')
  runs, poisonings = [], []
  for p in group.points:
    pdir = point_dir(workdir, p)
    experiment.claim(p.config, pdir)
    data = shared.dataset(p.config)
    poisoned = experiment.poison_run(p.config, data, pdir, shared)
    # Kept for the figures of spatial regimes only: a poisoning holds a whole training set.
    poisonings.append(poisoned if p.config.perturb.name in experiment.figures.SPATIAL_REGIMES
                      else None)
    if poisoned is None:
      runs.append(StackedRun(p.config, pdir, data.y_train, np.zeros(0, np.int64),
                             data.x_train[:0]))
    else:
      changed = poisoned.modified
      runs.append(StackedRun(p.config, pdir, poisoned.train.y_train, changed,
                             poisoned.train.x_train[changed], poisoned.backdoor))
  outcomes = saved_outcomes(saved_path, len(group.points))
  if parallel.agree(outcomes is not None):
    outcomes = outcomes if outcomes is not None else workdir_lib.read_json(saved_path)
  else:
    os.makedirs(group_dir, exist_ok=True)
    clean = shared.dataset(group.points[0].config)
    with timing.phase('train'):
      results = train_and_evaluate_stacked(runs, clean, group_dir)
    outcomes = [{'error': str(r)} if isinstance(r, Exception) else {'results': r} for r in results]
    if parallel.is_writer():
      workdir_lib.write_json(saved_path, outcomes)
    parallel.barrier('group trained')
  return outcomes, poisonings


def _run_vmapped(group: Group, workdir: str, shared: experiment.Shared, bar) -> dict[str, str]:
  """Trains the group's points as one stacked program; its results are saved in the
  group's folder first (one atomic file), then handed to each point's workdir, so a kill
  in between never leaves a group half reported."""
  is_writer = jax.process_index() == 0
  errors = {}
  with contextlib.ExitStack() as locks:
    for p in group.points:  # each point's workdir is locked like a single run's
      locks.enter_context(workdir_lib.locked(point_dir(workdir, p), enabled=is_writer))
    outcomes, poisonings = _train_group(group, workdir, shared)
    unfinished = _unfinished(workdir, group.points)
    for p, poisoned, outcome, todo in zip(group.points, poisonings, outcomes, unfinished):
      if 'error' in outcome:
        errors[p.name] = _record_error(workdir, p.name, RuntimeError(outcome['error']))
      elif todo:
        experiment.finish(p.config, point_dir(workdir, p), outcome['results'], poisoned)
      bar.update(1)
  if is_writer:  # every point holds its own final checkpoint now
    shutil.rmtree(os.path.join(workdir, GROUPS_DIR, group.name, 'checkpoints'), ignore_errors=True)
  return errors


def _row_error(workdir: str, point: Point, state: PointState) -> str:
  """The `error` cell of a point without usable results: why its folder is not reported,
  its recorded failure, or why it has no results yet."""
  if state.foreign:
    return f'not reported: {state.foreign}; move it away and run the sweep again'
  path = _error_path(workdir, point.name)
  if os.path.isfile(path):
    with open(path, errors='replace') as f:
      return f.read().strip()
  return f'no results: {state.missing}; run the sweep again to finish it'


def _report(workdir: str, axes: Sequence[Axis], points: Sequence[Point], metrics: Sequence[str],
            errors: dict[str, str], verbose: bool) -> list[dict]:
  """results.csv, results.jsonl and the figures from the points' results.json files. Each
  point's folder is checked first: a point whose folder holds another run, or no readable
  results, gets an `error` cell instead of numbers."""
  parallel.barrier('sweep report')  # every process reads the files process 0 wrote
  _check_folders(workdir, (POINTS_DIR,))
  states = {p.name: point_state(workdir, p) for p in points}
  results = {name: state.results for name, state in states.items()}
  for p in points:
    if results[p.name] is None and p.name not in errors:
      errors[p.name] = _row_error(workdir, p, states[p.name])
  rows = report.result_rows(points, results, errors)
  if jax.process_index() == 0:
    try:  # results.csv, results.jsonl and the figures are outputs: rewritten whatever they hold
      report.write_csv(os.path.join(workdir, 'results.csv'), rows)
      report.write_jsonl(os.path.join(workdir, 'results.jsonl'), rows)
      report.write_figures(workdir, axes, rows, metrics)
    except OSError as e:  # e.g. a folder in their place, a full disk
      raise workdir_lib.WorkdirError(f'the report cannot be written in {workdir} '
                                     f'({" ".join(str(e).split())[:200]})') from None
  if verbose:
    print(report.format_table(rows, metrics=metrics))
  return rows


def run(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False,
        config_spec: str = '', file_config: ml_collections.ConfigDict | None = None,
        verbose: bool = True) -> list[dict]:
  """Runs (or resumes, or just reports) the sweep `config` in `workdir`; returns the rows
  of results.csv. `config_spec` and `file_config` (the config file's own defaults) make
  each point's reproducing command line in sweep.json. Everything that can refuse the
  sweep (a point folder that holds another run included) is checked before the workdir is
  touched; it is locked while the sweep runs."""
  points = grid.expand(config)  # validates every point first
  experiment_config, block = grid.split_config(config)
  axes = grid.axes_of(block, experiment_config)
  parallel.maybe_initialize_distributed(experiment_config.distributed)
  is_writer = jax.process_index() == 0
  workdir_lib.check_path(workdir)
  resumable = workdir_lib.inspect(workdir, config_lib.to_dict(config), overwrite, **_CLAIM)
  groups = plan(points, block.execution, block.max_stack, jax.default_backend(), jax.device_count())
  if resumable:  # the points found must be this sweep's, before anything trains
    _check_folders(workdir)
    _refuse_foreign(workdir, points)
  todo = [p for p, unfinished in zip(points, _unfinished(workdir, points))
          if not resumable or unfinished]
  shared = experiment.Shared(surrogate_root=os.path.join(workdir, 'surrogates'))
  _preflight(todo, shared)
  errors: dict[str, str] = {}
  with workdir_lib.locked(workdir, enabled=is_writer):
    if is_writer:
      claim_workdir(workdir, config, overwrite)
      workdir_lib.write_json(os.path.join(workdir, SWEEP_JSON), _sweep_record(
          config, axes, points, groups, workdir, config_spec,
          grid.split_config(file_config)[0] if file_config is not None else None))
    if todo:
      if verbose:
        modes = ', '.join(f'{g.name}: {len(g.points)} points {g.execution}' for g in groups)
        print(f'sweep {workdir}: {len(points)} points ({len(points) - len(todo)} done) in '
              f'{len(groups)} groups ({modes})', file=sys.stderr)
      bar = progress_bar(total=len(points), initial=len(points) - len(todo), unit='point',
                         desc='sweep', enabled=is_writer and experiment_config.log.progress)
      try:
        with nested_bars():
          for group in groups:
            if not any(_unfinished(workdir, group.points)):
              continue
            run_group = _run_vmapped if group.execution == 'vmap' else _run_sequential
            logging.info('sweep group %s: %d points, %s', group.name, len(group.points),
                         group.execution)
            errors.update(run_group(group, workdir, shared, bar))
      finally:
        bar.close()
      experiment.write_timing(workdir)
    elif verbose:
      print(f'{workdir} already holds the finished sweep:')
    return _report(workdir, axes, points, block.metrics, errors, verbose)


def _tuples(value):
  """JSON's lists back as tuples, as config files and command-line overrides give them."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def stored_sweep(workdir: str) -> tuple[list[Axis], list[Point], tuple[str, ...]]:
  """(axes, points, metrics) of the sweep config recorded in `workdir`'s sweep.json, the
  points expanded from it as the sweep did, each with its config. A missing or damaged
  sweep.json is one line (WorkdirError)."""
  path = os.path.join(workdir, SWEEP_JSON)
  if not os.path.exists(path):
    raise workdir_lib.WorkdirError(f'{workdir} holds no {SWEEP_JSON}: not a sweep workdir')
  record, problem = workdir_lib.read_object(path)
  if record is not None:
    try:
      stored = record.get('config')
      if not isinstance(stored, dict) or not isinstance(stored.get('sweep'), dict):
        raise ValueError('it holds no sweep config under `config`')
      config = ml_collections.ConfigDict(_tuples(stored))
      experiment_config, block = grid.split_config(config)
      points = grid.expand(config)
      axes = grid.axes_of(block, experiment_config)
      metrics = grid.tupled(block.get('metrics', grid.DEFAULT_METRICS))
      return axes, points, metrics
    except (KeyError, AttributeError, TypeError, ValueError, ConfigError) as e:
      problem = f'is damaged ({" ".join(str(e).split())[:160]})'
  raise workdir_lib.WorkdirError(
      f'{path} {problem}, so the points of this sweep are unknown: restore it, or run the '
      'sweep again with --overwrite (which trains every point again)')


def report_only(workdir: str, verbose: bool = True) -> list[dict]:
  """Rebuilds results.csv, results.jsonl and the figures of the sweep in `workdir` from the
  sweep config in its sweep.json and the points' results (`python -m abd_jax.sweep
  --report`). Points whose folder holds another run or no readable results get an `error`
  cell (their rows say why), never numbers."""
  axes, points, metrics = stored_sweep(workdir)
  return _report(workdir, axes, points, metrics, {}, verbose)
