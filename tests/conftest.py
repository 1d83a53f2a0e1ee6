"""Shared fixtures. Tests run on the CPU with one device, and so do the command lines they
start (JAX_NUM_CPU_DEVICES=1 is inherited: the CLIs would otherwise split the CPU into one
device per core); the data-parallel tests start their own subprocesses with fake devices
(`fake_devices_env`), and tests/test_cpu_split.py checks the CLIs' split."""

import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ['JAX_NUM_CPU_DEVICES'] = '1'

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
