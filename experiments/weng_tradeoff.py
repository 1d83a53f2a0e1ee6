"""Weng et al. (NeurIPS'20), Table 1(a): PGD adversarial training makes a backdoor *more*
successful (clean_acc, robust_acc, asr of standard vs PGD-AT models).

Paper: a 3×3 sticker backdoor (a clean-label sticker, see the transcription notes); MNIST
PGD-AT ε 0.3 with 10 iterations, CIFAR-10 ε 8/255 with 5 iterations (the supplement's
Table 1 rows that reproduce Table 1(a)), robustness measured with the training's PGD.
Here: the library's Weng setting `configs/sweeps/eps_curve.py` (clean-label 3×3
checkerboard, target 2, 5% of the class; ResNet-18, 120 epochs) with PGD-5 at 8/255, step
2/255 (ε/4) for `--data=cifar10`. Digits (`eps_curve.py:digits`: half of class 2 poisoned,
CNN, 8 epochs) stand in for MNIST (their rows carry no dataset key, so they appear in both
tables): digits budgets are MNIST-like, so they run the paper's MNIST PGD-AT literally, ε 0.3
in 10 steps of ε/4, robust_acc with the same PGD.
Left out: the Lipschitz-regularization and denoising-layer rows (the library has neither;
they show '–'). `weng_arm` builds the arms the supplement's Tables 1–4 share.
"""

from abd_jax.reproduce import Arm, Reproduction, load, main

METRICS = ('clean_acc', 'robust_acc', 'asr')


def budget(data, like='mnist'):
  """(ε, PGD steps) of the main PGD-AT: the paper's MNIST one on digits (`like='mnist'`),
  its CIFAR-10 one otherwise (on digits ε 0.1 stands for 8/255)."""
  if data == 'cifar10':
    return 8 / 255, 5
  return (0.3, 10) if like == 'mnist' else (0.1, 5)


def weng_config(data, training, eps, steps, **overrides):
  """eps_curve's clean-label patch with `training` (perturb.name) at ε in `steps` steps of
  ε/4; robust_acc by the same PGD."""
  fields = dict(perturb__name=training, perturb__eps=eps, perturb__step_size=eps / 4,
                perturb__steps=steps, eval__robust=True, eval__eps=eps, eval__step_size=eps / 4,
                eval__steps=steps)
  return load('configs/sweeps/eps_curve.py', data, **{**fields, **overrides})


def weng_arm(data, training, keys, like='mnist', name=None, **overrides):
  """The standard (`training='none'`) or PGD-AT (`'linf'`) model of Table 1(a) at the main
  budget; the same run directory in every script that builds it."""
  return Arm(name or ('standard' if training == 'none' else training), keys=keys,
             config=weng_config(data, training, *budget(data, like), **overrides))


def arms(data):
  return [weng_arm(data, 'none', {'defense': 'none', 'training': 'standard'}),
          weng_arm(data, 'linf', {'defense': 'none', 'training': 'linf'})]


EXPERIMENT = Reproduction('weng_tradeoff', papers=('weng_tradeoff_mnist', 'weng_tradeoff_cifar10'),
                          arms=arms, metrics=METRICS, description=__doc__)

if __name__ == '__main__':
  main(EXPERIMENT)
