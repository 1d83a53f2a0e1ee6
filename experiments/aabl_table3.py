"""Zhao & Wressnegger (AISec'24, A-ABL), Table 3: A-ABL against ABL, DBD, D-ST, CBD and plain
adversarial training: clean accuracy, ASR and robust accuracy per attack.

Paper (CIFAR-10 / GTSRB ResNet-18, Tiny-ImageNet ResNet-34): dirty-label 10% to class 0
(CLB: half the target class, all of it on Tiny-ImageNet), Blend at opacity 0.1; A-ABL =
20 epochs of naive training, the iFGSM (2/255, 5 steps; 1/255 on Tiny-ImageNet) + SCE +
Otsu split, PGD-AT (8/255, 10 steps, 100 epochs) on D_vul (`configs/aabl.py`); Adv. Train =
the same PGD-AT on the whole poisoned set (`defense.name=none`); ABL with its own γ 0.5,
DBD, D-ST and CBD as `configs/{abl,dbd,dst,cbd}.py` ship them; RA by PGD-10 at 8/255.
The paper-scale arms run every attack (and the clean set) against every defense. Blend
uses the library's seeded noise pattern in place of the Hello-Kitty image.

Digits: the `:digits` presets (A-ABL: 30 stage-1 epochs, iFGSM probe 0.3 in steps of 0.1,
15 epochs of PGD-5 AT at 0.1; the others as in README "A-ABL's comparison defenses on
digits"; Blend at the presets' α 0.2), RA by PGD-10 at 0.1. For the compute budget only
BadNets runs against all six defenses, and Blended (the paper's Category-B case where
plain AT already suffices) against Adv. Train and A-ABL only; the clean set, Trojan, CLB,
IAB, SSBA and WaNet are left out on digits. The A-ABL arms are built as in aabl_table5 and
aabl_table7, whose identical arms share their runs. The paper's average / worst-case rows
are not recomputed.
"""

import os
import runpy

from abd_jax.reproduce import Arm, Reproduction, main

ATTACKS = ('badnets', 'trojan', 'lc', 'iab', 'blended', 'ssba', 'wanet')
DEFENSES = {'abl': ('configs/abl.py', {'defense__abl_gamma': 0.5}),
            'dbd': ('configs/dbd.py', {}), 'dst': ('configs/dst.py', {}),
            'cbd': ('configs/cbd.py', {}),
            'adv_train': ('configs/aabl.py', {'defense__name': 'none'}),
            'aabl': ('configs/aabl.py', {})}
DIGITS = (('badnets', tuple(DEFENSES)), ('blended', ('adv_train', 'aabl')))
METRICS = ('clean_acc', 'asr', 'robust_acc', 'kept_fraction', 'kept_poison_rate')


# A-ABL's attack settings, shared with the other aabl_* scripts (the same arms share runs).
attack_config = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                             'aabl_table1_2.py'))['attack_config']


def arms(data):
  grid = DIGITS if data.startswith('digits') else [(a, tuple(DEFENSES)) for a in ('none',) + ATTACKS]
  return [Arm(f'{defense}-{attack}', keys={'attack': attack, 'defense': defense},
              config=attack_config(DEFENSES[defense][0], data, attack, **DEFENSES[defense][1]))
          for attack, defenses in grid for defense in defenses]


EXPERIMENT = Reproduction(
    'aabl_table3', papers=('aabl_table3_cifar10', 'aabl_table3_gtsrb', 'aabl_table3_tiny_imagenet'),
    arms=arms, metrics=METRICS, datasets=('digits', 'cifar10', 'gtsrb', 'tiny_imagenet'),
    description=__doc__)

if __name__ == '__main__':
  main(EXPERIMENT)
