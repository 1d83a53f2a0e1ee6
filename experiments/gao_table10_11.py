"""Gao et al. (TNNLS'23), Tables X–XI: CAT at β 1.0 / 0.9 / 0.8 across attacks and BadNets poison rates.

Paper (CIFAR-10, ResNet-18, SGD 100 epochs, lr 0.1 ÷10 at 60/90): Table X, the attacks of
Table VII (BadNets, LC, SIG 1%; blended, WaNet 5%; Trojan 0.2%), no defense against CAT
(ε_l 4/255, ε_s 0.05) at β ∈ {1.0, 0.9, 0.8}: the ASR stays low at every β (SIG excepted).
Table XI, BadNets at 1% / 5% / 10%: the higher the rate, the more of the backdoor survives,
most at β 0.8. The no-defense and β 0.8 columns are Table VII's (the same runs as
gao_table7.py).
Digits (`:digits` presets, CAT ε_l 0.1, ε_s 0.15): CNN, 8 epochs (÷10 at 6) of PGD-3 (as
configs/sweeps/eps_alpha.py). Left out for time on digits: LC, WaNet, Trojan and SIG, β 1.0 /
0.9 on blended, and the 5% rate.
"""

import os
import runpy

from abd_jax.reproduce import Arm, Reproduction, Vary, main

# Gao's schedule and attack settings, as in gao_table7.py (the same arms share runs).
_TABLE7 = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'gao_table7.py'))
gao, defended, SETTINGS = _TABLE7['gao'], _TABLE7['defended'], _TABLE7['SETTINGS']
BETAS = Vary('beta', 'perturb.beta', (1.0, 0.9))


def cat_arms(name, keys, data, sweep_beta, **overrides):
  """No defense, CAT at β 0.8 (Table VII's runs) and, with `sweep_beta`, at β 1.0 / 0.9."""
  attack = name.rstrip('0123456789')
  out = [Arm(f'{name}_none', keys={**keys, 'defense': 'none', 'beta': 'none'},
             config=defended(attack, 'none', data, **overrides)),
         Arm(f'{name}_cat', keys={**keys, 'defense': 'cat', 'beta': '0.8'},
             config=defended(attack, 'cat', data, **overrides))]
  if sweep_beta:
    out.append(Arm(f'{name}_cat_beta', keys={**keys, 'defense': 'cat'},
                   config=defended(attack, 'cat', data, **overrides), vary=(BETAS,)))
  return out


def arms(data):
  digits = data.startswith('digits')
  out = []
  for attack in ('badnets', 'blended') if digits else SETTINGS:
    keys = {'attack': attack, **({'poison_rate': '0.01'} if attack == 'badnets' else {})}
    out += cat_arms(attack, keys, data, sweep_beta=attack == 'badnets' or not digits)
  for rate in (0.1,) if digits else (0.05, 0.1):
    out += cat_arms(f'badnets{round(rate * 100)}', {'poison_rate': str(rate)}, data,
                    sweep_beta=True, attack__poison_rate=rate)
  return out


EXPERIMENT = Reproduction('gao_table10_11', papers=('gao_table10', 'gao_table11'), arms=arms,
                          metrics=('clean_acc', 'asr'), datasets=('digits', 'digits32', 'cifar10'),
                          description=__doc__)

if __name__ == '__main__':
  main(EXPERIMENT)
