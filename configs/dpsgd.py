"""DP-SGD (Abadi et al. 2016) as a poisoning defense (Du et al. 2020), as Gao et al.
(TNNLS'23, Table VII) run it: ResNet-18 with GroupNorm for BatchNorm, every example's
gradient clipped to L2 norm 1 (`defense.dp_clip`), Gaussian noise of σ = 0.1
(`defense.dp_noise`) times the bound added to their sum; per-example gradients by `vmap`
inside the fused step, aggregated by optax's DP-SGD transform. No privacy budget is
claimed: σ = 0.1 gives none worth stating.

Attack: BadNets, 1% (Gao's rate), target 0; any attack as a preset, `:digits` offline.
"""

from abd_jax import config as config_lib


def get_config(preset=None):
  c = config_lib.apply_cifar10_recipe(config_lib.base_config())
  c = config_lib.apply_attack_defaults(c, 'badnets')
  c.attack.poison_rate = 0.01
  c = config_lib.apply_defense(c, 'dpsgd')
  c = config_lib.apply_preset(c, preset, 'configs/dpsgd.py')
  return c
