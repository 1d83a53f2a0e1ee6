"""CBD (Zhang et al., CVPR 2023) as A-ABL (AISec'24, Table 3) compares it: the backdoored
model f_B trained for 5 epochs at lr 0.1 in WORKDIR/backdoored; the deconfounded model
trained with f_B's sample weights and the mutual-information penalty (weight 0.01, a
critic as wide as the features, Adam 0.2): SGD 0.1, ÷ 10 at 20 and 70, wd 1e-4, batch
64, 100 epochs.

Attack: BadNets, dirty-label, 10%, target 0 (A-ABL's setting); any attack as a preset
(`configs/cbd.py:blended`), `:digits` for the offline scale.
"""

from abd_jax import config as config_lib


def get_config(preset=None):
  c = config_lib.apply_cifar10_recipe(config_lib.base_config())
  c = config_lib.apply_attack_defaults(c, 'badnets')
  c = config_lib.apply_defense(c, 'cbd')
  c = config_lib.apply_preset(c, preset, 'configs/cbd.py')
  return c
