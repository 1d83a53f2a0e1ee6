"""L2 PGD (Madry et al. 2018): normalized-gradient steps projected onto the L2 ball.

    x_{t+1} = Clip_[0,1]( x + Proj_{||d||_2 <= eps}( x_t - x + step_size · g / ||g||_2 ) ),
    g = grad_x CE(f(x_t), y),  norms per sample over all pixels and channels.

Random start as in Madry et al.'s reference L2 code, the MadryLab `robustness` library
(`robustness/attack_steps.py`, `L2Step.random_perturb`, as of v1.2): a point on the sphere
of radius eps, x_0 = Clip_[0,1](x + eps · n / ||n||_2), n ~ N(0, I) per sample.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from abd_jax.perturb.base import Array, Hparams, LogitsFn, clip01, input_grad, iterate

_TINY = 1e-12  # keeps the normalization finite where a gradient or delta is exactly zero


def _per_sample_norm(v: Array) -> Array:
  """L2 norm over all but the batch axis, broadcastable against v."""
  return jnp.sqrt(jnp.sum(v * v, axis=tuple(range(1, v.ndim)), keepdims=True))


def project_l2(delta: Array, eps: Array) -> Array:
  """Scales each sample's delta down onto the ball ||delta||_2 <= eps (no-op inside it)."""
  norm = _per_sample_norm(delta)
  return delta * jnp.minimum(1.0, eps / jnp.maximum(norm, _TINY))


def sphere_start(key: Array, x: Array, eps: Array) -> Array:
  """x + eps · n / ||n||_2 with n ~ N(0, I) per sample (a uniformly random direction on the
  sphere of radius eps, not a point inside the ball), clipped to [0, 1] — the random start
  of `robustness`' `L2Step.random_perturb` (MadryLab)."""
  n = jax.random.normal(key, x.shape, x.dtype)
  return clip01(x + eps * n / jnp.maximum(_per_sample_norm(n), _TINY))


def pgd_l2(logits_fn: LogitsFn, x: Array, y: Array, key: Array, hp: Hparams, *,
           steps: int, random_start: bool = True, unroll: bool | int = 1) -> Array:
  """L2 PGD-K. Random start (optional): `sphere_start`, on the sphere of radius eps."""
  eps, step_size = hp['eps'], hp['step_size']
  x_start = sphere_start(key, x, eps) if random_start else x

  def step(x_adv):
    g = input_grad(logits_fn, x_adv, y)
    x_adv = x_adv + step_size * g / jnp.maximum(_per_sample_norm(g), _TINY)
    return clip01(x + project_l2(x_adv - x, eps))

  return iterate(steps, step, x_start, unroll)
