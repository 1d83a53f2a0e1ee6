"""Weng et al. (NeurIPS'20), supplement Table 2: the trade-off holds for FGSM adversarial
training (targeted FGSM to the least-likely class, to avoid label leaking).

Paper: FGSM-AT and FGSM robustness, ε not printed. Here the main budget of `weng_tradeoff`
(ε 0.3 on digits, 8/255 for `--data=cifar10`), FGSM-AT by `perturb.name=fgsm_targeted` (one
step of ε). The library's evaluator is L-inf PGD from a random start only: robust_acc here is
its one-step version (a random start, then one signed step of ε), the closest it has to the
paper's FGSM robustness, for both models; so the standard model is a run of its own, not
weng_tradeoff's. Digits (the `eps_curve.py:digits` clean-label patch, CNN, 8 epochs) get the
key `mnist`. Left out: ImageNet.
"""

import os
import runpy

from abd_jax.reproduce import Arm, Reproduction, main

_W = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'weng_tradeoff.py'))


def arms(data):
  dataset = 'cifar10' if data == 'cifar10' else 'mnist'
  eps, steps = _W['budget'](data)
  one_step = dict(eval__steps=1, eval__step_size=eps)
  return [Arm('standard_fgsm_eval', keys={'dataset': dataset, 'training': 'standard'},
              config=_W['weng_config'](data, 'none', eps, steps, **one_step)),
          Arm('fgsm_targeted', keys={'dataset': dataset, 'training': 'fgsm_targeted'},
              config=_W['weng_config'](data, 'fgsm_targeted', eps, 1, **one_step,
                                       perturb__step_size=eps))]


EXPERIMENT = Reproduction('weng_supp_table2', papers=('weng_supp_table2',), arms=arms,
                          metrics=_W['METRICS'], description=__doc__)

if __name__ == '__main__':
  main(EXPERIMENT)
