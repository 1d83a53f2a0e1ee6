"""Every validated field class gives a ConfigError naming the field, the value and the rule."""

import pytest

from abd_jax import config as config_lib
from abd_jax.config import ConfigError
from abd_jax.train.loop import steps_per_epoch


def bad(path, value):
  c = config_lib.base_config()
  *parents, leaf = path.split('.')
  node = c
  for p in parents:
    node = node[p]
  with c.unlocked():
    node[leaf] = value
  return c


@pytest.mark.parametrize('path, value, rule', [
    ('dataset.name', 'imagenet21k', 'must be one of'),          # unknown names
    ('model.name', 'resnet1000', 'must be one of'),
    ('perturb.name', 'pgd', 'must be one of'),
    ('train.optimizer', 'rmsprop', 'must be one of'),
    ('model.dtype', 'float16', 'must be one of'),
    ('perturb.eps', -0.1, 'must be a number in'),                 # budgets
    ('perturb.eps', 2.0, 'must be a number in'),                  # L-inf beyond the cube
    ('eval.step_size', -1.0, 'must be a number in'),
    ('dataset.test_fraction', 1.0, 'must be a number in'),        # fractions
    ('train.lr', 0.0, 'must be a number in'),
    ('train.epochs', 0, 'must be an integer >= 1'),               # counts
    ('train.batch_size', -4, 'must be an integer >= 1'),
    ('perturb.steps', 0, 'must be an integer >= 1'),
    ('seed', -3, 'must be an integer >= 0'),
    ('train.milestones', (90, 60), 'strictly increasing'),       # schedules
    ('dataset.channels', 2, 'must be one of'),
])
def test_bad_values_name_field_value_and_rule(path, value, rule):
  with pytest.raises(ConfigError) as info:
    config_lib.validate(bad(path, value))
  message = str(info.value)
  assert f'`{path}' in message and repr(value) in message and rule in message


def test_defaults_and_shipped_configs_validate():
  import importlib.util
  import os
  config_lib.validate(config_lib.base_config())
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  for name in sorted(os.listdir(os.path.join(repo, 'configs'))):
    if not name.endswith('.py'):
      continue
    spec = importlib.util.spec_from_file_location(name[:-3], os.path.join(repo, 'configs', name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for preset in (None, 'digits'):
      config_lib.validate(module.get_config(preset))
    with pytest.raises(ValueError, match='unknown preset'):
      module.get_config('nope')


def test_device_dependent_checks():
  c = config_lib.base_config()
  config_lib.validate_for_devices(c, 1)
  with pytest.raises(ConfigError, match='train.batch_size'):
    config_lib.validate_for_devices(c, 3)
  with pytest.raises(ConfigError, match='at most the 100 training images'):
    steps_per_epoch(c, 100)


def test_types_are_enforced_by_the_config_itself():
  c = config_lib.base_config()
  with pytest.raises(TypeError, match='batch_size'):
    c.train.batch_size = 12.5


def test_config_is_locked_against_typos():
  c = config_lib.base_config()
  c.lock()
  with pytest.raises(AttributeError):
    c.train.lrr = 0.1


def distributed(**fields):
  c = config_lib.base_config()
  with c.unlocked():
    c.distributed.update(fields)
  return c


JOB = dict(initialize=True, coordinator_address='10.0.0.1:1234', num_processes=2, process_id=1)


@pytest.mark.parametrize('fields, field, rule', [
    (dict(JOB, process_id=2), 'process_id', 'must be in [0, 1]'),
    (dict(JOB, coordinator_address='10.0.0.1'), 'coordinator_address', "'host:port'"),
    (dict(JOB, coordinator_address='10.0.0.1:0'), 'coordinator_address', 'port 1-65535'),
    (dict(JOB, process_id=-1), 'process_id', 'needs coordinator_address, num_processes'),
    (dict(initialize=True, num_processes=2), 'coordinator_address', 'must be given too'),
    (dict(JOB, initialize=False), 'coordinator_address', 'only with distributed.initialize'),
    (dict(local_device_ids=(0, 0)), 'local_device_ids', 'distinct device ids'),
    (dict(local_device_ids=(1,)), 'local_device_ids', 'only with distributed.initialize'),
    (dict(heartbeat_timeout=0), 'heartbeat_timeout', 'must be an integer >= 1'),
])
def test_bad_distributed_fields_name_the_field(fields, field, rule):
  with pytest.raises(ConfigError) as info:
    config_lib.validate(distributed(**fields))
  assert f'`distributed.{field}`' in str(info.value) and rule in str(info.value)


def test_a_job_jax_detects_or_one_given_in_full_validates():
  config_lib.validate(distributed(initialize=True))  # TPU / SLURM / Open MPI
  config_lib.validate(distributed(**JOB, local_device_ids=(0, 1), heartbeat_timeout=10))


def test_the_smoke_preset_shortens_every_phase():
  c = config_lib.load_file('configs/dst.py:digits,smoke')
  epochs = {f'{b}.{f}': v for b, block in c.items() if isinstance(block, type(c))
            for f, v in block.items() if f.endswith('epochs') and b != 'log'}
  assert epochs and max(epochs.values()) <= 1, epochs
  assert c.perturb.steps <= 2 and c.defense.max_steps <= 2 and c.train.milestones == ()
  config_lib.validate(c)
