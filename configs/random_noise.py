"""Random-perturbation baseline (Gao et al., Table I): training inputs x + v, v uniform in
{-eps, eps}^d with eps 16/255. For a random flow use --config.perturb.name=random_spatial.

Poisoned by BadNets by default (dirty-label 10%); any attack as a preset, e.g.
`configs/random_noise.py:blended`, and `:digits` for the offline scale (`:blended,digits`). ResNet-18 on
CIFAR-10 with the SGD recipe of configs/cifar10_at.py.
"""

from abd_jax import config as config_lib


def get_config(preset=None):
  c = config_lib.apply_cifar10_recipe(config_lib.base_config())
  c = config_lib.apply_attack_defaults(c, 'badnets')
  c = config_lib.apply_regime(c, 'random_linf')
  return config_lib.apply_preset(c, preset, 'configs/random_noise.py')
