"""The grid of a sweep config: product order, point names and configs, the one-line errors,
command-line overrides of the axes, and the flags that reproduce a point."""

import copy
import json
import textwrap

import ml_collections
import pytest
from absl import flags
from ml_collections import config_flags

from abd_jax import config as config_lib
from abd_jax.sweep import grid

EPS = grid.axis(('perturb.eps', 'perturb.step_size'), ((0.0, 0.0), (0.2, 0.05)))
ALPHA = grid.axis('attack.alpha', (0.2, 0.6, 1.0))


def sweep_config(axes, **block):
  c = config_lib.apply_digits_scale(config_lib.base_config())
  c.sweep = grid.sweep_block(axes, **block)
  return c


def experiment_config():
  return config_lib.apply_digits_scale(config_lib.base_config())


def test_product_order_names_overrides_and_point_configs():
  c = sweep_config({'eps': EPS, 'alpha': ALPHA}, seeds=(0, 1))
  c.lock()
  points = grid.expand(c)
  assert len(points) == 2 * 3 * 2 == 12
  assert [p.index for p in points] == list(range(12))
  assert len({p.name for p in points}) == 12
  # First axis outermost, seeds innermost.
  assert [p.name for p in points[:4]] == ['eps=0_alpha=0.2_seed=0', 'eps=0_alpha=0.2_seed=1',
                                          'eps=0_alpha=0.6_seed=0', 'eps=0_alpha=0.6_seed=1']
  assert points[-1].name == 'eps=0.2_alpha=1_seed=1'
  p = points[7]  # eps 2nd, alpha 1st, seed 2nd
  assert p.name == 'eps=0.2_alpha=0.2_seed=1'
  assert p.overrides == {'perturb.eps': 0.2, 'perturb.step_size': 0.05, 'attack.alpha': 0.2,
                         'seed': 1}
  assert list(p.overrides) == ['perturb.eps', 'perturb.step_size', 'attack.alpha', 'seed']
  for point in points:
    cfg = point.config
    # The zip axis moves its fields together; every override is in the point's config.
    assert cfg.perturb.step_size == {0.0: 0.0, 0.2: 0.05}[cfg.perturb.eps]
    assert {f: v for f, v in grid.flatten(cfg).items() if f in point.overrides} == point.overrides
    assert 'sweep' not in cfg and cfg.is_locked
    # Everything that is not swept is the experiment config's.
    assert cfg.train.epochs == 15 and cfg.dataset.name == 'digits'
  assert 'sweep' in c  # the sweep config itself is not changed


def test_one_seed_names_and_single_point():
  points = grid.expand(sweep_config({'alpha': ALPHA}))
  assert [p.name for p in points] == ['alpha=0.2', 'alpha=0.6', 'alpha=1']
  assert all(p.overrides['seed'] == 0 for p in points)
  (point,) = grid.expand(sweep_config({}, seeds=(3,)))
  assert point.name == 'base' and point.overrides == {'seed': 3} and point.config.seed == 3
  assert [p.name for p in grid.expand(sweep_config({}, seeds=(0, 1)))] == ['seed=0', 'seed=1']


def test_seeds_axis_is_always_last():
  c = sweep_config({'eps': EPS, 'alpha': ALPHA}, seeds=(4,))
  axes = grid.axes_of(c.sweep)
  assert [a.name for a in axes] == ['eps', 'alpha', 'seed']
  assert axes[0] == grid.Axis('eps', ('perturb.eps', 'perturb.step_size'),
                              ((0.0, 0.0), (0.2, 0.05)))
  assert axes[1].values == ((0.2,), (0.6,), (1.0,))  # one-field values as 1-tuples
  assert axes[-1] == grid.Axis('seed', ('seed',), ((4,),))


def test_an_int_for_a_float_field_becomes_a_float():
  points = grid.expand(sweep_config({'alpha': grid.axis('attack.alpha', (1,))}))
  assert type(points[0].overrides['attack.alpha']) is float
  assert type(points[0].config.attack.alpha) is float


