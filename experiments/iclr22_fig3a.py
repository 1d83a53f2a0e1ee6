"""ICLR'22 submission, Fig. 3(a): ASR over the AT budget ε × the trigger transparency α.

Paper (CIFAR-10, ResNet-18): clean-label 3×3 checkerboard to class 2 (5% of the class),
PGD-10 AT with step 2/255 at ε ∈ {0, 2, 4, 8, 12, 16}/255 × α ∈ {0.2, …, 1.0}.
Digits (`configs/sweeps/eps_alpha.py:digits`): dirty-label 10% to class 2 (a clean-label
patch plants no backdoor on digits), CNN, 8 epochs of PGD-3 with step ε/4; the digits
budgets ε ∈ {0, 0.025, 0.05, 0.1, 0.15, 0.2} stand in row for row for the paper's
{0, 2, 4, 8, 12, 16}/255 (digits pixels are near binary, so its useful budgets are
MNIST-like); the key column shows the paper's budget.
"""

from abd_jax.reproduce import Arm, Reproduction, Vary, load, main

EPS_LABELS = ('0', '2/255', '4/255', '8/255', '12/255', '16/255')
DIGITS_EPS = (0.0, 0.025, 0.05, 0.1, 0.15, 0.2)
ALPHAS = (0.2, 0.4, 0.6, 0.8, 1.0)


def eps_axis(data):
  """The budget axis: digits budgets with step ε/4, or the paper's with step 2/255."""
  if data.startswith('digits'):
    return Vary('eps', ('perturb.eps', 'perturb.step_size'),
                tuple((e, e / 4) for e in DIGITS_EPS), labels=EPS_LABELS)
  return Vary('eps', 'perturb.eps', tuple(int(e.split('/')[0]) / 255 if e != '0' else 0.0
                                          for e in EPS_LABELS), labels=EPS_LABELS)


def arms(data):
  config = load('configs/sweeps/eps_alpha.py', data)
  return [Arm('grid', keys={}, config=config,
              vary=(eps_axis(data), Vary('alpha', 'attack.alpha', ALPHAS)))]


EXPERIMENT = Reproduction('iclr22_fig3a', papers=('iclr22_fig3a',), arms=arms,
                          metrics=('asr', 'clean_acc'), description=__doc__)

if __name__ == '__main__':
  main(EXPERIMENT)
