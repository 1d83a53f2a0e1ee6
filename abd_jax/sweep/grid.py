"""The grid of a sweep config: its axes, its points, and the command line of each point.

A sweep config is an ordinary experiment config plus a `sweep` block:

    c.sweep = grid.sweep_block(
        axes={'eps': grid.axis(('perturb.eps', 'perturb.step_size'),
                               ((0.0, 0.0), (0.1, 0.025), (0.2, 0.05))),
              'alpha': grid.axis('attack.alpha', (0.2, 0.6, 1.0))},
        seeds=(0, 1))

The axes form a product in the order given, the first outermost, with the seeds innermost
(always the last axis, field `seed`). `expand` checks the whole grid (every field, and the
type and range of every point) before anything is loaded or compiled, and raises
`SweepError` with a one-line message naming the point, the field and the value. Every axis
can be overridden on the command line, e.g. `--config.sweep.axes.alpha.values="(0.2, 1.0)"`,
`--config.sweep.seeds="(0,1,2)"` or `--config.sweep.axis_order="('alpha','eps')"`.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import itertools
import json
import re
from typing import Any, Mapping, Sequence

import ml_collections
import numpy as np

from abd_jax import config as config_lib
from abd_jax.errors import ConfigError
from abd_jax.workdir import flatten_dict

EXECUTIONS = ('auto', 'vmap', 'sequential')
DEFAULT_METRICS = ('asr', 'clean_acc', 'robust_acc')
# The numeric result keys a run can write to results.json (what `sweep.metrics` may draw):
# the training loop's, then the defenses' (the README's "Result keys"). There is no
# registry below the sweep to read them from; tests/test_sweep_reliability.py checks this
# list against the keys the training loop and the defenses' summaries produce.
_MODEL_KEYS = ('clean_acc', 'robust_acc', 'asr', 'backdoor_acc')
RESULT_KEYS = frozenset((
    *_MODEL_KEYS, 'train_loss', 'train_acc', 'epochs', 'steps', 'num_params',
    # removal defenses (detection.detection_summary) and their detectors / sub-models
    'poison_total', 'poison_removed', 'removed_total', 'kept_fraction', 'kept_poison_rate',
    'precision', 'recall', 'detection_auroc',
    *(f'{phase}_{k}' for phase in ('detector', 'isolation', 'finetune') for k in _MODEL_KEYS[:3]),
    'mean_steps_clean', 'mean_steps_poisoned', 'capped_fraction',  # pgd_steps, pipeline
    'otsu_threshold', 'isolation_threshold', 'labelled_threshold',  # aabl, abl, dbd
    *(f'{phase}_{k}' for phase in ('backdoored', 'teacher', 'warmup')
      for k in ('clean_acc', 'asr')),
    'clean_size', 'fp_prune_ratio', 'fp_pruned_channels', 'fp_channels',  # fp, nad
    'dp_clip', 'dp_noise', 'cbd_mi_weight',  # dpsgd, cbd
    *(f'dst_{subset}_{k}' for subset in ('clean', 'suspicious', 'poisoned')
      for k in ('size', 'poisons')),
    'trained_fraction', 'trained_poison_rate',  # dst
))
SEED_FIELD = 'seed'
NO_SWEEP = ('the config has no `sweep` block: a sweep config is an experiment config plus '
            '`c.sweep = grid.sweep_block(...)` (see configs/sweeps/)')
_UNSAFE = re.compile(r'[^A-Za-z0-9._+=-]')
_TYPE_NAMES = {bool: 'a bool (True or False)', int: 'an int', float: 'a float (an int is fine)',
               str: 'a str', tuple: 'a tuple'}


class SweepError(ValueError):
  """The sweep cannot be expanded. The one-line message names the axis or point, the field,
  the value and what is allowed."""


@dataclasses.dataclass(frozen=True)
class Axis:
  """One axis of the product: `values[i]` holds one value per field (a 1-tuple for a
  one-field axis), all fields moving together, as the sweep block gives them (an int for a
  float field stays an int here; `Point.overrides` holds the float)."""
  name: str
  fields: tuple[str, ...]
  values: tuple[tuple, ...]


@dataclasses.dataclass(frozen=True)
class Point:
  """One run of the grid. `overrides`: dotted field -> value in axis order, `seed` last,
  each value as `config` holds it (an int given for a float field is a float here).
  `config`: the validated, locked experiment config of this point (no `sweep` block)."""
  index: int
  name: str
  overrides: dict[str, Any]
  config: ml_collections.ConfigDict


# ------------------------------------------------------------------------ building blocks


def tupled(value: Any) -> Any:
  """Lists and arrays (at any depth) as tuples of Python scalars: ConfigDict keeps lists as
  lists, while tuple fields and config_flags' tuple overrides hold tuples."""
  if isinstance(value, np.ndarray):
    value = value.tolist()
  if isinstance(value, (list, tuple)):
    return tuple(tupled(v) for v in value)
  return value.item() if isinstance(value, np.generic) else value


