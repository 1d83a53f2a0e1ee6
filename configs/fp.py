"""Fine-pruning (Liu, Dolan-Gavitt & Garg, RAID 2018) as Gao et al. (TNNLS'23, Table VII)
run it: a standardly trained, backdoored ResNet-18 (WORKDIR/backdoored, trained without
the defender's 5% clean data); its last stage's channels pruned in increasing order of
mean activation on the clean data (`fp_pruning.png`: clean accuracy and ASR against the
ratio), then fine-tuned on the clean data (10 epochs, lr 0.01) with the pruned channels
kept off. `defense.fp_prune_ratio` fixes the ratio; `--config.defense.fp_target_acc=A`
runs Gao's grid search (5%…95%, each fine-tuned) and keeps the ratio whose clean accuracy
is closest to A.

Attack: BadNets, 1% (Gao's rate), target 0; any attack as a preset, `:digits` offline.
"""

from abd_jax import config as config_lib


def get_config(preset=None):
  c = config_lib.apply_cifar10_recipe(config_lib.base_config())
  c = config_lib.apply_attack_defaults(c, 'badnets')
  c.attack.poison_rate = 0.01
  c = config_lib.apply_defense(c, 'fp')
  c = config_lib.apply_preset(c, preset, 'configs/fp.py')
  return c
