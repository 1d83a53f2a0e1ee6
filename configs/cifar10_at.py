"""PGD-10 adversarial training (Madry et al.) of ResNet-18 on CIFAR-10, eps 8/255.
`:digits` runs the same regime offline on digits."""

from abd_jax import config as config_lib


def get_config(preset=None):
  c = config_lib.apply_cifar10_recipe(config_lib.base_config())
  c = config_lib.apply_preset(c, preset, 'configs/cifar10_at.py')
  c.perturb.name = 'linf'
  return c