@pytest.mark.parametrize('axis, names', [
    # .4g makes both 0.1: more digits keep them apart.
    (grid.axis('attack.alpha', (0.10001, 0.10002)), ['a=0.10001', 'a=0.10002']),
    # A zip shows its first field, every field once the first is the same.
    (grid.axis(('perturb.eps', 'perturb.step_size'), ((0.1, 0.025), (0.1, 0.05))),
     ['a=0.1-0.025', 'a=0.1-0.05']),
    (grid.axis('dataset.flip', (True, False)), ['a=true', 'a=false']),
    (grid.axis('train.milestones', ((10,), (5, 10), ())), ['a=10', 'a=5-10', 'a=empty']),
    (grid.axis('attack.pattern_file', ('x/y z.png', '')), ['a=x-y-z.png', 'a=empty']),
    (grid.axis('perturb.eps', (1e-05, 0.25)), ['a=1e-05', 'a=0.25']),
])
def test_point_names(axis, names):
  assert [p.name for p in grid.expand(sweep_config({'a': axis}))] == names


def test_sweep_block_stores_tuples():
  import numpy as np
  block = grid.sweep_block({'m': grid.axis('train.milestones', [[10], [5, 10]]),
                            'a': {'fields': ['attack.alpha'], 'values': np.array([0.5, 1.0])}},
                           seeds=[0, 1], metrics=['asr'])
  assert block.axes.m['values'] == ((10,), (5, 10)) and block.axes.m.fields == ('train.milestones',)
  assert block.axes.a['values'] == (0.5, 1.0) and type(block.axes.a['values'][0]) is float
  assert block.seeds == (0, 1) and block.metrics == ('asr',) and block.execution == 'auto'
  points = grid.expand(sweep_config({'m': grid.axis('train.milestones', [[10], [5, 10]])}))
  assert [p.config.train.milestones for p in points] == [(10,), (5, 10)]


def test_split_config_on_a_locked_config():
  c = sweep_config({'alpha': ALPHA})
  c.lock()
  experiment, block = grid.split_config(c)
  plain = experiment_config()
  plain.lock()
  assert experiment.to_json() == plain.to_json()
  assert experiment.is_locked and 'sweep' not in experiment
  assert block.axes.alpha['values'] == (0.2, 0.6, 1.0)
  assert 'sweep' in c and c.is_locked
  with pytest.raises(AttributeError):  # still locked: no new fields
    experiment.new_field = 1
  experiment, block = grid.split_config(plain)
  assert block is None and experiment.to_json() == plain.to_json()


def test_axis_order_survives_copies_and_round_trips():
  # Not alphabetical, so that a sorted key order would show.
  c = sweep_config({'zeta': ALPHA, 'eps': EPS, 'beta': grid.axis('perturb.steps', (3, 5))})
  want = ['zeta', 'eps', 'beta', 'seed']
  copies = [c, copy.deepcopy(c), c.copy_and_resolve_references(),
            ml_collections.ConfigDict(c.to_dict()),
            ml_collections.ConfigDict(json.loads(c.to_json())),
            # These two list the axes alphabetically: `axis_order` keeps the order.
            ml_collections.ConfigDict(copy.deepcopy(c).to_dict()),
            ml_collections.ConfigDict(json.loads(json.dumps(config_lib.to_dict(c),
                                                            sort_keys=True)))]
  for other in copies:
    assert [a.name for a in grid.axes_of(other.sweep)] == want
  assert list(c.sweep.to_dict()['axes']) == want[:-1]
  assert list(json.loads(c.to_json())['sweep']['axes']) == want[:-1]
  assert c.sweep.axis_order == tuple(want[:-1])
  assert grid.expand(copies[3])[1].name == 'zeta=0.2_eps=0_beta=5'
  # Without `axis_order`, the insertion order.
  del c.sweep['axis_order']
  assert [a.name for a in grid.axes_of(copy.deepcopy(c).sweep)] == want


CONFIG_FILE = '''
from abd_jax import config as config_lib
from abd_jax.sweep import grid

def get_config():
  c = config_lib.apply_digits_scale(config_lib.base_config())
  c.sweep = grid.sweep_block(axes={
      'eps': grid.axis(('perturb.eps', 'perturb.step_size'), ((0.0, 0.0), (0.1, 0.025))),
      'alpha': grid.axis('attack.alpha', (0.2, 0.6, 1.0))})
  return c
'''


def parse_config_file(path, *overrides):
  """The config as `--config=path --config.x=...` gives it (config_flags, locked)."""
  values = flags.FlagValues()
  argv = ['prog', f'--config={path}', *overrides]
  config_flags.DEFINE_config_file('config', None, 'sweep', flag_values=values, lock_config=True,
                                  sys_argv=argv)
  values(argv)
  return values.config


