"""Quickstart: PGD adversarial training of a small CNN on scikit-learn's digits (offline,
a few minutes on 2 CPU cores). Standard training: `--config.perturb.name=none`."""

from abd_jax import config as config_lib


def get_config(preset=None):
  c = config_lib.apply_digits_scale(config_lib.base_config())
  c.perturb.name = 'linf'
  return config_lib.apply_preset(c, preset, 'configs/quickstart.py')
