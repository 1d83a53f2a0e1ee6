"""BadNets (Gu et al. 2017): an opaque 3x3 checkerboard in the bottom-right corner, dirty-label, 10% of the
training set relabelled to class 0. `attack.alpha` < 1 is the transparent patch of the ICLR'22
seed's Eq. 3; `:iclr22` is that paper's clean-label basic setting (target 2, 5% of the class).

Training: PGD-10 AT (8/255) of ResNet-18 on CIFAR-10 as in configs/cifar10_at.py; standard
training with `--config.perturb.name=none`. `:digits` runs offline on digits in minutes.
"""

from abd_jax import config as config_lib


def get_config(preset=None):
  c = config_lib.apply_cifar10_recipe(config_lib.base_config())
  c = config_lib.apply_attack_defaults(c, 'badnets')
  return config_lib.apply_preset(c, preset, 'configs/badnets.py',
                                 extra={'iclr22': config_lib.apply_iclr22_basic})
