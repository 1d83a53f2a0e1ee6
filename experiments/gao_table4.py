"""Gao et al. (TNNLS'23), Table IV: dirty-label BadNets under standard, mixup, CutMix and spatial AT.

Paper (CIFAR-10, ResNet-18, SGD 100 epochs, lr 0.1 ÷10 at 60/90): dirty-label BadNets 3×3
checkerboard at 0.5% / 1% of the training set; mixup and CutMix (Beta(1, 1)) leave its ASR
at ~100%, spatial AT (ε_s 0.025, step ε_s/4) removes it.
Digits (`:digits` presets): CNN, 8 epochs (÷10 at 6), 3 flow steps (as
configs/sweeps/eps_alpha.py); the preset's ε_s 0.15 stands for 0.05, so 0.075 stands for
0.025. 0.5% / 1% of digits are 7 / 14 images relabelled to class 0. Left out for time:
spatial AT at 0.5%. Table III (clean label) is gao_table3.py: its rows have the same keys.
"""

import os
import runpy

from abd_jax.reproduce import Reproduction, main

# The arms of Table III with another label mode (one definition).
table_arms = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                          'gao_table3.py'))['table_arms']


def arms(data):
  return table_arms(data, 'dirty')


EXPERIMENT = Reproduction('gao_table4', papers=('gao_table4',), arms=arms,
                          metrics=('clean_acc', 'asr'), datasets=('digits', 'digits32', 'cifar10'),
                          description=__doc__)

if __name__ == '__main__':
  main(EXPERIMENT)
