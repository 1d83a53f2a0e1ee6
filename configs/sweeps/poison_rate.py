"""A-ABL against the poison rate (Zhao & Wressnegger, AISec'24, Table 7: ρ = 1%, 5%, 20%,
beside the 10% of its main tables).

A-ABL as in configs/aabl.py (stage 1 naive training, the iFGSM + symmetric cross-entropy
+ Otsu split, PGD-AT on the vulnerable subset) against dirty-label BadNets, target 0, at
ρ ∈ {1%, 5%, 10%, 20%}; another attack as a preset (`configs/sweeps/poison_rate.py:blended`).
Besides clean_acc, robust_acc and asr, the figures show how many poisons the split kept
(`kept_poison_rate`, ρ_vul) and the kept share of the data (`kept_fraction`, γ).

`:digits`: the digits scale of configs/aabl.py.
"""

from abd_jax import config as config_lib
from abd_jax.sweep import grid


def get_config(preset=None):
  c = config_lib.apply_cifar10_recipe(config_lib.base_config())
  c = config_lib.apply_attack_defaults(c, 'badnets')
  c = config_lib.apply_defense(c, 'aabl')
  c = config_lib.apply_preset(c, preset, 'configs/sweeps/poison_rate.py')
  c.sweep = grid.sweep_block(
      axes={'rate': grid.axis('attack.poison_rate', (0.01, 0.05, 0.1, 0.2))},
      metrics=('asr', 'clean_acc', 'robust_acc', 'kept_poison_rate', 'kept_fraction'))
  return c
