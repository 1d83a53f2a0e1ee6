"""Quickstart: a BadNets-poisoned digits training set (opaque 3x3 checkerboard, dirty-label,
10% relabelled to class 0) and PGD adversarial training of a small CNN on it; offline, about
a minute on 2 CPU cores. Reports clean_acc, robust_acc and asr. Standard training:
`--config.perturb.name=none`; no poisoning: `--config.attack.name=none`."""

from abd_jax import config as config_lib


def get_config(preset=None):
  c = config_lib.apply_attack_defaults(config_lib.base_config(), 'badnets')
  c = config_lib.apply_digits_scale(c)
  c.perturb.name = 'linf'
  return config_lib.apply_preset(c, preset, 'configs/quickstart.py')
