"""The command lines split a CPU host into one JAX device per core (as far as the batch
sizes allow) so the data-parallel mesh uses every core; a user's own choice wins."""

import os
import subprocess
import sys

import pytest

from abd_jax import parallel
from cli import REPO


@pytest.mark.parametrize('sizes,cores,expected', [
    ([64, 120], 2, 2),
    ([64, 120], 8, 2),   # 64 / 4 < 32 images per device
    ([128, 128], 4, 4),
    ([128, 120], 4, 2),  # 120 / 4 < 32
    ([100], 4, 2),       # 4 divides 100 but leaves 25 per device
    ([63, 120], 2, 1),   # 2 does not divide 63
    ([64], 1, 1),
    ([32, 64], 2, 1),    # 32 / 2 < 32
])
def test_cpu_device_count(sizes, cores, expected):
  assert parallel.cpu_device_count(sizes, cores) == expected


_SPLIT = ('from abd_jax import parallel; n = parallel.split_cpu([64, 120]); import jax; '
          'print(n, jax.device_count())')


def _env(**extra):
  env = dict(os.environ, JAX_PLATFORMS='cpu', **extra)
  env.pop('JAX_NUM_CPU_DEVICES', None)  # conftest's, for the rest of the suite
  env.pop('XLA_FLAGS', None)
  env.update(extra)
  return env


@pytest.mark.parametrize('extra,user_devices', [
    ({}, None),
    ({'JAX_NUM_CPU_DEVICES': '1'}, 1),
    ({'XLA_FLAGS': '--xla_force_host_platform_device_count=3'}, 3)])
def test_split_cpu_unless_the_user_chose(extra, user_devices):
  out = subprocess.run([sys.executable, '-c', _SPLIT], cwd=REPO, env=_env(**extra),
                       capture_output=True, text=True, check=True).stdout.split()
  n, devices = int(out[0]), int(out[1])
  if user_devices is None:
    expected = parallel.cpu_device_count([64, 120], parallel.usable_cores())
    assert (n, devices) == (expected if expected > 1 else 0, expected)
  else:
    assert (n, devices) == (0, user_devices)


# The command lines' split itself (the message, data-parallel training on it) is run for
# every shipped config by tests/test_devices.py.
