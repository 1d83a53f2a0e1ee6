"""D-ST (Chen et al., NeurIPS 2022) as A-ABL (AISec'24, Tables 3 and 4) compares it: an SD
model (cross-entropy without augmentation, 2 epochs, then 10 of the class-centre loss) in
WORKDIR/sd and WORKDIR/sd_finetune; FCT, the feature change under a random rotation +
translation; the 20% least sensitive samples clean, the 5% most sensitive poisoned
(`dst_split.png`); semi-supervised contrastive learning (200 epochs, batch 512, SGD 0.5,
τ 0.1) in WORKDIR/contrastive; a linear head with the mixed cross-entropy (SGD lr 5, batch
512, 10 epochs).

Presets: `:at` is A-ABL's Table 4, PGD-AT (8/255, 10 steps, 100 epochs) from scratch on
the clean + uncertain samples (`--config.defense.dst_train=at_clean` for the clean ones
only); any attack (`configs/dst.py:blended`), `:digits` for the offline scale.
Attack: BadNets, dirty-label, 10%, target 0 (A-ABL's setting).
"""

from abd_jax import config as config_lib


def get_config(preset=None):
  c = config_lib.apply_cifar10_recipe(config_lib.base_config())
  c = config_lib.apply_attack_defaults(c, 'badnets')
  c = config_lib.apply_defense(c, 'dst')
  c = config_lib.apply_preset(c, preset, 'configs/dst.py',
                              extra={'at': config_lib.apply_dst_adversarial})
  return c
