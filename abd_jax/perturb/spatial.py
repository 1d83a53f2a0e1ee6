"""Spatial (flow-field) adversarial perturbation: Xiao et al. (ICLR 2018, "stAdv") as
used for spatial AT by Gao et al. (TNNLS'23, Sec. II-A and step 1 of CAT, eq. (2)).

A flow w [B,H,W,2] moves where each output pixel reads the input, in the normalized
[-1, 1] grid coordinates of `abd_jax.poison.warp` ([..., 0] = x / column,
[..., 1] = y / row, -1 and +1 the centres of the first and last pixel):

    T(x, w)[i, j] = bilinear sample of x at identity[i, j] + w[i, j].

One pixel is 2 / (W - 1) units along x and 2 / (H - 1) along y, so the budget
eps_s = 0.05 of the paper is ≈ 0.78 px on 32x32 images and ≈ 0.18 px on 8x8.

Following Gao et al., the inner maximization is first-order with an L-inf budget on the
flow instead of stAdv's L-BFGS on loss + flow smoothness:

    w* = argmax_{||w||_inf <= eps_s} CE(f(T(x, w)), y)

solved by projected signed-gradient ascent on w (PGD on the flow), then relaxed with a
random sign flow (eq. (2)):

    w~ = beta · w* + (1 - beta) · zeta,  zeta ∈ {-eps_s, +eps_s}^{H x W x 2},  x' = T(x, w~).

(The paper writes the flows as absolute grids, w = gamma + flow and tau = gamma + zeta
with gamma the identity; the relaxation is the same on the offsets since the weights
sum to one.)

Sampling clamps coordinates into the image (the border pixel is repeated, like
grid_sample's padding_mode='border'), not the zero padding of `poison.warp.warp`: a flow
at the edge then never pulls in black. A spatial attack should only move pixels;
darkening the border would be a pixel-value perturbation. Inside the image both agree.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from abd_jax.perturb.base import Array, Hparams, LogitsFn, ce_sum, clip01, iterate
from abd_jax.perturb.relaxed import random_part_key, random_signs, relax


def pixel_size(image_hw: tuple[int, int]) -> Array:
  """[2] float32: the size of one pixel in normalized grid units, (2/(W-1), 2/(H-1))."""
  h, w = image_hw
  return jnp.array([2.0 / (w - 1), 2.0 / (h - 1)], jnp.float32)


def bilinear_table(x: Array) -> Array:
  """The per-pixel coefficients of bilinear interpolation, computed once per attack.

  For x [B,H,W,C] returns [B, H·W, 4, C] holding (a, dx, dy, dxy) at every pixel (p, q):
  a = x[p,q], dx = x[p,q+1] - a, dy = x[p+1,q] - a, dxy = x[p+1,q+1] - x[p+1,q] - dx,
  with the last row and column repeated (so dx = 0 on the last column, dy = 0 on the
  last row: clamp-to-border). Sampling then needs one gather of 4·C contiguous values
  per output pixel instead of four separate taps.
  """
  b, h, w, c = x.shape
  xp = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)), mode='edge')
  a = xp[:, :h, :w]
  right, down, diag = xp[:, :h, 1:], xp[:, 1:, :w], xp[:, 1:, 1:]
  dx = right - a
  dy = down - a
  dxy = diag - down - dx
  return jnp.stack([a, dx, dy, dxy], axis=3).reshape(b, h * w, 4, c)


def sample_flow(table: Array, flow: Array) -> Array:
  """T(x, w): bilinear sampling at identity + flow, coordinates clamped into the image.

  table: `bilinear_table(x)` [B, H·W, 4, C]; flow: [B,H,W,2] (or [H,W,2]) in normalized
  units. Returns [B,H,W,C] in the range of x. Zero flow is the identity bit for bit
  (integer coordinates read `a` with zero weights on the differences). Differentiable
  w.r.t. the flow; the table is treated as data (the gather is not differentiated when
  only the flow is).
  """
  b, _, _, c = table.shape
  height, width = flow.shape[-3], flow.shape[-2]
  flow = jnp.broadcast_to(flow, (b, height, width, 2))
  cols = jnp.arange(width, dtype=jnp.float32)[None, None, :]
  rows = jnp.arange(height, dtype=jnp.float32)[None, :, None]
  # Pixel coordinates of the sample (one normalized unit = (size - 1) / 2 px); the
  # identity is added in pixel units so that zero flow gives exact integers.
  px = jnp.clip(cols + flow[..., 0] * (0.5 * (width - 1)), 0.0, width - 1.0)
  py = jnp.clip(rows + flow[..., 1] * (0.5 * (height - 1)), 0.0, height - 1.0)
  x0, y0 = jax.lax.stop_gradient(jnp.floor(px)), jax.lax.stop_gradient(jnp.floor(py))
  tx, ty = (px - x0)[..., None], (py - y0)[..., None]  # [B,H,W,1] in [0, 1]
  # One gather over the flattened batch: a per-sample gather (take_along_axis) measured
  # ~15% slower per attack step inside the model's program on XLA:CPU.
  pixel = (y0 * width + x0).astype(jnp.int32)
  idx = (jnp.arange(b, dtype=jnp.int32)[:, None, None] * (height * width) + pixel).reshape(-1)
  coef = jnp.take(table.reshape(b * height * width, 4 * c), idx, axis=0, mode='clip')
  coef = coef.reshape(b, height, width, 4, c)
  a, dx, dy, dxy = coef[..., 0, :], coef[..., 1, :], coef[..., 2, :], coef[..., 3, :]
  return a + tx * dx + ty * (dy + tx * dxy)


def flow_warp(x: Array, flow: Array) -> Array:
  """x' = T(x, flow) for images x [B,H,W,C] in [0, 1] and flow [B,H,W,2] or [H,W,2] in
  normalized grid units -> [B,H,W,C] in [0, 1] (clipped against rounding)."""
  return clip01(sample_flow(bilinear_table(x), flow))


def random_flow(key: Array, x: Array, eps: Array) -> Array:
  """zeta ∈ {-eps, +eps}^{H x W x 2} per sample (Gao et al. Sec. III-D, IV): [B,H,W,2]."""
  return random_signs(key, x.shape[:3] + (2,), eps)


def spatial_flow(logits_fn: LogitsFn, x: Array, y: Array, key: Array, hp: Hparams, *,
                 steps: int, random_start: bool = True, unroll: bool | int = 1) -> Array:
  """w* of the spatial attack: `steps` projected signed-gradient ascent steps on the flow

      w <- Clip_[-eps_s, eps_s](w + step_size_spatial · sign(grad_w CE(f(T(x, w)), y))),

  from w ~ U(-eps_s, eps_s) (random_start) or 0. x: [B,H,W,C] in [0, 1]; returns
  [B,H,W,2] with ||w||_inf <= eps_s after every step. Only w is differentiated.
  """
  eps, step_size = hp['eps_spatial'], hp['step_size_spatial']
  table = bilinear_table(x)  # x is fixed through the attack: build the coefficients once
  shape = x.shape[:3] + (2,)
  if random_start:
    w0 = jax.random.uniform(key, shape, jnp.float32, -eps, eps)
  else:
    w0 = jnp.zeros(shape, jnp.float32)

  def loss(w):
    # No clip here: bilinear weights are convex, so the sample stays in [0, 1] up to
    # rounding, and a clip would zero the gradient on saturated (e.g. black) pixels.
    return ce_sum(logits_fn(sample_flow(table, w)), y)

  def step(w):
    w = w + step_size * jnp.sign(jax.grad(loss)(w))
    return jnp.clip(w, -eps, eps)

  return iterate(steps, step, w0, unroll)


def relaxed_flow(logits_fn: LogitsFn, x: Array, y: Array, key: Array, hp: Hparams, *,
                 steps: int, random_start: bool = True, unroll: bool | int = 1) -> Array:
  """w~ = beta · w* + (1 - beta) · zeta (eq. (2)), [B,H,W,2], ||w~||_inf <= eps_s.

  w* from `spatial_flow(key)`, zeta from `random_flow(random_part_key(key))`; hp['beta']
  (1 if absent) gives w* itself bit for bit at beta = 1.
  """
  beta = hp.get('beta', jnp.float32(1.0))
  w_adv = spatial_flow(logits_fn, x, y, key, hp, steps=steps, random_start=random_start,
                       unroll=unroll)
  return relax(w_adv, random_flow(random_part_key(key), x, hp['eps_spatial']), beta)


def spatial(logits_fn: LogitsFn, x: Array, y: Array, key: Array, hp: Hparams, *,
            steps: int, random_start: bool = True, unroll: bool | int = 1) -> Array:
  """Relaxed spatial adversarial perturbation x' = T(x, w~) (Gao et al. eq. (2)); plain
  spatial AT at beta = 1. x: [B,H,W,C] in [0, 1] -> [B,H,W,C] in [0, 1]. Uses
  hp['eps_spatial'], hp['step_size_spatial'] and hp['beta']."""
  w = relaxed_flow(logits_fn, x, y, key, hp, steps=steps, random_start=random_start,
                   unroll=unroll)
  return flow_warp(x, w)


def random_spatial(logits_fn: LogitsFn, x: Array, y: Array, key: Array, hp: Hparams, *,
                   steps: int = 1, random_start: bool = True, unroll: bool | int = 1) -> Array:
  """Random spatial baseline (Sec. III-D, Table II): x' = T(x, zeta), zeta ∈ {±eps_s}^{HxWx2}
  per sample, from `random_part_key(key)` as in 'spatial'. Uses hp['eps_spatial'] only."""
  del logits_fn, y, steps, random_start, unroll
  return flow_warp(x, random_flow(random_part_key(key), x, hp['eps_spatial']))