def axis(fields: str | Sequence[str], values: Sequence) -> dict:
  """One axis for `sweep_block`. `fields`: a dotted config field, or several that move
  together (a zip); `values`: that field's values, or for a zip one tuple of len(fields)
  per point along the axis. Lists and arrays become tuples."""
  fields = (fields,) if isinstance(fields, str) else tupled(fields)
  return {'fields': fields, 'values': tupled(values)}


def _check_name(name: Any) -> None:
  if not isinstance(name, str) or not name.isidentifier():
    raise SweepError(f'sweep axis name {name!r} is not allowed: an axis name must be a Python '
                     'identifier (letters, digits, _), e.g. `eps`')
  if name == SEED_FIELD:
    raise SweepError('sweep axis name `seed` is reserved for the seeds axis: set the seeds with '
                     '`sweep.seeds`')
  # `--config.sweep.axes.NAME.values=...` resolves NAME as an attribute first.
  if hasattr(ml_collections.ConfigDict, name):
    raise SweepError(f'sweep axis name `{name}` is not allowed: it is the name of a ConfigDict '
                     'method, so a command-line override could not reach it; choose another name')


def sweep_block(axes: Mapping[str, Mapping], seeds: Sequence[int] = (0,),
                execution: str = 'auto', metrics: Sequence[str] = DEFAULT_METRICS,
                max_stack: int = 64) -> ml_collections.ConfigDict:
  """The `sweep` entry of a config: `axes` {name: axis(...)} in product order (the first
  outermost), `seeds` (the innermost axis), `execution` (one of EXECUTIONS: how the engine
  runs the points), `metrics` (the result keys the figures draw) and `max_stack` (the most
  runs one vmapped program steps at once; larger groups are split, bounding memory).
  Everything is stored as tuples, so that every entry can be overridden from the command
  line.

  `axis_order` records the order of `axes`: a ConfigDict's keys, its `to_dict()` once
  copied, and JSON written with sorted keys all come back in alphabetical order.
  Overriding it (e.g. `--config.sweep.axis_order="('alpha','eps')"`) reorders the product
  and swaps the axes of the figures.
  """
  block = ml_collections.ConfigDict()
  block.axes = ml_collections.ConfigDict(sort_keys=False)
  for name, entry in axes.items():
    _check_name(name)
    if not hasattr(entry, 'keys') or set(entry.keys()) != {'fields', 'values'}:
      raise SweepError(f'sweep axis `{name}` must be grid.axis(fields, values), got {entry!r}')
    entry = axis(entry['fields'], entry['values'])
    if not isinstance(entry['values'], tuple):
      raise SweepError(f'sweep axis `{name}`: values = {entry["values"]!r} must be a tuple or '
                       'list of values')
    block.axes[name] = ml_collections.ConfigDict(entry)
  block.axis_order = tuple(block.axes.keys())
  seeds = tupled(seeds)
  block.seeds = seeds if isinstance(seeds, tuple) else (seeds,)
  block.execution = execution
  block.metrics = (metrics,) if isinstance(metrics, str) else tupled(metrics)
  block.max_stack = max_stack
  return block


