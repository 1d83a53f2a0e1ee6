"""Input-Aware Backdoor (Nguyen & Tran, NeurIPS 2020) as a data-poisoning attack (A-ABL,
after ABL's code): a pattern generator and a sparse mask generator, trained first with the
paper's losses (backdoor, cross-trigger and diversity) together with a classifier in
WORKDIR/generator_iab, stamp each poisoned image with its own trigger; dirty-label, 10%,
target 0. Generator settings are the original's CIFAR-10 ones (600 epochs, mask density
0.032); `--config.attack.generator_workdir=DIR` reuses a trained generator.

Training: PGD-10 AT (8/255) of ResNet-18 on CIFAR-10 as in configs/cifar10_at.py; standard
training with `--config.perturb.name=none`. `:digits` runs offline on digits in minutes.
"""

from abd_jax import config as config_lib


def get_config(preset=None):
  c = config_lib.apply_cifar10_recipe(config_lib.base_config())
  c = config_lib.apply_attack_defaults(c, 'iab')
  return config_lib.apply_preset(c, preset, 'configs/iab.py')
