"""Composite adversarial training (Gao et al., TNNLS'23, Algorithm 1): relaxed spatial flow-field
perturbation (eps_s 0.05) followed by relaxed L-inf PGD (4/255), beta 0.8, then the weight
update on the composite input.

Poisoned by BadNets by default (dirty-label 10%); any attack as a preset, e.g.
`configs/cat.py:blended`, and `:digits` for the offline scale (`:blended,digits`). ResNet-18 on
CIFAR-10 with the SGD recipe of configs/cifar10_at.py.
"""

from abd_jax import config as config_lib


def get_config(preset=None):
  c = config_lib.apply_cifar10_recipe(config_lib.base_config())
  c = config_lib.apply_attack_defaults(c, 'badnets')
  c = config_lib.apply_regime(c, 'cat')
  return config_lib.apply_preset(c, preset, 'configs/cat.py')
