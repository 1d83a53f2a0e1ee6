"""mixup training (Zhang et al. 2018), the augmentation baseline of Gao et al., Tables III-IV.

Poisoned by BadNets by default (dirty-label 10%); any attack as a preset, e.g.
`configs/mixup.py:blended`, and `:digits` for the offline scale (`:blended,digits`). ResNet-18 on
CIFAR-10 with the SGD recipe of configs/cifar10_at.py.
"""

from abd_jax import config as config_lib


def get_config(preset=None):
  c = config_lib.apply_cifar10_recipe(config_lib.base_config())
  c = config_lib.apply_attack_defaults(c, 'badnets')
  c = config_lib.apply_regime(c, 'mixup')
  return config_lib.apply_preset(c, preset, 'configs/mixup.py')
