"""Gao et al. (TNNLS'23), Table VI: relaxed spatial AT (w = β·w_adv + (1−β)·random flow) on BadNets and LC.

Paper (CIFAR-10, ResNet-18, SGD 100 epochs, lr 0.1 ÷10 at 60/90): dirty-label BadNets 3×3
checkerboard and LC (clean label) at 1% / 2%; no defense, spatial AT (ε_s 0.05, inferred from Table II)
and its relaxation at β ∈ {0.9, 0.8, 0.7, 0.6}: β ≥ 0.8 keeps BadNets 1% removed, β ≤ 0.7
does not.
Digits (`:digits` presets, ε_s 0.15 for 0.05): CNN, 8 epochs (÷10 at 6) of 3 flow steps
(as configs/sweeps/eps_alpha.py). Left out for time on digits: BadNets 2%, LC (its
surrogate and poisoning) and β = 0.7; the CIFAR-10 grid has them all.
"""

from abd_jax.reproduce import Arm, Reproduction, Vary, load, main


def gao(spec, data, **overrides):
  """Gao's 100 epochs on CIFAR-10; on digits the short schedule of configs/sweeps/eps_alpha.py."""
  schedule = ({'train__epochs': 100} if data == 'cifar10' else
              dict(train__epochs=8, train__milestones=(6,), perturb__steps=3, eval__every_epochs=8))
  return load(spec, data, **{**schedule, **overrides})


def arms(data):
  digits = data.startswith('digits')
  betas = Vary('beta', 'perturb.beta', (0.9, 0.8, 0.6) if digits else (0.9, 0.8, 0.7, 0.6))
  out = []
  grid = ((('badnets', 0.01),) if digits else
          tuple((a, r) for a in ('badnets', 'lc') for r in (0.01, 0.02)))
  for attack, rate in grid:
    config = lambda name: gao(f'configs/spatial_at.py:{attack}', data, perturb__name=name,
                              attack__poison_rate=rate, attack__target_class_rate=0.0)
    keys = {'attack': attack, 'poison_rate': str(rate)}
    tag = attack if rate == 0.01 else f'{attack}{round(rate * 100)}'
    out += [Arm(f'{tag}_none', keys={**keys, 'training': 'standard', 'beta': 'none'},
                config=config('none')),
            Arm(f'{tag}_spatial', keys={**keys, 'training': 'spatial', 'beta': 'none'},
                config=config('spatial')),
            Arm(f'{tag}_relaxed', keys={**keys, 'training': 'relaxed_spatial'},
                config=config('spatial'), vary=(betas,))]
  return out


EXPERIMENT = Reproduction('gao_table6', papers=('gao_table6',), arms=arms,
                          metrics=('clean_acc', 'asr'), datasets=('digits', 'digits32', 'cifar10'),
                          description=__doc__)

if __name__ == '__main__':
  main(EXPERIMENT)
