"""L2 PGD adversarial training, eps 128/255 (Gao et al.; Weng et al.'s L2 experiments).

Poisoned by BadNets by default (dirty-label 10%); any attack as a preset, e.g.
`configs/l2_at.py:blended`, and `:digits` for the offline scale (`:blended,digits`). ResNet-18 on
CIFAR-10 with the SGD recipe of configs/cifar10_at.py.
"""

from abd_jax import config as config_lib


def get_config(preset=None):
  c = config_lib.apply_cifar10_recipe(config_lib.base_config())
  c = config_lib.apply_attack_defaults(c, 'badnets')
  c = config_lib.apply_regime(c, 'l2')
  return config_lib.apply_preset(c, preset, 'configs/l2_at.py')
