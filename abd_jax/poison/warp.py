"""WaNet warping trigger (Nguyen & Tran, ICLR 2021) in JAX.

A grid is `[H,W,2]` (or `[B,H,W,2]`) of sampling positions in normalized [-1, 1]
coordinates, `[..., 0]` = x (column) and `[..., 1]` = y (row), the layout of
`torch.nn.functional.grid_sample(align_corners=True)`: -1 and +1 are the centres of
the first and last pixel. Output pixel (i, j) reads the input at grid[i, j].

    field = warping_field(key, (H, W))        # once per attack, fixed
    x_bd = warp(x, field)                     # poisoned / triggered test images
    x_cross = warp(x, noise_grid(key2, field, B))   # "noise mode" samples, labels kept
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

Array = jax.Array

# PyTorch's bicubic kernel constant (Keys' cubic convolution with A = -0.75); the
# WaNet field is upsampled with it, so using JAX's A = -0.5 kernel would change it.
_CUBIC_A = -0.75


def _bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
  """`[n_out, n_in]` weights of 1-D bicubic upsampling with align_corners=True.

  Matches `torch.nn.functional.interpolate(mode='bicubic', align_corners=True)`: output
  o samples input coordinate o * (n_in-1) / (n_out-1), taps beyond the ends are clamped
  to the edge value. The 2-D resize is separable: `Wy @ img @ Wx.T`.
  """
  a = _CUBIC_A
  src = np.arange(n_out) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
  i0 = np.floor(src).astype(np.int64)
  t = src - i0

  def near(d):  # |d| <= 1
    return ((a + 2) * d - (a + 3)) * d * d + 1

  def far(d):  # 1 < |d| < 2
    return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

  taps = np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)
  mat = np.zeros((n_out, n_in), np.float64)
  rows = np.arange(n_out)
  for k in range(4):
    np.add.at(mat, (rows, np.clip(i0 - 1 + k, 0, n_in - 1)), taps[:, k])
  return mat.astype(np.float32)


def identity_grid(image_hw: Sequence[int]) -> Array:
  """`[H,W,2]` grid that samples every pixel at its own centre (x = column, y = row)."""
  h, w = image_hw
  gy, gx = jnp.meshgrid(jnp.linspace(-1.0, 1.0, h), jnp.linspace(-1.0, 1.0, w), indexing='ij')
  return jnp.stack([gx, gy], axis=-1)


def warping_field(key: Array, image_hw: Sequence[int], k: int = 4, s: ArrayLike = 0.5,
                  grid_rescale: ArrayLike = 1.0) -> Array:
  """The fixed WaNet backdoor grid `[H,W,2]`, every value in [-1, 1].

  As in the authors' code: ins ~ U[-1,1) of shape [2,k,k] (torch's [1,2,k,k], channel
  0 = x offset), ins /= mean|ins|, upsampled to H x W with bicubic align_corners=True,
  then

      grid = clip((identity + s * noise / H) * grid_rescale, -1, 1)

  k (static) is the control-grid size, s the warping strength (traced is fine). The
  offset is divided by H for both axes, as the reference does for its square images.
  Only the random draw differs from PyTorch (different generator); given the same
  `ins` the field matches it to float32 rounding.
  """
  h, w = image_hw
  ins = jax.random.uniform(key, (2, k, k), jnp.float32, minval=-1.0, maxval=1.0)
  ins = ins / jnp.mean(jnp.abs(ins))
  wy, wx = jnp.asarray(_bicubic_matrix(k, h)), jnp.asarray(_bicubic_matrix(k, w))
  # HIGHEST: accelerators otherwise run f32 contractions in reduced precision.
  noise = jnp.einsum('hi,cij,wj->hwc', wy, ins, wx, precision=jax.lax.Precision.HIGHEST)
  grid = (identity_grid((h, w)) + jnp.asarray(s, jnp.float32) * noise / h) * jnp.asarray(
      grid_rescale, jnp.float32)
  return jnp.clip(grid, -1.0, 1.0)


def noise_grid(key: Array, base_grid: Array, batch: int) -> Array:
  """WaNet "noise mode" grids `[B,H,W,2]`: the backdoor grid randomly jittered per sample.

      grid_b = clip(base + u_b / H, -1, 1),  u_b ~ U[-1,1)^{H x W x 2}

  exactly as the authors' training code (`ins / input_height`, i.e. at most about half a
  pixel). The warped images keep their true labels, so the model learns the backdoor
  from the exact field only; WaNet uses cross_ratio = 2 such samples per poisoned one.
  """
  h = base_grid.shape[-3]
  u = jax.random.uniform(key, (batch,) + tuple(base_grid.shape[-3:]), jnp.float32,
                         minval=-1.0, maxval=1.0)
  return jnp.clip(base_grid + u / h, -1.0, 1.0)


def _bilinear(img: Array, grid: Array) -> Array:
  """Sample `img` `[H,W,C]` at `grid` `[Ho,Wo,2]` -> `[Ho,Wo,C]` (grid_sample, zeros pad)."""
  h, w, _ = img.shape
  ix = (grid[..., 0] + 1.0) * 0.5 * (w - 1)
  iy = (grid[..., 1] + 1.0) * 0.5 * (h - 1)
  x0, y0 = jnp.floor(ix), jnp.floor(iy)
  x1, y1 = x0 + 1.0, y0 + 1.0

  def tap(yy, xx, weight):
    # Taps outside the image read zero (torch's padding_mode='zeros').
    inside = (xx >= 0) & (xx <= w - 1) & (yy >= 0) & (yy <= h - 1)
    v = img[jnp.clip(yy, 0, h - 1).astype(jnp.int32), jnp.clip(xx, 0, w - 1).astype(jnp.int32)]
    return jnp.where(inside[..., None], v * weight[..., None], 0.0)

  return (tap(y0, x0, (x1 - ix) * (y1 - iy)) + tap(y0, x1, (ix - x0) * (y1 - iy))
          + tap(y1, x0, (x1 - ix) * (iy - y0)) + tap(y1, x1, (ix - x0) * (iy - y0)))


def warp(x: Array, grid: Array) -> Array:
  """Warp images with a sampling grid: `x` `[B,H,W,C]`, grid `[H,W,2]` or `[B,H,W,2]`.

  Bilinear, like `torch.nn.functional.grid_sample(x, grid, align_corners=True)` with its
  default zeros padding. Grids from `warping_field` / `noise_grid` are clamped to
  [-1, 1], so they never sample outside the image and the padding only matters for
  hand-made grids (e.g. a shift). Output `[B,Ho,Wo,C]` in [0, 1] (clipped against
  rounding), float32.
  """
  grid = jnp.asarray(grid, jnp.float32)
  if grid.ndim == 3:
    return _clip01(jax.vmap(_bilinear, in_axes=(0, None))(x, grid))
  return _clip01(jax.vmap(_bilinear)(x, grid))


def _clip01(x: Array) -> Array:
  return jnp.clip(x, 0.0, 1.0)
