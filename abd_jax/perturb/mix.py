"""Label-mixing augmentations, the baselines of Gao et al. (TNNLS'23, Tables III-IV):
mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019).

A mixing is `mix(key, x, y, hp) -> (x_mixed, y_other, lam)`: the batch is paired with a
random permutation of itself, and the loss is

    lam · CE(f(x_mixed), y) + (1 - lam) · CE(f(x_mixed), y_other),

lam ~ Beta(mix_alpha, mix_alpha), one draw per batch as in both papers.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from abd_jax.perturb.base import Array, Hparams

Mixing = Callable[[Array, Array, Array, Hparams], tuple[Array, Array, Array]]


def _partner(key: Array, x: Array, y: Array) -> tuple[Array, Array]:
  perm = jax.random.permutation(key, x.shape[0])
  return x[perm], y[perm]


def mixup(key: Array, x: Array, y: Array, hp: Hparams) -> tuple[Array, Array, Array]:
  """x~ = lam·x + (1 - lam)·x[perm]. Returns (x~, y[perm], lam) with lam a scalar."""
  k_lam, k_perm = jax.random.split(key)
  lam = jax.random.beta(k_lam, hp['mix_alpha'], hp['mix_alpha'])
  x2, y2 = _partner(k_perm, x, y)
  return lam * x + (1.0 - lam) * x2, y2, lam


def cutmix(key: Array, x: Array, y: Array, hp: Hparams) -> tuple[Array, Array, Array]:
  """Pastes a box of x[perm] into x. The box has area ≈ (1 - lam0)·H·W at a uniform
  centre, clipped to the image; lam is then the exact kept fraction 1 - box/(H·W)."""
  k_lam, k_perm, k_y, k_x = jax.random.split(key, 4)
  h, w = x.shape[1], x.shape[2]
  lam0 = jax.random.beta(k_lam, hp['mix_alpha'], hp['mix_alpha'])
  cut = jnp.sqrt(1.0 - lam0)
  cy = jax.random.uniform(k_y, (), minval=0.0, maxval=h)
  cx = jax.random.uniform(k_x, (), minval=0.0, maxval=w)
  y0, y1 = jnp.clip(cy - cut * h / 2, 0, h), jnp.clip(cy + cut * h / 2, 0, h)
  x0, x1 = jnp.clip(cx - cut * w / 2, 0, w), jnp.clip(cx + cut * w / 2, 0, w)
  rows, cols = jnp.arange(h)[:, None] + 0.5, jnp.arange(w)[None, :] + 0.5
  box = ((rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1))[None, :, :, None]
  x2, y2 = _partner(k_perm, x, y)
  lam = 1.0 - jnp.mean(box.astype(jnp.float32))
  return jnp.where(box, x2, x), y2, lam


MIXINGS: dict[str, Mixing] = {'mixup': mixup, 'cutmix': cutmix}
