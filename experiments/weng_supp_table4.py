"""Weng et al. (NeurIPS'20), supplement Table 4: the trade-off holds at twice the model
width (standard vs PGD-AT with every layer's filters doubled).

Paper (CIFAR-10, ImageNet): base filters [16, 16, 32, 64] on CIFAR-10, doubled for width 2;
the main L-inf PGD-AT. Here: the standard and PGD-AT models of `weng_tradeoff` (8/255, PGD-5;
ResNet-18, whose base width is the library's, not the paper's) and the same two at
`model.width=2`. Digits get the key `cifar10` (the paper has no MNIST rows) and run the
digits counterpart of the CIFAR-10 setting (ε 0.1 for 8/255, PGD-5, step 0.025;
`eps_curve.py:digits` clean-label patch, CNN, 8 epochs); their width-1 models are those of
weng_supp_table3. Left out: ImageNet.
"""

import os
import runpy

from abd_jax.reproduce import Reproduction, main

_W = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'weng_tradeoff.py'))


def arms(data):
  out = []
  for width in (1, 2):
    for training, label in (('none', 'standard'), ('linf', 'linf')):
      keys = {'dataset': 'cifar10', 'width': str(width), 'training': label}
      if width == 1:
        out.append(_W['weng_arm'](data, training, keys, like='cifar10'))
      else:
        out.append(_W['weng_arm'](data, training, keys, like='cifar10', name=f'{label}_width2',
                                  model__width=2.0))
  return out


EXPERIMENT = Reproduction('weng_supp_table4', papers=('weng_supp_table4',), arms=arms,
                          metrics=_W['METRICS'], description=__doc__)

if __name__ == '__main__':
  main(EXPERIMENT)
