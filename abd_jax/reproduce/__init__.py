"""Reproductions of the seed papers' tables and figures (the scripts in experiments/).

    from abd_jax.reproduce import Arm, Reproduction, Vary, load, main

    def arms(data):
      return [Arm('at', keys={'training': 'linf'}, config=load('configs/cat.py', data),
                  vary=(Vary('eps', 'perturb.eps', (0.05, 0.1), labels=('4/255', '8/255')),))]

    EXPERIMENT = Reproduction('gao_table2', papers=('gao_table2',), arms=arms)
    if __name__ == '__main__':
      main(EXPERIMENT)

A script's arms run through `abd_jax.sweep`; `paper` reads the papers' numbers from
experiments/paper/NAME.md and `results` writes experiments/results/NAME.{md,csv,json,png}
with them side by side.
"""

from abd_jax.reproduce.paper import PaperTable, PaperTableError
from abd_jax.reproduce.runner import main, run
from abd_jax.reproduce.spec import Arm, Reproduction, Vary, load

__all__ = ['Arm', 'PaperTable', 'PaperTableError', 'Reproduction', 'Vary', 'load', 'main', 'run']
