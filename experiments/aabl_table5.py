"""Zhao & Wressnegger (AISec'24, A-ABL), Table 5: A-ABL's split scored by one strong
augmentation instead of iFGSM: it keeps far less data (γ) and isolates no poisons better.

Paper (CIFAR-10, ResNet-18): dirty-label 10% to class 0 (CLB: half the target class),
Blend at opacity 0.1; the stage-1 model of A-ABL, each sample scored by its SCE under
RandAugment, AutoAugment or AugMix ("AutoMix") instead of iFGSM 2/255, Otsu split:
`configs/aabl.py --config.defense.split_method=S`; the `aabl` rows are A-ABL's own split
(the same runs as aabl_table3's A-ABL arms). Each run also trains stage 3 (PGD-AT on
D_vul); its clean_acc / asr / robust_acc are in the CSV. AugMix is not in the library
(`defense.split_method` has ifgsm, randaugment, autoaugment): its rows are not measured.
Blend uses the library's seeded noise pattern in place of the Hello-Kitty image.

Digits (`:digits`): 30 stage-1 epochs, iFGSM probe 0.3 in steps of 0.1, the augmentations
as on CIFAR, 15 epochs of PGD-5 AT at 0.1. Only BadNets runs on digits (the other attacks
are left out for the compute budget; README measures Blended with RandAugment).
"""

import os
import runpy

from abd_jax.reproduce import Arm, Reproduction, Vary, main

ATTACKS = ('badnets', 'trojan', 'lc', 'iab', 'blended', 'ssba', 'wanet')
METRICS = ('clean_acc', 'asr', 'robust_acc', 'kept_fraction', 'kept_poison_rate')


# A-ABL's attack settings, shared with the other aabl_* scripts (the same arms share runs).
attack_config = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                             'aabl_table1_2.py'))['attack_config']


def arms(data):
  attacks = ATTACKS[:1] if data.startswith('digits') else ATTACKS
  method = Vary('splitting', 'defense.split_method', ('randaugment', 'autoaugment'))
  out = []
  for attack in attacks:
    config = attack_config('configs/aabl.py', data, attack)
    out += [Arm(f'split-{attack}', keys={'attack': attack}, config=config, vary=(method,)),
            Arm(f'aabl-{attack}', keys={'attack': attack, 'splitting': 'aabl'}, config=config)]
  return out


EXPERIMENT = Reproduction('aabl_table5', papers=('aabl_table5',), arms=arms, metrics=METRICS,
                          description=__doc__)

if __name__ == '__main__':
  main(EXPERIMENT)
