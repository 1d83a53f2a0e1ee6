"""Weng et al. (NeurIPS'20), supplement Table 1: the trade-off holds across PGD settings
(ε, #iterations): every PGD-AT model has a higher ASR than the standard one.

Paper: the same ε / #iterations in training and in the robustness evaluation; MNIST
ε 0.15 / 0.3 with 10 or 20 iterations, CIFAR-10 8/255 with 5 or 10 and 16/255 with 10. Each
AT row is to be compared with its dataset's standard row only.
Here (the arms of `weng_tradeoff`, its standard and PGD-AT models shared): `--data=cifar10`
runs the CIFAR-10 rows (steps of ε/4: 2/255 and 4/255); digits stand in for MNIST (key
`mnist`) with the paper's MNIST budgets literally (digits budgets are MNIST-like), CNN,
8 epochs, steps of ε/4. Left out: ImageNet.
"""

import os
import runpy

from abd_jax.reproduce import Arm, Reproduction, main

_W = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'weng_tradeoff.py'))
# (ε label, ε, steps) of the AT rows; the first is the main budget of weng_tradeoff.
GRID = {'digits': (('0.3', 0.3, 10), ('0.15', 0.15, 10), ('0.3', 0.3, 20)),
        'cifar10': (('8', 8 / 255, 5), ('8', 8 / 255, 10), ('16', 16 / 255, 10))}


def arms(data):
  dataset = 'cifar10' if data == 'cifar10' else 'mnist'
  keys = {'dataset': dataset, 'training': 'standard', 'eps': 'none', 'steps': 'none'}
  out = [_W['weng_arm'](data, 'none', keys)]
  for i, (label, eps, steps) in enumerate(GRID['cifar10' if data == 'cifar10' else 'digits']):
    keys = {'dataset': dataset, 'training': 'linf', 'eps': label, 'steps': str(steps)}
    if i == 0:
      out.append(_W['weng_arm'](data, 'linf', keys))
    else:
      out.append(Arm(f'linf_{label}_{steps}', keys=keys,
                     config=_W['weng_config'](data, 'linf', eps, steps)))
  return out


EXPERIMENT = Reproduction('weng_supp_table1', papers=('weng_supp_table1',), arms=arms,
                          metrics=_W['METRICS'], description=__doc__)

if __name__ == '__main__':
  main(EXPERIMENT)
