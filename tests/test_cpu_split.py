"""The command lines split a CPU host into one JAX device per core (as far as the batch
sizes allow) so the data-parallel mesh uses every core; a user's own choice wins."""

import os
import subprocess
import sys

import pytest

from abd_jax import parallel
from cli import FAST, REPO, cli_command, read_json


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


@pytest.mark.slow
def test_cli_trains_data_parallel_over_the_cpu_cores(tmp_path):
  expected = parallel.cpu_device_count([64, 120], parallel.usable_cores())
  workdir = tmp_path / 'run'
  proc = subprocess.run(cli_command(workdir, *FAST, '--config.train.epochs=1'), cwd=REPO,
                        env=_env(PYTHONUNBUFFERED='1'), capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  said = f'the CPU runs as {expected} JAX devices, data parallel' in proc.stderr
  assert said == (expected > 1)
  results = read_json(workdir / 'results.json')
  assert 0.0 <= results['clean_acc'] <= 1.0 and results['epochs'] == 1
