"""Inner maximizations, chosen by name (`perturb.name` in the config).

`make_perturbation(name, steps, random_start, unroll)` binds the static parts and returns
a `Perturbation`: `(logits_fn, x, y, key, hp) -> x_adv` with traced hyperparameters in
`hp`: `eps`, `step_size` (L-inf / L2), `eps_spatial`, `step_size_spatial` (flow, in
normalized grid units) and `beta` (relaxation; 1 = fully adversarial). 'none' is the
identity (standard training).

Regimes of Gao et al. (TNNLS'23): 'spatial' (relaxed flow-field attack), 'relaxed_linf',
the random baselines 'random_linf' and 'random_spatial', and 'cat' (composite AT,
Algorithm 1: relaxed spatial, then relaxed L-inf). 'linf' is plain PGD and ignores beta.
"""

from __future__ import annotations

import functools

from abd_jax.perturb import composite, l2, linf, relaxed, spatial
from abd_jax.perturb.mix import MIXINGS, Mixing
from abd_jax.perturb.base import Perturbation, resolve_unroll

_REGISTRY = {
    'linf': linf.pgd,
    'l2': l2.pgd_l2,
    'fgsm': linf.fgsm,
    'fgsm_targeted': linf.fgsm_targeted,
    'ifgsm': linf.ifgsm,
    'relaxed_linf': relaxed.relaxed_linf,
    'random_linf': relaxed.random_linf,
    'spatial': spatial.spatial,
    'random_spatial': spatial.random_spatial,
    'cat': composite.cat,
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
