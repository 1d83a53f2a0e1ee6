"""Shared fixtures. Tests run on the CPU with one device, and so do the command lines they
start (JAX_NUM_CPU_DEVICES=1 is inherited: the CLIs would otherwise split the CPU into one
device per core); the data-parallel tests start their own subprocesses with fake devices
(`fake_devices_env`), and tests/test_cpu_split.py checks the CLIs' split.

Every process of the suite (the pytest workers and the command lines they start) shares
one persistent XLA compilation cache, made for this run and removed at its end: most tests
compile the same few programs (the digits CNN's steps), and only the first compile of each
costs time."""

import os
import shutil
import tempfile
import warnings

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ['JAX_NUM_CPU_DEVICES'] = '1'
os.environ.pop('JAX_COMPILATION_CACHE_DIR', None)  # it would win over the suite's cache
if 'PYTEST_XDIST_WORKER' not in os.environ:  # the workers inherit the controller's folder
  os.environ['ABD_JAX_COMPILATION_CACHE'] = tempfile.mkdtemp(prefix='abd_jax_test_xla_')

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from abd_jax import compile_cache  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
compile_cache.enable()


def pytest_unconfigure(config):
  if 'PYTEST_XDIST_WORKER' not in os.environ:
    shutil.rmtree(os.environ['ABD_JAX_COMPILATION_CACHE'], ignore_errors=True)


class _MLP(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(64)(x))
    return nn.Dense(10)(x)


@pytest.fixture(scope='session')
def trained_digits_model():
  """(logits_fn, x, y): an MLP trained to ~97% on 8x8 digits; x float32 [300,8,8,1] in [0,1]."""
  digits = load_digits()
  x = (digits.images / 16.0).astype(np.float32)[..., None]
  y = digits.target.astype(np.int32)
  model = _MLP()
  params = model.init(jax.random.key(0), x[:1])
  tx = optax.adam(1e-2)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt):
    loss, g = jax.value_and_grad(
        lambda p: optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean())(params)
    upd, opt = tx.update(g, opt)
    return optax.apply_updates(params, upd), opt

  for _ in range(300):
    params, opt = step(params, opt)
  logits_fn = jax.jit(lambda xx: model.apply(params, xx))
  acc = float(jnp.mean(jnp.argmax(logits_fn(x), -1) == y))
  assert acc > 0.95, acc
  return logits_fn, jnp.asarray(x[:300]), jnp.asarray(y[:300])


def fake_devices_env(n: int, **extra) -> dict:
  """The environment of a subprocess that sees the CPU as `n` devices."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=f'--xla_force_host_platform_device_count={n}',
             **extra)
  env.pop('JAX_NUM_CPU_DEVICES')  # it would override the flag
  return env


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
  """With pytest-xdist's `--dist loadgroup` (pyproject.toml), the tests of a module that
  share a module-scoped fixture (a trained run, a sweep) go to one worker, which builds it
  once; every other test goes to whichever worker is free."""
  for item in items:
    info = getattr(item, '_fixtureinfo', None)
    if info is None:
      continue
    if any(d.scope == 'module' for name in info.names_closure
           for d in info.name2fixturedefs.get(name, ())):
      item.add_marker(pytest.mark.xdist_group(item.module.__name__))


class _GroupCheck:
  """After pytest-xdist's own hook: a grouped test's id must carry its group (`id@group`),
  else the scheduler ignores the group (pytest 9.2 with pytest-xdist 3.8) and both workers
  build every module fixture. Warns once instead of failing: the results stay right."""

  @pytest.hookimpl(trylast=True)
  def pytest_collection_modifyitems(self, config, items):
    if not (os.environ.get('PYTEST_XDIST_WORKER') == 'gw0' and config.getvalue('loadgroup')):
      return
    lost = [i.nodeid for i in items if any(i.iter_markers('xdist_group')) and '@' not in i.nodeid]
    if lost:
      warnings.warn(f'pytest-xdist did not group {len(lost)} tests (e.g. {lost[0]}): their '
                    'module fixtures are built by every worker; install pytest < 9.2 '
                    '(pyproject.toml)', pytest.PytestWarning, stacklevel=1)


def pytest_configure(config):
  config.pluginmanager.register(_GroupCheck(), 'abd_jax_group_check')
