"""ICLR'22 submission, Table 1: poisons removed by spectral signatures, activation clustering and the PGD defense, over poison rate × α.

Paper (CIFAR-10, ResNet-18): clean-label 3×3 checkerboard on p = 5–20% of class 2 at α 1.0
/ 0.8; PGD defense = AT 8/255 for T = 20 epochs, steps of β = 2/255, the 1.5·p·n samples
with the most steps removed; the baselines with their official defaults (standard-trained
detectors). Shown as removed/total (`poison_removed`/`poison_total`). Here p ∈ {0.05, 0.2}
(the ends of the paper's range) × α ∈ {1.0, 0.8} × the three defenses.
Digits (`configs/{spectral,activation_clustering,pgd_defense}.py:digits`): dirty-label
poisons to class 2 (a clean-label patch does not take on 8×8 digits), p of the target class
given as the same share poisoned into it: 0.5% / 2% of the data (7 / 28 images, as
`configs/spectral.py` maps 1% to ~9% of the class). Detector phases shortened: the PGD
defense's warm-up is 8 epochs of PGD-3 (as configs/sweeps/eps_alpha.py) at the preset's 0.2
(not 20 of PGD-5), counted once; spectral / AC train their standard detector 8 epochs and
retrain 1 epoch (the retrained model is not part of the table). Left out: p = 0.1, 0.15.
"""

from abd_jax.reproduce import Arm, Reproduction, Vary, load, main

RATES = ('0.05', '0.2')


def arms(data):
  digits = data.startswith('digits')
  if digits:
    rate = Vary('poison_rate', 'attack.poison_rate', tuple(float(r) / 10 for r in RATES),
                labels=RATES)
    attack = dict(attack__target=2)
    short = dict(train__epochs=1, defense__detector_epochs=8)
    pgd = dict(train__epochs=8, perturb__steps=3, defense__count_every_epochs=0,
               eval__every_epochs=8)
  else:
    rate = Vary('poison_rate', 'attack.target_class_rate', tuple(float(r) for r in RATES),
                labels=RATES)
    attack = dict(attack__target=2, attack__label_mode='clean', attack__poison_rate=0.0)
    short, pgd = {}, dict(defense__count_every_epochs=0)
  alpha = Vary('alpha', 'attack.alpha', (1.0, 0.8))
  return [
      Arm('spectral', keys={'defense': 'spectral'},
          config=load('configs/spectral.py', data, **attack, **short), vary=(rate, alpha)),
      Arm('activation_clustering', keys={'defense': 'activation_clustering'},
          config=load('configs/activation_clustering.py', data, **attack, **short),
          vary=(rate, alpha)),
      Arm('pgd_steps', keys={'defense': 'pgd_steps'},
          config=load('configs/pgd_defense.py', data, **attack, **pgd), vary=(rate, alpha)),
  ]


EXPERIMENT = Reproduction('iclr22_table1', papers=('iclr22_table1',), arms=arms,
                          metrics=('poison_removed',), description=__doc__)

if __name__ == '__main__':
  main(EXPERIMENT)