# config_flags loads the config file with a deprecated importlib call.
@pytest.mark.filterwarnings('ignore:the load_module:DeprecationWarning')
def test_command_line_overrides_of_axes_and_seeds(tmp_path):
  path = tmp_path / 'sweep_config.py'
  path.write_text(textwrap.dedent(CONFIG_FILE))
  default = parse_config_file(path)
  assert default.is_locked and len(grid.expand(default)) == 2 * 3
  c = parse_config_file(path, '--config.sweep.axes.alpha.values=(0.4, 1)',
                        '--config.sweep.axes.eps.values='
                        '((0.05, 0.0125), (0.1, 0.025), (0.3, 0.075))',
                        '--config.sweep.seeds=(0,1,2)', '--config.sweep.execution=sequential')
  assert c.sweep.seeds == (0, 1, 2) and c.sweep.execution == 'sequential'
  assert [a.name for a in grid.axes_of(c.sweep)] == ['eps', 'alpha', 'seed']
  points = grid.expand(c)
  assert len(points) == 3 * 2 * 3
  assert points[0].name == 'eps=0.05_alpha=0.4_seed=0'
  assert points[-1].overrides == {'perturb.eps': 0.3, 'perturb.step_size': 0.075,
                                  'attack.alpha': 1.0, 'seed': 2}
  # The order of the product (and of the figures' axes) can be changed too.
  swapped = grid.expand(parse_config_file(path, "--config.sweep.axis_order=('alpha', 'eps')"))
  assert [p.name for p in swapped[:2]] == ['alpha=0.2_eps=0', 'alpha=0.2_eps=0.1']
  # One seed given as a bare number is a 1-tuple.
  assert parse_config_file(path, '--config.sweep.seeds=5').sweep.seeds == (5,)
  with pytest.raises(grid.SweepError, match=r'sweep point eps=0_alpha=2: .*`attack.alpha` = 2.0'):
    grid.expand(parse_config_file(path, '--config.sweep.axes.alpha.values=(2,)'))


def test_overrides_to_flags_round_trip():
  overrides = {'perturb.eps': 1 / 3, 'perturb.step_size': 8 / 255, 'attack.alpha': 1e-05,
               'train.milestones': (10,), 'train.lr': 0.1, 'seed': 3, 'dataset.flip': True,
               'perturb.random_start': False, 'attack.position': 'top_left',
               'attack.pattern_file': '', 'model.name': 'resnet18', 'train.epochs': 2}
  args = grid.overrides_to_flags(overrides)
  assert '--config.train.milestones=(10,)' in args and '--config.dataset.flip=True' in args
  assert f'--config.perturb.eps={1 / 3!r}' in args
  base = config_lib.base_config()
  base.lock()
  values = flags.FlagValues()
  argv = ['prog', *args]
  config_flags.DEFINE_config_dict('config', base, flag_values=values, sys_argv=argv)
  values(argv)
  parsed = grid.flatten(values.config)
  for field, value in overrides.items():
    assert parsed[field] == value and type(parsed[field]) is type(value), field
  for milestones in ((), (5, 10)):
    (arg,) = grid.overrides_to_flags({'train.milestones': milestones})
    values = flags.FlagValues()
    config_flags.DEFINE_config_dict('config', config_lib.base_config(), flag_values=values,
                                    sys_argv=['prog', arg])
    values(['prog', arg])
    assert values.config.train.milestones == milestones


def test_point_flags_rebuild_the_point_config():
  for point in grid.expand(sweep_config({'eps': EPS, 'alpha': ALPHA}, seeds=(0, 7)))[::5]:
    values = flags.FlagValues()
    argv = ['prog', *grid.overrides_to_flags(point.overrides)]
    config_flags.DEFINE_config_dict('config', experiment_config(), flag_values=values,
                                    sys_argv=argv)
    values(argv)
    assert values.config.to_json() == point.config.to_json()


def axis_order(c, order):
  c.sweep.axis_order = order
  return c


