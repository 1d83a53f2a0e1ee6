"""ICLR'22 submission, Fig. 4(a)–(d): a larger budget for opaque triggers, tiny budgets for a faint one, blended and label-consistent attacks.

Paper (CIFAR-10, ResNet-18, the basic setting of Fig. 3(a): 5% of class 2, PGD-10 AT with
step 2/255, 120 epochs): (a) α = 0.8 / 1.0, which survive 16/255, fall to a low ASR at
ε = 24/255; (b) α = 0.2 rises within ε < 0.05/255; (c) blended (uniform-noise pattern, α 0.2
of the stated 0.05–0.2) and (d) label-consistent (robust-surrogate PGD, amplitude 16/255),
both clean-label on 5% of class 2, rise at small budgets and fall at large ones: ε ∈ {0,
4/255 (`small`), 16/255 (`large`)} as in iclr22_fig3.py.
Digits (`configs/sweeps/eps_alpha.py:digits` training: CNN, 8 epochs of PGD-3 with step
ε/4; dirty-label 10% to class 2): budgets follow Fig. 3(a)'s mapping (8/255 → 0.1): (a)
24/255 → 0.3; (b) 0.025/255, 0.05/255 → 0.0003, 0.0006 (so tiny that they are standard
training in effect); small / large 0.05 / 0.2. (d) is clean-label with the library's
digits LC (half of class 2, surrogate AT 0.1 for 5 epochs, PGD 0.2, amplitude 0.3): 5% of a
digits class is 7 images. Left out: (a)'s ε = 0 and 16/255 (in iclr22_fig3a.py's grid), the
other blended α, intermediate budgets.
"""

import os
import runpy

from abd_jax.reproduce import Arm, Reproduction, Vary, load, main

eps_axis = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                       'iclr22_fig3.py'))['eps_axis']


def arms(data):
  digits = data.startswith('digits')
  clean = dict(attack__target=2) if digits else dict(
      attack__target=2, attack__label_mode='clean', attack__poison_rate=0.0,
      attack__target_class_rate=0.05)
  lc = dict(attack__label_mode='clean', attack__poison_rate=0.0, attack__target_class_rate=0.5,
            attack__target=2) if digits else clean
  return [
      Arm('larger', keys={}, config=load('configs/sweeps/eps_alpha.py', data),
          vary=(eps_axis(data, ('24/255',), (0.3,), (24 / 255,)),
                Vary('alpha', 'attack.alpha', (0.8, 1.0)))),
      Arm('smaller', keys={'alpha': '0.2'},
          config=load('configs/sweeps/eps_alpha.py', data, attack__alpha=0.2),
          vary=(eps_axis(data, ('0', '0.025/255', '0.05/255'), (0.0, 0.025 / 80, 0.05 / 80),
                         (0.0, 0.025 / 255, 0.05 / 255)),)),
      Arm('blended', keys={'attack': 'blended'},
          config=load('configs/sweeps/eps_alpha.py:blended', data, **clean),
          vary=(eps_axis(data),)),
      Arm('lc', keys={'attack': 'lc'}, config=load('configs/sweeps/eps_alpha.py:lc', data, **lc),
          vary=(eps_axis(data),)),
  ]


EXPERIMENT = Reproduction('iclr22_fig4', papers=tuple(f'iclr22_fig4{p}' for p in 'abcd'),
                          arms=arms, metrics=('asr', 'clean_acc'), description=__doc__)

if __name__ == '__main__':
  main(EXPERIMENT)
