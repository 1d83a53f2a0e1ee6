"""Weng et al. (NeurIPS'20), supplement Table 3: the trade-off holds for L2 adversarial
training as for L-inf (the AT model's ASR rises above the standard model's).

Paper (CIFAR-10, ImageNet): PGD-AT and robustness evaluation under the same p-norm; the L2
budget is not printed. Here: the standard and L-inf PGD-AT models of `weng_tradeoff` (8/255,
PGD-5) and an L2 PGD-AT model at the library's Weng L2 budget (ε 0.5, step 0.125, 5 steps).
Digits get the key `cifar10` (the paper has no MNIST rows), so they run the digits
counterpart of the CIFAR-10 setting (ε 0.1 for 8/255, PGD-5, step 0.025; L2 ε 1.0, step
0.25, the digits preset's; `eps_curve.py:digits` clean-label patch, CNN, 8 epochs).
Left out: L2 robustness. The library evaluates robustness with L-inf PGD only, so the L2
model is run without a robustness evaluation (its robust_acc shows '–'), and the `l2 /
standard` row, which differs from `linf / standard` only by that number, is not run.
ImageNet is not run.
"""

import os
import runpy

from abd_jax.reproduce import Arm, Reproduction, main

_W = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'weng_tradeoff.py'))


def arms(data):
  eps, steps = _W['budget'](data, 'cifar10')
  l2_eps = 0.5 if data == 'cifar10' else 1.0
  keys = {'dataset': 'cifar10', 'norm': 'linf'}
  return [_W['weng_arm'](data, 'none', {**keys, 'training': 'standard'}, like='cifar10'),
          _W['weng_arm'](data, 'linf', {**keys, 'training': 'linf'}, like='cifar10'),
          Arm('l2', keys={'dataset': 'cifar10', 'norm': 'l2', 'training': 'l2'},
              config=_W['weng_config'](data, 'l2', eps, steps, perturb__eps=l2_eps,
                                       perturb__step_size=l2_eps / 4, eval__robust=False))]


EXPERIMENT = Reproduction('weng_supp_table3', papers=('weng_supp_table3',), arms=arms,
                          metrics=_W['METRICS'], description=__doc__)

if __name__ == '__main__':
  main(EXPERIMENT)