@pytest.mark.parametrize('make, parts', [
    (lambda: experiment_config(), ['no `sweep` block', 'configs/sweeps']),
    (lambda: sweep_config({'e': grid.axis('perturb.epss', (0.1,))}),
     ['axis `e`', '`perturb.epss` is not a config field', 'did you mean `perturb.eps`?']),
    (lambda: sweep_config({'e': grid.axis('sweep.seeds', ((0,),))}),
     ['axis `e`', '`sweep.seeds`', 'cannot be swept']),
    (lambda: sweep_config({'e': EPS, 'f': grid.axis('perturb.step_size', (0.1,))}),
     ['axis `f`', '`perturb.step_size`', 'already swept by `e`']),
    (lambda: sweep_config({'e': grid.axis(('perturb.eps', 'perturb.eps'), ((0.1, 0.1),))}),
     ['axis `e`', '`perturb.eps`', 'already swept by it']),
    (lambda: sweep_config({'s': grid.axis('seed', (1, 2))}, seeds=(0, 1)),
     ['axis `s`', 'field `seed`', '`sweep.seeds`']),
    (lambda: sweep_config({'s': grid.axis('seed', (1, 2))}), ['axis `s`', 'field `seed`']),
    (lambda: sweep_config({'e': grid.axis('perturb.eps', ())}), ['axis `e` has no values']),
    (lambda: sweep_config({'e': grid.axis(('perturb.eps', 'perturb.step_size'),
                                          ((0.1, 0.025), (0.2,)))}),
     ['axis `e`', 'value 1 = (0.2,)', 'tuple of 2']),
    (lambda: sweep_config({'e': grid.axis('perturb.eps', (0.1, 0.2, 0.1))}),
     ['axis `e`', 'value 2 = 0.1', 'twice']),
    (lambda: sweep_config({'e': grid.axis('attack.alpha', ('high',))}),
     ['sweep point e=high', '`attack.alpha` = \'high\'', 'wrong type', 'float']),
    (lambda: sweep_config({'e': grid.axis('train.epochs', (2.5,))}),
     ['sweep point e=2.5', '`train.epochs` = 2.5', 'wrong type', 'an int']),
    (lambda: sweep_config({'e': grid.axis('attack.alpha', (True,))}),
     ['sweep point e=true', '`attack.alpha` = True', 'wrong type']),
    (lambda: sweep_config({'e': grid.axis('dataset.flip', (1,))}),
     ['sweep point e=1', '`dataset.flip` = 1', 'wrong type', 'bool']),
    (lambda: sweep_config({'e': grid.axis('train.milestones', ((10,), 5))}),
     ['sweep point e=5', '`train.milestones` = 5', 'wrong type', 'tuple']),
    (lambda: sweep_config({'eps': grid.axis('perturb.eps', (0.1, -1.0)), 'alpha': ALPHA}),
     ['sweep point eps=-1_alpha=0.2: config field `perturb.eps` = -1.0 is not allowed',
      'must be a number in']),
    (lambda: sweep_config({'alpha': ALPHA}, seeds=(0, 1), execution='parallel'),
     ['sweep.execution', "'parallel'", "'vmap'"]),
    (lambda: sweep_config({'alpha': ALPHA}, seeds=()), ['sweep.seeds = ()', 'non-empty']),
    (lambda: sweep_config({'alpha': ALPHA}, seeds=(0, 0.5)), ['sweep.seeds', 'integers']),
    (lambda: sweep_config({'alpha': ALPHA}, seeds=(1, 1)), ['sweep.seeds', 'twice']),
    (lambda: sweep_config({'alpha': ALPHA}, metrics=('asr', 3)), ['sweep.metrics']),
    (lambda: axis_order(sweep_config({'eps': EPS, 'alpha': ALPHA}), ('eps',)),
     ['sweep.axis_order', 'every axis', 'eps, alpha']),
    (lambda: axis_order(sweep_config({'eps': EPS, 'alpha': ALPHA}), ('eps', 'alpha', 'eps')),
     ['sweep.axis_order', 'every axis']),
])
def test_errors_are_one_line_and_name_what_is_wrong(make, parts):
  with pytest.raises(grid.SweepError) as info:
    grid.expand(make())
  message = str(info.value)
  assert '\n' not in message
  for part in parts:
    assert part in message, (part, message)


@pytest.mark.parametrize('name, part', [('my-axis', 'must be a Python identifier'),
                                        ('values', 'ConfigDict method'), ('seed', 'reserved')])
def test_axis_names_that_cannot_be_overridden(name, part):
  with pytest.raises(grid.SweepError, match=part):
    grid.sweep_block({name: ALPHA})


def test_structure_is_checked_before_any_point():
  # The bad value comes first in the product, the unknown field in the last axis.
  c = sweep_config({'a': grid.axis('attack.alpha', (-1.0,)), 'b': grid.axis('perturb.epz', (0.1,))})
  with pytest.raises(grid.SweepError, match='not a config field'):
    grid.expand(c)
