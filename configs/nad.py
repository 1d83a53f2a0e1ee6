"""Neural attention distillation (Li et al., ICLR 2021) as Gao et al. (TNNLS'23, Table VII)
run it: a standardly trained, backdoored ResNet-18 (WORKDIR/backdoored, trained without
the defender's 5% clean data); a teacher fine-tuned from it on the clean data (10 epochs,
WORKDIR/teacher); the backdoored model then trained on the clean data for 20 epochs with
cross-entropy + Σ β_k·‖A_s,k − A_t,k‖² over the attention maps of the last three stages
(β = 500, 1000, 1000, p = 2), at Gao's lr 0.01.

Attack: BadNets, 1% (Gao's rate), target 0; any attack as a preset, `:digits` offline.
"""

from abd_jax import config as config_lib


def get_config(preset=None):
  c = config_lib.apply_cifar10_recipe(config_lib.base_config())
  c = config_lib.apply_attack_defaults(c, 'badnets')
  c.attack.poison_rate = 0.01
  c = config_lib.apply_defense(c, 'nad')
  c = config_lib.apply_preset(c, preset, 'configs/nad.py')
  return c
