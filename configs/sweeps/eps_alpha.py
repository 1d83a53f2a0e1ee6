"""ASR over the AT budget ε × the trigger transparency α (ICLR'22 submission, Fig. 3(a)).

The paper's basic setting: ResNet-18 on CIFAR-10, clean-label BadNets with a 3×3
checkerboard (Eq. 3, transparency α), target class 2, 5% of the class (250 images); PGD-10
AT with step 2/255 for ε ∈ {0, 2, 4, 8, 12, 16}/255 (ε = 0 is standard training) × α ∈
{0.2, 0.4, 0.6, 0.8, 1.0}. Its finding: a faint trigger (small α) is learned under a small
budget and removed by a large one, while an opaque trigger (α = 1) survives every budget.

`:digits` runs the same grid offline on the 8×8 digits (the README gives its time): the
budgets are MNIST-like, ε ∈ {0, 0.025, 0.05, 0.1, 0.15, 0.2} with PGD-3 of step ε/4, and
the poisoning is dirty-label (10% of the training set relabelled to class 2; the seed's
Fig. 3(f) shows the same finding with dirty labels): on digits a clean-label patch of
α ≤ 0.6 plants no backdoor even under standard training, so a clean-label grid would have
nothing to show.
"""

from abd_jax import config as config_lib
from abd_jax.sweep import grid

ALPHAS = (0.2, 0.4, 0.6, 0.8, 1.0)


def get_config(preset=None):
  c = config_lib.apply_iclr22_basic(config_lib.apply_cifar10_recipe(config_lib.base_config()))
  c = config_lib.apply_preset(c, preset, 'configs/sweeps/eps_alpha.py', extra={'digits': digits})
  if c.dataset.name == 'digits':
    eps = grid.axis(('perturb.eps', 'perturb.step_size'),
                    [(e, e / 4) for e in (0.0, 0.025, 0.05, 0.1, 0.15, 0.2)])
  else:  # the paper keeps the step at 2/255 for every budget
    eps = grid.axis('perturb.eps', [e / 255 for e in (0, 2, 4, 8, 12, 16)])
  c.sweep = grid.sweep_block(axes={'eps': eps, 'alpha': grid.axis('attack.alpha', ALPHAS)})
  return c


def digits(c):
  c = config_lib.apply_digits_scale(c)
  c.attack.update(label_mode='dirty', poison_rate=0.1, target_class_rate=0.0)
  c.train.update(epochs=8, milestones=(6,))
  c.perturb.steps = 3
  c.eval.every_epochs = 8
  return c
