"""What a reproduction script declares: the sweeps it runs (arms) and the paper tables it
is compared with.

    ARMS = lambda data: [
        Arm('linf', keys={'training': 'linf'}, config=base('configs/cat.py', data),
            vary=(Vary('attack', ...),)),
    ]
    EXPERIMENT = Reproduction('gao_table1', papers=('gao_table1',), arms=ARMS,
                              metrics=('clean_acc', 'asr'))

Each arm is one `abd_jax.sweep` run (its `vary` axes form the grid); each of its points
becomes a measured row whose key cells are the arm's `keys` plus, per axis, the label of
the point's value (the paper's label, e.g. `8/255`, where the digits value differs).
"""

from __future__ import annotations

import copy
import dataclasses
import os
from typing import Callable, Mapping, Sequence

import ml_collections

from abd_jax import config as config_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The data a script can run on; `digits32` is digits resized to 32x32 (bilinear).
DATA = ('digits', 'digits32', 'cifar10', 'gtsrb', 'tiny_imagenet')
OFFLINE = ('digits', 'digits32')
NEEDS = {'cifar10': 'CIFAR-10', 'gtsrb': 'GTSRB', 'tiny_imagenet': 'Tiny-ImageNet'}


@dataclasses.dataclass(frozen=True)
class Vary:
  """One swept axis. `name`: the axis and the key column of its rows; `fields`: the dotted
  config field(s) it sets (several move together); `values`: one value (a tuple for
  several fields) per point; `labels`: the key cell of each value (the paper's notation),
  default the value itself."""
  name: str
  fields: str | tuple[str, ...]
  values: tuple
  labels: tuple[str, ...] | None = None

  def __post_init__(self):
    if self.labels is not None and len(self.labels) != len(self.values):
      raise ValueError(f'Vary {self.name!r}: {len(self.labels)} labels for {len(self.values)} '
                       'values')

  def label(self, index: int) -> str:
    if self.labels is not None:
      return self.labels[index]
    value = self.values[index]
    return str(value[0] if isinstance(value, tuple) else value)

  def first_field(self) -> str:
    return self.fields if isinstance(self.fields, str) else self.fields[0]

  def shrunk(self, count: int) -> 'Vary':
    """The first `count` points (at most) and the last one."""
    keep = sorted({*range(min(count - 1, len(self.values))), len(self.values) - 1})
    return dataclasses.replace(
        self, values=tuple(self.values[i] for i in keep),
        labels=None if self.labels is None else tuple(self.labels[i] for i in keep))


@dataclasses.dataclass(frozen=True)
class Arm:
  """One sweep of a reproduction: an experiment config, its axes and its rows' fixed keys."""
  name: str
  keys: Mapping[str, str]
  config: ml_collections.ConfigDict
  vary: tuple[Vary, ...] = ()
  seeds: tuple[int, ...] = (0,)


@dataclasses.dataclass(frozen=True)
class Reproduction:
  """A table or figure of a paper, reproduced. `papers`: the experiments/paper/ files it is
  compared with; `arms(data)`: the sweeps for `data` (one of `datasets`); `metrics`: the
  result keys shown beside the paper's columns of the same name, or of the name
  `paper_columns[metric]` where the paper names it differently."""
  name: str
  papers: tuple[str, ...]
  arms: Callable[[str], Sequence[Arm]]
  metrics: tuple[str, ...] = ('clean_acc', 'asr')
  datasets: tuple[str, ...] = ('digits', 'cifar10')
  description: str = ''
  paper_columns: Mapping[str, str] = dataclasses.field(default_factory=dict)

  def paper_column(self, metric: str) -> str:
    return self.paper_columns.get(metric, metric)


class ReproductionError(ValueError):
  """A reproduction cannot run as asked; the one-line message names the flag, file or arm."""


def check_data(data: str, allowed: Sequence[str]) -> None:
  if data not in allowed:
    raise ValueError(f'--data={data!r} is not allowed: this experiment runs on '
                     + ', '.join(allowed))


def load(spec: str, data: str, **overrides) -> ml_collections.ConfigDict:
  """`configs/X.py[:presets]` (relative to the repository) for `data`: the `digits` preset
  for digits and digits32 (resized to 32x32, bilinear, nothing else changed), the file's
  own dataset for cifar10, the dataset swapped in otherwise. `overrides`: dotted fields
  (`train__epochs=8` for `train.epochs`) set after the presets. Unlocked, unvalidated."""
  path, _, preset = spec.partition(':')
  presets = [p for p in preset.split(',') if p]
  if data in OFFLINE:
    presets.append('digits')
  config = config_lib.load_file(os.path.join(REPO, path) + (':' + ','.join(presets) if presets else ''))
  config.unlock()
  if data == 'digits32':
    config.dataset.update(image_size=32, resize_method='bilinear')
  elif data not in OFFLINE and data != 'cifar10':
    config.dataset.name = data
  for dotted, value in overrides.items():
    *parents, leaf = dotted.split('__')
    node = config
    for part in parents:
      node = node[part]
    node[leaf] = value
  return config


# The metrics of every arm's sweep figures. The same for every experiment, so that two
# experiments running the same arm share its run (the rows hold every result key anyway).
SWEEP_METRICS = ('asr', 'clean_acc')


def sweep_config(arm: Arm) -> ml_collections.ConfigDict:
  """The arm as a sweep config for `abd_jax.sweep.engine.run`."""
  from abd_jax.sweep import grid
  config = copy.deepcopy(arm.config)
  config.unlock()
  config.log.progress = False
  config.sweep = grid.sweep_block(
      axes={v.name: grid.axis(v.fields, v.values) for v in arm.vary}, seeds=arm.seeds,
      execution='sequential', metrics=SWEEP_METRICS)
  return config


def shrink(arm: Arm) -> Arm:
  """The arm at test size: every `*_epochs` field at most 1 (no lr steps), 2-step attacks,
  the first axis at 2 points and the others at 1, one seed."""
  config = copy.deepcopy(arm.config)
  config.unlock()
  for block in config.values():
    if isinstance(block, ml_collections.ConfigDict):
      for field, value in block.items():
        if field.endswith('epochs') and isinstance(value, int) and value > 1:
          block[field] = 1
  config.train.milestones = ()
  config.perturb.steps = min(config.perturb.steps, 2)
  config.eval.steps = min(config.eval.steps, 2)
  vary = tuple(v.shrunk(2 if i == 0 else 1) for i, v in enumerate(arm.vary))
  return dataclasses.replace(arm, config=config, vary=vary, seeds=arm.seeds[:1])
