"""Anti-backdoor learning (Li et al., NeurIPS 2021) as Gao et al. (TNNLS'23, Table VII) run
it: 20 epochs with the local-gradient-ascent loss at γ = 0 (Gao's choice; ABL's own is
0.5) in WORKDIR/isolation; the 1% lowest-loss training samples isolated (`abl_split.png`);
60 epochs on the others (WORKDIR/finetune, lr ÷ 10 after 40); then 20 epochs of gradient
ascent on the isolated samples at lr 5e-4.

Attack: BadNets, 1% (Gao's rate), target 0; any attack as a preset, `:digits` offline.
"""

from abd_jax import config as config_lib


def get_config(preset=None):
  c = config_lib.apply_cifar10_recipe(config_lib.base_config())
  c = config_lib.apply_attack_defaults(c, 'badnets')
  c.attack.poison_rate = 0.01
  c = config_lib.apply_defense(c, 'abl')
  c = config_lib.apply_preset(c, preset, 'configs/abl.py')
  return c
