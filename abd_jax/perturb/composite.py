"""Composite adversarial training (CAT), Gao et al. (TNNLS'23), Sec. IV, Algorithm 1.

One training input per sample, built in two stages:

    x'  = T(x, beta · w* + (1 - beta) · zeta)          relaxed spatial, eq. (2)
    x'' = Clip_[0,1](x' + beta · eps* + (1 - beta) · v)  relaxed L-inf,   eq. (3)

w* maximizes the loss over flows with ||w||_inf <= eps_s, eps* over ||eps||_inf <= eps_l
around x' (the paper's eps* = argmax l(f(x' + eps), y)); zeta and v are uniform random
signs of the same budgets. The spatial stage targets patch triggers, the L-inf stage
whole-image triggers. Eq. (3) prints x'' = x + eps~; adding eps~ to x instead of x'
would discard the spatial stage that Algorithm 1 computes first, so the ball is around
x' as in the definition of eps*. CIFAR-10 defaults: eps_l = 4/255, eps_s = 0.05,
beta = 0.8.
"""

from __future__ import annotations

import jax

from abd_jax.perturb.base import Array, Hparams, LogitsFn
from abd_jax.perturb.relaxed import relaxed_linf
from abd_jax.perturb.spatial import spatial


def cat_keys(key: Array) -> tuple[Array, Array]:
  """(spatial-stage key, L-inf-stage key) of `cat`."""
  k_spatial, k_linf = jax.random.split(key)
  return k_spatial, k_linf


def cat(logits_fn: LogitsFn, x: Array, y: Array, key: Array, hp: Hparams, *,
        steps: int, random_start: bool = True, unroll: bool | int = 1) -> Array:
  """CAT's inner maximization: `spatial` on x, then `relaxed_linf` on its output.

  x: [B,H,W,C] in [0, 1] -> x'' [B,H,W,C] in [0, 1], ||x'' - x'||_inf <= eps. Uses
  hp['eps_spatial'], hp['step_size_spatial'] (stage 1), hp['eps'], hp['step_size']
  (stage 2) and the shared hp['beta']; both stages run `steps` steps. The spatial stage
  differentiates only the flow, the L-inf stage only its perturbation: x' enters
  stage 2 as data.
  """
  k_spatial, k_linf = cat_keys(key)
  x_spatial = spatial(logits_fn, x, y, k_spatial, hp, steps=steps, random_start=random_start,
                      unroll=unroll)
  x_spatial = jax.lax.stop_gradient(x_spatial)
  return relaxed_linf(logits_fn, x_spatial, y, k_linf, hp, steps=steps,
                      random_start=random_start, unroll=unroll)