def flatten(config: Mapping | ml_collections.ConfigDict) -> dict[str, Any]:
  """{'a': {'b': 1}} -> {'a.b': 1}; a ConfigDict is read as its `to_dict()`."""
  if isinstance(config, ml_collections.ConfigDict):
    config = config.to_dict()
  return flatten_dict(config)


split_config = config_lib.split_sweep


# ------------------------------------------------------------------------ the axes


def _get(block: Any, key: str, default: Any) -> Any:
  return block[key] if key in block else default


def _axis_entries(block: Any) -> list[tuple[str, Any]]:
  """(name, entry) in `axis_order`, or without one in the order the axes were inserted."""
  axes = _get(block, 'axes', None)
  if axes is None:
    axes = {}
  if isinstance(axes, ml_collections.ConfigDict):
    # keys() of a copied ConfigDict is sorted; its JSON keeps the insertion order.
    names = list(json.loads(axes.to_json()))
  else:
    names = list(axes)
  order = _get(block, 'axis_order', None)
  if order is not None:
    order = tupled(order)
    order = (order,) if isinstance(order, str) else order
    if sorted(order) != sorted(names):
      raise SweepError(f'sweep.axis_order = {order!r} is not allowed: must list every axis of '
                       f'sweep.axes once: {", ".join(names) or "(none)"}')
    names = list(order)
  return [(name, axes[name]) for name in names]


def _check_seeds(seeds: Any) -> tuple[int, ...]:
  seeds = tupled(seeds)
  seeds = seeds if isinstance(seeds, tuple) else (seeds,)
  if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
    raise SweepError(f'sweep.seeds = {seeds!r} is not allowed: must be a non-empty tuple of '
                     'integers >= 0, e.g. (0, 1, 2)')
  if len(set(seeds)) != len(seeds):
    raise SweepError(f'sweep.seeds = {seeds!r} is not allowed: lists a seed twice')
  return seeds


def check_block(block: Any) -> None:
  """The entries of the block other than the axes: `execution`, `metrics`, `max_stack`."""
  execution = _get(block, 'execution', 'auto')
  if execution not in EXECUTIONS:
    raise SweepError(f'sweep.execution = {execution!r} is not allowed: must be one of '
                     + ', '.join(map(repr, EXECUTIONS)))
  metrics = tupled(_get(block, 'metrics', DEFAULT_METRICS))
  if not isinstance(metrics, tuple) or not all(isinstance(m, str) and m for m in metrics):
    raise SweepError(f'sweep.metrics = {metrics!r} is not allowed: must be a tuple of result '
                     "names, e.g. ('asr', 'clean_acc')")
  unknown = [m for m in metrics if m not in RESULT_KEYS]
  if unknown:  # found now, not after the grid trained and its figures left the name out
    close = difflib.get_close_matches(unknown[0], sorted(RESULT_KEYS), n=1)
    hint = f' (did you mean `{close[0]}`?)' if close else ''
    raise SweepError(f'sweep.metrics = {metrics!r} is not allowed: `{unknown[0]}` is not a '
                     f'result key a run writes{hint}; e.g. {", ".join(DEFAULT_METRICS)}, '
                     'train_loss, kept_poison_rate (the README lists them)')
  max_stack = _get(block, 'max_stack', 64)
  if isinstance(max_stack, bool) or not isinstance(max_stack, int) or max_stack < 1:
    raise SweepError(f'sweep.max_stack = {max_stack!r} is not allowed: must be an integer >= 1')


