"""DBD (Huang et al., ICLR 2022) as A-ABL (AISec'24, Table 3) compares it: SimCLR
pre-training of ResNet-18 (100 epochs, batch 512, SGD 0.4, τ 0.5) in WORKDIR/simclr; a
linear head on the frozen backbone with symmetric cross-entropy (Adam 2e-3, 10 epochs)
in WORKDIR/warmup; the 50% lowest-SCE samples keep their labels (`dbd_split.png`);
MixMatch fine-tuning of the whole model (Adam 2e-3, 190 epochs, λ_u 15, T 0.5, α 0.75).

Attack: BadNets, dirty-label, 10%, target 0 (A-ABL's setting); any attack as a preset
(`configs/dbd.py:blended`), `:digits` for the offline scale.
"""

from abd_jax import config as config_lib


def get_config(preset=None):
  c = config_lib.apply_cifar10_recipe(config_lib.base_config())
  c = config_lib.apply_attack_defaults(c, 'badnets')
  c = config_lib.apply_defense(c, 'dbd')
  c = config_lib.apply_preset(c, preset, 'configs/dbd.py')
  return c
