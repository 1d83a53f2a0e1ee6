"""SIG (Barni et al. 2019): a horizontal sinusoid x + 40/255 sin(2 pi j 6 / W), clean-label, half of the
target class.

Training: PGD-10 AT (8/255) of ResNet-18 on CIFAR-10 as in configs/cifar10_at.py; standard
training with `--config.perturb.name=none`. `:digits` runs offline on digits in minutes.
"""

from abd_jax import config as config_lib


def get_config(preset=None):
  c = config_lib.apply_cifar10_recipe(config_lib.base_config())
  c = config_lib.apply_attack_defaults(c, 'sig')
  return config_lib.apply_preset(c, preset, 'configs/sig.py')
