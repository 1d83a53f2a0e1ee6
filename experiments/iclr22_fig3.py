"""ICLR'22 submission, Fig. 3(b)–(h): ASR under AT at ε = 0, a small and a large budget, per variant of the basic setting.

Paper (CIFAR-10, ResNet-18): the basic setting of Fig. 3(a) (clean-label 3×3 checkerboard,
5% of class 2, PGD-10 AT with step 2/255, 120 epochs) changed in one thing per panel:
(b)/(c) 3% / 8% of the class, (d) a random 3×3 pattern, (e) a 2×2 checkerboard, (f) dirty
labels, (g) VGG16, (h) target ship; finding: ASR rises at small budgets and falls above a
threshold. Each panel is one arm at ε ∈ {0, 4/255 (`small`), 16/255 (`large`)} (Fig. 3(a)'s
α = 0.6 threshold lies between them) at α = 0.6, the transparency Sec. 3.1 describes; (f)
poisons 250 images (0.5% of the data, the basic count) of any class.
Digits (`configs/sweeps/eps_alpha.py:digits`, as Fig. 3(a)): dirty-label 10% to class 2,
CNN, 8 epochs of PGD-3 with step ε/4; `small` = 0.05, `large` = 0.2 (Fig. 3(a)'s stand-ins
for 4/255 and 16/255); α = 0.2, since on digits only α ≤ 0.4 has a threshold within the
budgets (README: α ≥ 0.6 survives ε = 0.2). (b)/(c) scale the digits 10% by 3/5 and 8/5
(6% / 16% of the data); ship is class 8. Left out on digits: (f), since the digits setting
is already dirty-label (iclr22_fig3a.py's α = 0.2 points at ε 0 / 0.05 / 0.2 are this panel),
and (g) (VGG16 needs 32×32 images); everywhere: the full ε curve and the other α (Fig. 3(a)
covers them for the basic setting).
"""

from abd_jax.reproduce import Arm, Reproduction, Vary, load, main

EPS_LABELS = ('0', 'small', 'large')
DIGITS_EPS = (0.0, 0.05, 0.2)
CIFAR_EPS = (0.0, 4 / 255, 16 / 255)
# name -> (Fig. 3 / Fig. 8 panel, Fig. 8 variant)
PANELS = {'rate3': ('b', 'poison_rate_0.03'), 'rate8': ('c', 'poison_rate_0.08'),
          'random': ('d', 'random_trigger'), 'size2': ('e', 'trigger_2x2'),
          'dirty': ('f', 'dirty_label'), 'vgg16': ('g', 'vgg16'), 'ship': ('h', 'ship_target')}


def eps_axis(data, labels=EPS_LABELS, digits=DIGITS_EPS, cifar=CIFAR_EPS):
  """Digits budgets with step ε/4, or the paper's with step 2/255."""
  if data.startswith('digits'):
    return Vary('eps', ('perturb.eps', 'perturb.step_size'), tuple((e, e / 4) for e in digits),
                labels=labels)
  return Vary('eps', 'perturb.eps', cifar, labels=labels)


def arms(data):
  digits = data.startswith('digits')

  def arm(name, keys, **overrides):
    config = load('configs/sweeps/eps_alpha.py', data, attack__alpha=0.2 if digits else 0.6,
                  **overrides)
    return Arm(name, keys=keys, config=config, vary=(eps_axis(data),))

  rate = 'attack__poison_rate' if digits else 'attack__target_class_rate'
  out = [
      arm('rate3', {'poison_rate': '0.03'}, **{rate: 0.06 if digits else 0.03}),
      arm('rate8', {'poison_rate': '0.08'}, **{rate: 0.16 if digits else 0.08}),
      arm('random', {'trigger': 'random_3x3'}, attack__pattern='random'),
      arm('size2', {'trigger': 'checkerboard_2x2'}, attack__patch_size=2),
  ]
  if not digits:
    out += [arm('dirty', {'poisoning': 'dirty_label'}, attack__label_mode='dirty',
                attack__poison_rate=0.005, attack__target_class_rate=0.0),
            arm('vgg16', {'model': 'vgg16'}, model__name='vgg16')]
  return out + [arm('ship', {'target': 'ship'}, attack__target=8)]


EXPERIMENT = Reproduction('iclr22_fig3', papers=tuple(f'iclr22_fig3{p}' for p in 'bcdefgh'),
                          arms=arms, metrics=('asr', 'clean_acc'), description=__doc__)

if __name__ == '__main__':
  main(EXPERIMENT)
