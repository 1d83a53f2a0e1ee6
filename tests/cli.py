"""Runs the real command line in a subprocess, as a user would."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Small and fast: 2-step PGD, few epochs, no per-epoch robust eval until the end.
FAST = ('--config.train.epochs=3', '--config.perturb.steps=2', '--config.eval.steps=3',
        '--config.log.progress=false')


def cli_command(workdir, *overrides, config='configs/quickstart.py'):
  return [sys.executable, '-m', 'abd_jax.main', f'--config={config}', f'--workdir={workdir}',
          *overrides]


def cli_env(**extra):
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONUNBUFFERED='1', **extra)
  if 'XLA_FLAGS' in extra:  # fake devices: JAX_NUM_CPU_DEVICES (conftest) would override them
    env.pop('JAX_NUM_CPU_DEVICES', None)
  else:
    env.pop('XLA_FLAGS', None)
  return env


def run_cli(workdir, *overrides, config='configs/quickstart.py', check=True, timeout=600):
  proc = subprocess.run(cli_command(workdir, *overrides, config=config), cwd=REPO, env=cli_env(),
                        capture_output=True, text=True, timeout=timeout)
  if check and proc.returncode != 0:
    raise AssertionError(f'exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}')
  return proc


def read_json(path):
  with open(path) as f:
    return json.load(f)


def read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def load_config(spec, **overrides):
  """configs/X.py[:preset] with dotted overrides (block__field=value), as the command line
  would build it, progress off, validated."""
  from abd_jax import config as config_lib
  c = config_lib.from_file(spec)
  c.unlock()
  for dotted, value in overrides.items():
    block, field = dotted.split('__')
    c[block][field] = value
  c.log.progress = False
  config_lib.validate(c)
  return c
