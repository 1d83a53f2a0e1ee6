"""Sample-Specific Backdoor Attack (Li et al., ICCV 2021): a StegaStamp encoder/decoder,
trained first on the dataset in WORKDIR/generator_ssba, hides a fixed 100-bit string in
each poisoned image as an invisible image-specific residual (L-inf at most 8/255);
dirty-label, 10%, target 0. The manifest records the residual's PSNR and L-inf and the
decoder's bit accuracy; `--config.attack.generator_workdir=DIR` reuses a trained encoder.

Training: PGD-10 AT (8/255) of ResNet-18 on CIFAR-10 as in configs/cifar10_at.py; standard
training with `--config.perturb.name=none`. `:digits` runs offline on digits in minutes.
"""

from abd_jax import config as config_lib


def get_config(preset=None):
  c = config_lib.apply_cifar10_recipe(config_lib.base_config())
  c = config_lib.apply_attack_defaults(c, 'ssba')
  return config_lib.apply_preset(c, preset, 'configs/ssba.py')
