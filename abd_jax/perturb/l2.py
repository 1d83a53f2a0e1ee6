"""L2 PGD (Madry et al. 2018): normalized-gradient steps projected onto the L2 ball.

    x_{t+1} = Clip_[0,1]( x + Proj_{||d||_2 <= eps}( x_t - x + step_size · g / ||g||_2 ) ),
    g = grad_x CE(f(x_t), y),  norms per sample over all pixels and channels.
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


def pgd_l2(logits_fn: LogitsFn, x: Array, y: Array, key: Array, hp: Hparams, *,
           steps: int, random_start: bool = True, unroll: bool | int = 1) -> Array:
  """L2 PGD-K. Random start: a uniformly random direction with radius eps·U(0, 1)."""
  eps, step_size = hp['eps'], hp['step_size']
  if random_start:
    k_dir, k_rad = jax.random.split(key)
    direction = jax.random.normal(k_dir, x.shape, x.dtype)
    direction = direction / jnp.maximum(_per_sample_norm(direction), _TINY)
    radius = jax.random.uniform(k_rad, (x.shape[0],) + (1,) * (x.ndim - 1), x.dtype)
    x_start = clip01(x + eps * radius * direction)
  else:
    x_start = x

  def step(x_adv):
    g = input_grad(logits_fn, x_adv, y)
    x_adv = x_adv + step_size * g / jnp.maximum(_per_sample_norm(g), _TINY)
    return clip01(x + project_l2(x_adv - x, eps))

  return iterate(steps, step, x_start, unroll)