def _check_field(name: str, field: Any, known: set[str] | None) -> None:
  if not isinstance(field, str) or not field:
    raise SweepError(f'sweep axis `{name}`: field {field!r} is not allowed: fields are dotted '
                     "config field names, e.g. 'perturb.eps'")
  if field == 'sweep' or field.startswith('sweep.'):
    raise SweepError(f'sweep axis `{name}`: field `{field}` is part of the sweep block and '
                     'cannot be swept')
  if field == SEED_FIELD:
    raise SweepError(f'sweep axis `{name}`: field `seed` is swept by `sweep.seeds`, not by an '
                     'axis, e.g. --config.sweep.seeds="(0,1,2)"')
  if known is not None and field not in known:
    close = difflib.get_close_matches(field, sorted(known), n=1)
    hint = f' (did you mean `{close[0]}`?)' if close else ''
    raise SweepError(f'sweep axis `{name}`: `{field}` is not a config field{hint}')


def axes_of(block: Any, config: ml_collections.ConfigDict | None = None) -> list[Axis]:
  """The axes of a sweep block in product order, the seeds axis `Axis('seed', ('seed',),
  ((s,), ...))` always last. Checks their structure; with the experiment `config`, also
  that every field exists in it. Raises `SweepError`."""
  check_block(block)
  seeds = _check_seeds(_get(block, 'seeds', (0,)))
  known = set(flatten(config)) if config is not None else None
  axes, owner = [], {}
  for name, entry in _axis_entries(block):
    _check_name(name)
    if entry is None or 'fields' not in entry or 'values' not in entry:
      raise SweepError(f'sweep axis `{name}` must have `fields` and `values` '
                       '(build it with grid.axis(fields, values))')
    fields, values = tupled(entry['fields']), tupled(entry['values'])
    fields = (fields,) if isinstance(fields, str) else fields
    if not isinstance(fields, tuple) or not fields:
      raise SweepError(f'sweep axis `{name}`: fields = {fields!r} is not allowed: must name at '
                       'least one config field')
    for field in fields:
      _check_field(name, field, known)
      if field in owner:
        other = 'it' if owner[field] == name else f'`{owner[field]}`'
        raise SweepError(f'sweep axis `{name}`: field `{field}` is already swept by {other}: a '
                         'field can be in one axis only (tie fields with a zip axis)')
      owner[field] = name
    if not isinstance(values, tuple) or not values:
      raise SweepError(f'sweep axis `{name}` has no values: values = {values!r} must be a '
                       'non-empty tuple')
    rows = []
    for i, row in enumerate(values):
      if len(fields) == 1:
        row = (row,)
      elif not isinstance(row, tuple) or len(row) != len(fields):
        raise SweepError(f'sweep axis `{name}`: value {i} = {row!r} is not allowed: the axis '
                         f'ties {len(fields)} fields ({", ".join(fields)}), so each value must '
                         f'be a tuple of {len(fields)}')
      if row in rows:
        raise SweepError(f'sweep axis `{name}`: value {i} = {row if len(fields) > 1 else row[0]!r}'
                         ' is listed twice: every value must be different')
      rows.append(row)
    axes.append(Axis(name, fields, tuple(rows)))
  axes.append(Axis(SEED_FIELD, (SEED_FIELD,), tuple((s,) for s in seeds)))
  return axes


# ------------------------------------------------------------------------ the points


def value_label(value: Any, precise: bool = False) -> str:
  """`value` as point names and figure ticks show it: floats `.4g` (repr when `precise`),
  booleans true/false, tuples joined by '-', characters other than [A-Za-z0-9._+=-] as '-'."""
  if isinstance(value, bool):
    text = 'true' if value else 'false'
  elif isinstance(value, float):
    text = repr(value) if precise else f'{value:.4g}'
  elif isinstance(value, (tuple, list)):
    text = '-'.join(value_label(v, precise) for v in value) or 'empty'
  elif value is None or value == '':
    text = 'none' if value is None else 'empty'
  else:
    text = str(value)
  return _UNSAFE.sub('-', text)


