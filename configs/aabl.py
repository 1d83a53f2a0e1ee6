"""A-ABL (Zhao & Wressnegger, AISec'24): stage 1 naive training (Adam, lr 1e-3, 20 epochs, in
WORKDIR/stage1); stage 2 iFGSM (eps 2/255, 5 steps) on every training sample, symmetric
cross-entropy, Otsu threshold, the high-loss side kept as D_vul (`sce_split.png`); stage 3
PGD-AT (8/255, step 2/255, 10 steps) from scratch on D_vul for 100 epochs, lr 0.1 / 10 at
50, 75, 90. Reports gamma (`kept_fraction`), rho_vul (`kept_poison_rate`), clean_acc,
robust_acc, asr.

`--config.defense.split_method=randaugment` (or `autoaugment`) scores stage 2 with one draw
of that augmentation per sample instead of iFGSM (Table 5).

Attack: BadNets, dirty-label, 10%, target 0 (the paper's setting); any attack as a preset
(`configs/aabl.py:blended`), `:digits` for the offline scale.
"""

from abd_jax import config as config_lib


def get_config(preset=None):
  c = config_lib.apply_cifar10_recipe(config_lib.base_config())
  c = config_lib.apply_attack_defaults(c, 'badnets')
  c = config_lib.apply_defense(c, 'aabl')
  c = config_lib.apply_preset(c, preset, 'configs/aabl.py')
  return c
