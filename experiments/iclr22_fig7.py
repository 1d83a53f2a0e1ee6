"""ICLR'22 submission, Fig. 7: standard training, AT and the two-phase pipeline (PGD defense, then AT on the purified set) at α 1.0 and 0.2.

Paper (CIFAR-10, ResNet-18): the basic patch attack (clean-label, class 2) at poison rates
of 10–20% of the class; ST, PGD-AT 8/255 and the pipeline (`configs/pipeline.py`: AT 8/255
warm-up for T = 20 epochs, steps of 2/255, the 1.5·p·n most-step samples removed, AT 8/255
from scratch on the rest); AT beats ST in robustness but strengthens the α = 1.0 backdoor;
the pipeline's phase 1 removes the α = 1.0 poisons, its phase 2 removes the faint α = 0.2
backdoor. Here one rate, 10% of the class (the table has no rate key, so a second rate
would be averaged with the first); ST and AT are the pipeline's config without defense
(and without perturbation for ST). poison_removed (phase 1's removed/total) is in the CSV.
Digits (`configs/pipeline.py:digits`: dirty-label BadNets 10%, here to class 2; warm-up AT at
0.2, steps of 0.02; final AT at 0.1): shortened to a 8-epoch PGD-3 warm-up and 8 epochs of
PGD-3 for every final model (as configs/sweeps/eps_alpha.py; the preset takes 3.5 min a
run). Left out: the other poison rates, Fig. 9 (α = 0.8).
"""

from abd_jax.reproduce import Arm, Reproduction, Vary, load, main


def arms(data):
  if data.startswith('digits'):
    common = dict(attack__target=2, train__epochs=8, train__milestones=(6,), perturb__steps=3,
                  defense__detector_epochs=8, eval__every_epochs=8)
  else:
    common = dict(attack__target_class_rate=0.1)
  alpha = (Vary('alpha', 'attack.alpha', (1.0, 0.2)),)
  return [
      Arm('standard', keys={'training': 'standard', 'defense': 'none'},
          config=load('configs/pipeline.py', data, defense__name='none', perturb__name='none',
                      **common), vary=alpha),
      Arm('at', keys={'training': 'linf', 'defense': 'none'},
          config=load('configs/pipeline.py', data, defense__name='none', **common), vary=alpha),
      Arm('pipeline', keys={'training': 'linf', 'defense': 'pgd_steps'},
          config=load('configs/pipeline.py', data, **common), vary=alpha),
  ]


EXPERIMENT = Reproduction('iclr22_fig7', papers=('iclr22_fig7',), arms=arms,
                          metrics=('clean_acc', 'robust_acc', 'asr', 'poison_removed'),
                          description=__doc__)

if __name__ == '__main__':
  main(EXPERIMENT)
