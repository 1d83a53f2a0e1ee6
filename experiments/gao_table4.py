"""Gao et al. (TNNLS'23), Table IV: dirty-label BadNets under standard, mixup, CutMix and spatial AT.

Paper (CIFAR-10, ResNet-18, SGD 100 epochs, lr 0.1 ÷10 at 60/90): dirty-label BadNets 3×3
checkerboard at 0.5% / 1% of the training set; mixup and CutMix (Beta(1, 1)) leave its ASR
at ~100%, spatial AT (ε_s 0.025, step ε_s/4) removes it.
Digits (`:digits` presets): CNN, 8 epochs (÷10 at 6), 3 flow steps (as
configs/sweeps/eps_alpha.py); the preset's ε_s 0.15 stands for 0.05, so 0.075 stands for
0.025. 0.5% / 1% of digits are 7 / 14 images relabelled to class 0. Left out for time:
spatial AT at 0.5%. Table III (clean label) is gao_table3.py: its rows have the same keys.
"""

from abd_jax.reproduce import Arm, Reproduction, Vary, load, main

RATES = Vary('poison_rate', 'attack.poison_rate', (0.005, 0.01))


def gao(spec, data, **overrides):
  """Gao's 100 epochs on CIFAR-10; on digits the short schedule of configs/sweeps/eps_alpha.py."""
  schedule = ({'train__epochs': 100} if data == 'cifar10' else
              dict(train__epochs=8, train__milestones=(6,), perturb__steps=3, eval__every_epochs=8))
  return load(spec, data, **{**schedule, **overrides})


def table_arms(data, label_mode):
  eps = 0.075 if data.startswith('digits') else 0.025
  config = lambda spec, **o: gao(spec, data, attack__label_mode=label_mode,
                                 attack__target_class_rate=0.0, **o)
  return [
      Arm('standard', keys={'training': 'standard'},
          config=config('configs/mixup.py', perturb__name='none'), vary=(RATES,)),
      Arm('mixup', keys={'training': 'mixup'}, config=config('configs/mixup.py'), vary=(RATES,)),
      Arm('cutmix', keys={'training': 'cutmix'}, config=config('configs/cutmix.py'), vary=(RATES,)),
      Arm('spatial', keys={'training': 'spatial', 'poison_rate': '0.01'},
          config=config('configs/spatial_at.py', attack__poison_rate=0.01,
                        perturb__eps_spatial=eps, perturb__step_size_spatial=eps / 4)),
  ]


def arms(data):
  return table_arms(data, 'dirty')


EXPERIMENT = Reproduction('gao_table4', papers=('gao_table4',), arms=arms,
                          metrics=('clean_acc', 'asr'), datasets=('digits', 'digits32', 'cifar10'),
                          description=__doc__)

if __name__ == '__main__':
  main(EXPERIMENT)
