"""ICLR'22 submission, Fig. 8 (App. B): clean accuracies of the Fig. 3 models.

Paper: the runs of Fig. 3(a)–(h) (see iclr22_fig3a.py and iclr22_fig3.py); the figure prints
no numbers. The arms are those two scripts' own (same configs and axes, so the same
run directories: nothing is trained again once they have run), with the panel and variant as
keys. The paper table has no ε / α key, so each panel's cell is the mean ± std of clean_acc
over that panel's grid; the CSV holds every point with its ε (and α).
"""

import dataclasses
import os
import runpy

from abd_jax.reproduce import Reproduction, main

HERE = os.path.dirname(os.path.abspath(__file__))
FIG3A = runpy.run_path(os.path.join(HERE, 'iclr22_fig3a.py'))
FIG3 = runpy.run_path(os.path.join(HERE, 'iclr22_fig3.py'))


def arms(data):
  basic = [dataclasses.replace(a, keys={'panel': 'a', 'variant': 'basic'})
           for a in FIG3A['arms'](data)]
  return basic + [dataclasses.replace(a, keys=dict(zip(('panel', 'variant'), FIG3['PANELS'][a.name])))
                  for a in FIG3['arms'](data)]


EXPERIMENT = Reproduction('iclr22_fig8', papers=('iclr22_fig8',), arms=arms,
                          metrics=FIG3['EXPERIMENT'].metrics, description=__doc__)

if __name__ == '__main__':
  main(EXPERIMENT)
