"""WaNet (Nguyen & Tran 2021): a smooth warping field (k 4, s 0.5) with noise-mode cross samples
(cross ratio 2), dirty-label, 10%, target 0.

Training: PGD-10 AT (8/255) of ResNet-18 on CIFAR-10 as in configs/cifar10_at.py; standard
training with `--config.perturb.name=none`. `:digits` runs offline on digits in minutes.
"""

from abd_jax import config as config_lib


def get_config(preset=None):
  c = config_lib.apply_cifar10_recipe(config_lib.base_config())
  c = config_lib.apply_attack_defaults(c, 'wanet')
  return config_lib.apply_preset(c, preset, 'configs/wanet.py')
