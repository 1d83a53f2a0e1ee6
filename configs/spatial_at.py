"""Spatial adversarial training (Gao et al.): a per-pixel flow field, L-inf budget eps_s 0.05 in
normalized grid units, found by signed-gradient ascent.

Poisoned by BadNets by default (dirty-label 10%); any attack as a preset, e.g.
`configs/spatial_at.py:blended`, and `:digits` for the offline scale (`:blended,digits`). ResNet-18 on
CIFAR-10 with the SGD recipe of configs/cifar10_at.py.
"""

from abd_jax import config as config_lib


def get_config(preset=None):
  c = config_lib.apply_cifar10_recipe(config_lib.base_config())
  c = config_lib.apply_attack_defaults(c, 'badnets')
  c = config_lib.apply_regime(c, 'spatial')
  return config_lib.apply_preset(c, preset, 'configs/spatial_at.py')
