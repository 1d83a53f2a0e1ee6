"""Label-consistent (Turner et al. 2019; CLB in A-ABL): target-class images perturbed by PGD (16/255,
step 2/255, 30 steps) against a surrogate trained with AT (8/255), plus a four-corner trigger of
amplitude 16/255 (full amplitude at test time); half of the target class, labels unchanged.

Training: PGD-10 AT (8/255) of ResNet-18 on CIFAR-10 as in configs/cifar10_at.py; standard
training with `--config.perturb.name=none`. `:digits` runs offline on digits in minutes.
"""

from abd_jax import config as config_lib


def get_config(preset=None):
  c = config_lib.apply_cifar10_recipe(config_lib.base_config())
  c = config_lib.apply_attack_defaults(c, 'lc')
  return config_lib.apply_preset(c, preset, 'configs/lc.py')
