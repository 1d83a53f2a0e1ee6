"""Weng et al. (NeurIPS'20), supplement Table 5: spectral signatures (a) and activation
clustering (b) find the dirty-label sticker in a standard model but only about half of the
clean-label stickers in an adversarially trained one, whose backdoor survives the defense.

Paper (CIFAR-10, ImageNet): 'dirty-label sticker + standard training' vs 'clean-label sticker
+ adversarial training'; the detected examples are removed and the model retrained. Here
`configs/spectral.py` and `configs/activation_clustering.py` as shipped for the standard rows
(BadNets 3×3 checkerboard, dirty-label 1%, target 0); for the AT rows the same defense with
PGD-AT (`perturb.name=linf`, 5 steps as the paper's main AT, `eval.robust=true`; detector and
final model) against `weng_tradeoff`'s clean-label patch (`eps_curve.py`: target 2, 5% of the
class, 50% on digits). The paper's columns map to result keys: asr_no_defense -> detector_asr
(the detector is the configured training on the poisoned set), asr_defense -> asr,
detection_rate -> recall, each beside the paper's column. mean_deviation is
not reported by the library. Key `lc` is the paper's clean-label sticker as transcribed (the
library's clean-label BadNets here, not Turner et al.'s LC attack).
Digits get the key `cifar10` (no MNIST rows): the `:digits` presets (AT ε 0.1, step 0.025),
shortened to 8 epochs (lr step at 6) to fit the budget. Left out: ImageNet.
"""

import copy

from abd_jax.reproduce import Arm, Reproduction, load, main

DEFENSES = (('spectral', 'configs/spectral.py'), ('ac', 'configs/activation_clustering.py'))
NAMES = {'spectral': 'spectral', 'ac': 'activation_clustering'}


def config(path, data, adversarial):
  short = {} if data == 'cifar10' else dict(train__epochs=8, train__milestones=(6,),
                                            eval__every_epochs=8)
  c = load(path, data, **short)
  if adversarial:
    c.attack = copy.deepcopy(load('configs/sweeps/eps_curve.py', data).attack)
    c.perturb.update(name='linf', steps=5)
    c.eval.robust = True
  return c


def arms(data):
  out = []
  for short, path in DEFENSES:
    for adversarial, attack, training in ((False, 'badnets', 'standard'), (True, 'lc', 'linf')):
      keys = {'dataset': 'cifar10', 'defense': NAMES[short], 'attack': attack,
              'training': training}
      out.append(Arm(f'{short}_{"at" if adversarial else "st"}', keys=keys,
                     config=config(path, data, adversarial)))
  return out


EXPERIMENT = Reproduction('weng_supp_table5', papers=('weng_supp_table5',), arms=arms,
                          metrics=('detector_asr', 'asr', 'recall', 'clean_acc'),
                          paper_columns={'detector_asr': 'asr_no_defense', 'asr': 'asr_defense',
                                         'recall': 'detection_rate'},
                          description=__doc__)

if __name__ == '__main__':
  main(EXPERIMENT)
