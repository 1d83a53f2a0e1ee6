"""ASR against the budget ε of PGD adversarial training (Weng et al., NeurIPS'20, and the
ε / step rows of their supplement's Table 1): adversarial robustness bought with a larger
ε makes a clean-label trigger *more* successful.

ResNet-18 on CIFAR-10, clean-label BadNets (3×3 checkerboard, α = 1, target 2, 5% of the
class), PGD-10 AT with ε ∈ {0, 2, 4, 8, 16}/255 and the step tied to ε/4 (a zip axis; ε = 0
is standard training), two seeds.

`:digits`: the same on the 8×8 digits with MNIST-like budgets ε ∈ {0, 0.05, 0.1, 0.15,
0.2, 0.25} (Weng et al. use 0.15 and 0.3 on MNIST) and half of class 2 poisoned: on
digits a clean-label patch needs that many images to be learned at all.
"""

from abd_jax import config as config_lib
from abd_jax.sweep import grid


def get_config(preset=None):
  c = config_lib.apply_iclr22_basic(config_lib.apply_cifar10_recipe(config_lib.base_config()))
  c = config_lib.apply_preset(c, preset, 'configs/sweeps/eps_curve.py', extra={'digits': digits})
  budgets = ((0.0, 0.05, 0.1, 0.15, 0.2, 0.25) if c.dataset.name == 'digits'
             else tuple(e / 255 for e in (0, 2, 4, 8, 16)))
  c.sweep = grid.sweep_block(
      axes={'eps': grid.axis(('perturb.eps', 'perturb.step_size'), [(e, e / 4) for e in budgets])},
      seeds=(0, 1))
  return c


def digits(c):
  c = config_lib.apply_digits_scale(c)
  c.attack.target_class_rate = 0.5
  c.train.update(epochs=8, milestones=(6,))
  c.perturb.steps = 3
  c.eval.every_epochs = 8
  return c
