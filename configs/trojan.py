"""Trojan (Liu et al. 2018): a 5x5 patch optimized to excite a penultimate-layer neuron of a
standard-trained surrogate, then used dirty-label (10%, target 0).

Training: PGD-10 AT (8/255) of ResNet-18 on CIFAR-10 as in configs/cifar10_at.py; standard
training with `--config.perturb.name=none`. `:digits` runs offline on digits in minutes.
"""

from abd_jax import config as config_lib


def get_config(preset=None):
  c = config_lib.apply_cifar10_recipe(config_lib.base_config())
  c = config_lib.apply_attack_defaults(c, 'trojan')
  return config_lib.apply_preset(c, preset, 'configs/trojan.py')
