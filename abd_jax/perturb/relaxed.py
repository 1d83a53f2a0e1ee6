"""Random-sign baselines and relaxed adversarial perturbations (Gao et al., TNNLS'23,
Sections III-D and III-E).

Random L-inf perturbation (Sec. III-D):

    x_rand = Clip_[0,1](x + v),   v ∈ {-eps, +eps}^d, each sign uniform and independent.

Relaxed L-inf perturbation (Sec. III-E), u = x_pgd - x the PGD perturbation:

    g_l(x; eps, beta) = Clip_[0,1](x + beta · u + (1 - beta) · v).

beta = 1 is plain PGD, beta = 0 the random baseline; the paper uses 0.8 in CAT (Tables
V-VI: 0.9 keeps the backdoor mitigation and raises clean accuracy, 0.6 mostly loses it). The same mixing `relax` is applied to
spatial flows (`abd_jax.perturb.spatial`).

Keys: the adversarial part draws its random start from `key` itself and the random part
from `random_part_key(key)`, so with one key beta = 1 reproduces 'linf' bit for bit and
beta = 0 reproduces 'random_linf' (to float rounding).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from abd_jax.perturb.base import Array, Hparams, LogitsFn, clip01
from abd_jax.perturb.linf import pgd


def random_part_key(key: Array) -> Array:
  """The key of the random component of a relaxed perturbation (see the module doc)."""
  return jax.random.fold_in(key, 1)


def random_signs(key: Array, shape: tuple[int, ...], eps: Array,
                 dtype: jnp.dtype = jnp.float32) -> Array:
  """`shape` entries drawn uniformly from {-eps, +eps} (traced eps; eps = 0 gives zeros)."""
  return jnp.where(jax.random.bernoulli(key, 0.5, shape), eps, -eps).astype(dtype)


def relax(adv: Array, rand: Array, beta: Array) -> Array:
  """beta · adv + (1 - beta) · rand, the relaxation of Gao et al. (Sec. III-E; eq. (2)'s
  w~ = beta · w* + (1 - beta) · tau for flows).

  Written as adv + (1 - beta) · (rand - adv): the same value, but beta = 1 returns `adv`
  bit for bit, so the relaxed attack at beta = 1 is exactly the plain attack. Works on
  perturbations (u, v) and on points (x + u, x + v) alike, since the weights sum to one.
  adv, rand: same shape; beta: traced scalar in [0, 1].
  """
  return adv + (1.0 - beta) * (rand - adv)


def random_linf(logits_fn: LogitsFn, x: Array, y: Array, key: Array, hp: Hparams, *,
                steps: int = 1, random_start: bool = True, unroll: bool | int = 1) -> Array:
  """Random L-inf baseline (Sec. III-D, Table I): Clip_[0,1](x + v), v ∈ {±eps}^d.

  x: [B,H,W,C] in [0, 1]; uses hp['eps']. The model, labels, `steps`, `random_start` and
  `unroll` are ignored. The signs come from `random_part_key(key)`, as in 'relaxed_linf'.
  """
  del logits_fn, y, steps, random_start, unroll
  return clip01(x + random_signs(random_part_key(key), x.shape, hp['eps'], x.dtype))


def relaxed_linf(logits_fn: LogitsFn, x: Array, y: Array, key: Array, hp: Hparams, *,
                 steps: int, random_start: bool = True, unroll: bool | int = 1) -> Array:
  """Relaxed L-inf PGD-K (Sec. III-E; step 2 of CAT, eq. (3)):

      x'' = Clip_[0,1](x + beta · u + (1 - beta) · v),  u = PGD_K(x) - x,  v ∈ {±eps}^d.

  x: [B,H,W,C] in [0, 1] -> [B,H,W,C] in [0, 1], within eps of x in L-inf (|u|, |v| <= eps
  and the weights sum to one). Uses hp['eps'], hp['step_size'] and hp['beta'] (1 if
  absent). At beta = 1 the output equals `linf.pgd` with the same key bit for bit.
  """
  beta = hp.get('beta', jnp.float32(1.0))
  x_adv = pgd(logits_fn, x, y, key, hp, steps=steps, random_start=random_start, unroll=unroll)
  x_rand = x + random_signs(random_part_key(key), x.shape, hp['eps'], x.dtype)
  # Mixing the points x + u and x + v is the paper's x + beta·u + (1-beta)·v.
  return clip01(relax(x_adv, x_rand, beta))