def axis_labels(ax: Axis) -> list[str]:
  """One short, distinct label per value of `ax`: the first field's value (`.4g`); more
  digits, then every field of a zip, only when that is what keeps the labels apart."""
  labels: list[str] = []
  for whole, precise in ((False, False), (False, True), (True, False), (True, True)):
    labels = [value_label(row if whole else row[0], precise) for row in ax.values]
    if len(set(labels)) == len(labels):
      return labels
  return [f'{i}-{label}' for i, label in enumerate(labels)]  # sanitizing merged two strings


def _wrong_type(name: str, field: str, value: Any, wanted: Any) -> SweepError:
  kind = _TYPE_NAMES.get(type(wanted), type(wanted).__name__)
  return SweepError(f'sweep point {name}: field `{field}` = {value!r} has the wrong type: '
                    f'`{field}` wants {kind}')


def _apply(experiment: ml_collections.ConfigDict, name: str,
           overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """A validated, locked copy of `experiment` with `overrides` set."""
  config = copy.deepcopy(experiment)
  for field, value in overrides.items():
    *parents, leaf = field.split('.')
    node = config
    for part in parents:
      node = node[part]
    current = node[leaf]
    # ConfigDict turns True into 1.0 for a float field and lets None into any field.
    if (value is None and current is not None) or (isinstance(value, bool)
                                                   != isinstance(current, bool)):
      raise _wrong_type(name, field, value, current)
    try:
      node[leaf] = value
    except TypeError:
      raise _wrong_type(name, field, value, current) from None
  try:
    config_lib.validate(config)
  except ConfigError as e:
    raise SweepError(f'sweep point {name}: {e}') from None
  config.lock()
  return config


def expand(config: ml_collections.ConfigDict) -> list[Point]:
  """Every point of the sweep config, the first axis outermost and the seeds innermost.

  Checks the structure of all axes first, then the type and range of every point (each
  point config passes `abd_jax.config.validate`); nothing is loaded or compiled. Point
  names are built from the axis names and values, e.g. `eps=0.1_alpha=0.2`, with
  `_seed=1` only when there is more than one seed; one point without axes is `base`.
  """
  experiment, block = split_config(config)
  if block is None:
    raise SweepError(NO_SWEEP)
  axes = axes_of(block, experiment)
  named = [ax for ax in axes if ax is not axes[-1] or len(ax.values) > 1]
  labels = {ax.name: axis_labels(ax) for ax in named}
  points = []
  for index, combo in enumerate(itertools.product(*(range(len(ax.values)) for ax in axes))):
    name = '_'.join(f'{ax.name}={labels[ax.name][i]}'
                    for ax, i in zip(axes, combo) if ax.name in labels) or 'base'
    overrides = {}
    for ax, i in zip(axes, combo):
      overrides.update(zip(ax.fields, ax.values[i]))
    point_config = _apply(experiment, name, overrides)
    values = flatten(point_config)
    points.append(Point(index, name, {f: values[f] for f in overrides}, point_config))
  return points


# ------------------------------------------------------------------------ command line


def flag_value(value: Any) -> str:
  """`value` as `--config.FIELD=` text that config_flags parses back to exactly `value`."""
  value = tupled(value)
  if isinstance(value, (float, tuple)):
    return repr(value)  # floats round-trip exactly; a tuple is parsed as a Python literal
  return str(value)


def overrides_to_flags(overrides: Mapping[str, Any], flag: str = 'config') -> list[str]:
  """`--config.FIELD=VALUE` arguments (one argv entry each, not shell-quoted) that give a
  point's values on the command line of `python -m abd_jax.main`."""
  return [f'--{flag}.{field}={flag_value(value)}' for field, value in overrides.items()]
