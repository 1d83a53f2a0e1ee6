"""Composite AT against the relaxation β (Gao et al., TNNLS'23, Sec. III-E, Tables V–VI):
x' = x + β·u + (1−β)·v mixes the adversarial perturbation u with random signs v (and the
flow field alike). A slight relaxation (β = 0.9, 0.8) buys clean accuracy and keeps the
backdoor removed; at β = 0.6 the perturbation no longer removes it.

CAT as in configs/cat.py (relaxed spatial ε_s 0.05, then relaxed L∞ 4/255) against
dirty-label BadNets 10%, β ∈ {0.6, 0.7, 0.8, 0.9, 1.0}; another attack as a preset
(`configs/sweeps/cat_beta.py:blended`).

`:digits`: the digits scale of configs/cat.py.
"""

from abd_jax import config as config_lib
from abd_jax.sweep import grid


def get_config(preset=None):
  c = config_lib.apply_cifar10_recipe(config_lib.base_config())
  c = config_lib.apply_attack_defaults(c, 'badnets')
  c = config_lib.apply_regime(c, 'cat')
  c = config_lib.apply_preset(c, preset, 'configs/sweeps/cat_beta.py')
  c.sweep = grid.sweep_block(axes={'beta': grid.axis('perturb.beta', (0.6, 0.7, 0.8, 0.9, 1.0))})
  return c
