"""Inner maximizations, chosen by name (`perturb.name` in the config).

`make_perturbation(name, steps, random_start, unroll)` binds the static parts and returns
a `Perturbation`: `(logits_fn, x, y, key, hp) -> x_adv` with traced `hp['eps']` and
`hp['step_size']`. 'none' is the identity (standard training).
"""

from __future__ import annotations

import functools

from abd_jax.perturb import l2, linf
from abd_jax.perturb.mix import MIXINGS, Mixing
from abd_jax.perturb.base import Perturbation, resolve_unroll

_REGISTRY = {
    'linf': linf.pgd,
    'l2': l2.pgd_l2,
    'fgsm': linf.fgsm,
    'fgsm_targeted': linf.fgsm_targeted,
    'ifgsm': linf.ifgsm,
}
PERTURB_NAMES = ('none',) + tuple(_REGISTRY) + tuple(MIXINGS)


def attack_logits_fn(model, variables: dict, bn_mode: str = 'eval'):
  """The model as the inner attack sees it. BatchNorm never updates its statistics there:
  'eval' uses the running statistics (the usual PGD-AT practice), 'batch' normalizes with
  the statistics of the batch being attacked and throws the update away."""
  if bn_mode == 'eval':
    return lambda x: model.apply(variables, x, train=False)
  return lambda x: model.apply(variables, x, train=True, mutable=['batch_stats'])[0]


def identity(logits_fn, x, y, key, hp):
  del logits_fn, y, key, hp
  return x


def make_perturbation(name: str, steps: int = 1, random_start: bool = True,
                      unroll: str = 'auto') -> Perturbation:
  if name == 'none' or name in MIXINGS:  # mixing regimes change inputs and labels in the step
    return identity
  if name not in _REGISTRY:
    raise ValueError(f'perturb.name = {name!r} is not allowed: must be one of {PERTURB_NAMES}')
  return functools.partial(_REGISTRY[name], steps=steps, random_start=random_start,
                           unroll=resolve_unroll(unroll))


__all__ = ['MIXINGS', 'Mixing', 'PERTURB_NAMES', 'Perturbation', 'attack_logits_fn', 'identity', 'make_perturbation']
