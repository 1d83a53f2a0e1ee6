"""Backdoor triggers: small pure functions that stamp a trigger onto a batch of images.

Conventions shared by every function here:

* images `x` are float32 `[B,H,W,C]` in [0, 1]; outputs have the same shape and dtype
  and are clipped to [0, 1] wherever the formula could leave the range;
* continuous strengths (`alpha`, `delta`, `freq`, `amplitude`) may be Python floats,
  traced scalars or per-sample `[B]` arrays. Nothing branches on their value, so a
  jitted trigger is compiled once and re-run for a whole grid of strengths;
* shapes, sizes and positions are plain Python ints/strings (static under `jit`);
* pattern builders return one image-sized array (`[H,W,C]` or `[k,k,C]`) that the
  caller computes once and closes over.

The mask convention throughout is m = 1 on the pixels the trigger touches.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

Array = jax.Array

POSITIONS = ('bottom_right', 'top_left', 'top_right', 'bottom_left', 'center')

# Turner et al. (2019) corner block, as in their released code ("all-corners"): +1 is a
# white pixel, -1 a black one. The left corners carry this block, the right corners
# its left-right mirror, so the whole trigger is symmetric about the vertical axis.
_LC_CORNER = np.array([[1, -1, -1],
                       [-1, 1, -1],
                       [1, -1, 1]], np.float32)


def _per_sample(v: ArrayLike, x: Array) -> Array:
  """A scalar or `[B]` strength as float32, broadcastable against `x` `[B,...]`."""
  v = jnp.asarray(v, jnp.float32)
  return v.reshape(v.shape + (1,) * (x.ndim - v.ndim)) if v.ndim else v


def _clip01(x: Array) -> Array:
  return jnp.clip(x, 0.0, 1.0)


# ------------------------------------------------------------------------------ patterns


def checkerboard(size: int, channels: int) -> Array:
  """k x k checkerboard `[size,size,C]` with values {0,1} and a white (1) top-left pixel.

  The 3x3 board is the ICLR'22 basic-setting trigger (their Figure 9); 2x2..5x5 are used
  by Gao et al. (2023).
  """
  if size < 1 or channels < 1:
    raise ValueError(f'checkerboard needs size >= 1 and channels >= 1, got {size}, {channels}')
  i = np.arange(size)
  board = ((i[:, None] + i[None, :]) % 2 == 0).astype(np.float32)
  return jnp.asarray(np.repeat(board[..., None], channels, axis=-1))


def random_pattern(key: Array, size: int, channels: int) -> Array:
  """BadNets' random patch (Gu et al. 2017): `[size,size,C]`, each value 0 or 1 w.p. 1/2."""
  return jax.random.bernoulli(key, 0.5, (size, size, channels)).astype(jnp.float32)


def noise_pattern(key: Array, hw: Sequence[int], channels: int) -> Array:
  """Full-image blend trigger `[H,W,C]` ~ U[0,1) (ICLR'22 seed App. A: r in [0,1]^d).

  The default whenever no image file is configured.
  """
  h, w = hw
  return jax.random.uniform(key, (h, w, channels), jnp.float32)


def load_pattern_image(path: str, hw: Sequence[int], channels: int) -> Array:
  """A trigger image from disk (e.g. Hello Kitty), `[H,W,C]` float32 in [0, 1].

  The file is converted to RGB (C = 3) or grey (C = 1), dropping any alpha channel, and
  resized to H x W with Pillow's bicubic filter (Pillow's default for `resize`). Runs
  eagerly (file I/O): call it once, outside `jit`.
  """
  h, w = hw
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f'config field `attack.pattern_file` = {path!r}: no such file')
  mode = {1: 'L', 3: 'RGB'}.get(channels)
  if mode is None:
    raise ValueError(f'load_pattern_image supports 1 or 3 channels, got {channels}')
  from PIL import Image, UnidentifiedImageError  # only needed when a file is configured

  try:
    with Image.open(path) as im:
      im = im.convert(mode)
      if im.size != (w, h):
        im = im.resize((w, h), Image.Resampling.BICUBIC)
      arr = np.asarray(im, np.float32) / 255.0
  except UnidentifiedImageError as e:
    raise ValueError(
        f'config field `attack.pattern_file` = {path!r}: not an image Pillow can read') from e
  if arr.ndim == 2:
    arr = arr[..., None]
  return jnp.asarray(arr)


def four_corner_pattern(hw: Sequence[int], channels: int, size: int = 3) -> Array:
  """Signed label-consistent trigger (Turner et al. 2019): `[H,W,C]` in {-1, 0, +1}.

  t = (2p - 1) * m: a `size` x `size` black/white block in each of the four corners
  (m = 1 there, 0 elsewhere), +1 for white and -1 for black. `size=3` is exactly the
  block of Turner et al.'s released code; other sizes nearest-resize it (how
  BackdoorBench adapts the 32x32 trigger to larger images). The left corners hold the
  block, the right corners its mirror image.
  """
  h, w = hw
  if size < 1 or 2 * size > min(h, w):
    raise ValueError(
        f'four-corner trigger size {size} must be >= 1 and fit twice into the image {h}x{w}')
  idx = (np.arange(size) * 3) // size
  block = _LC_CORNER[idx][:, idx]
  t = np.zeros((h, w), np.float32)
  t[:size, :size] = block
  t[h - size:, :size] = block
  t[:size, w - size:] = block[:, ::-1]
  t[h - size:, w - size:] = block[:, ::-1]
  return jnp.asarray(np.repeat(t[..., None], channels, axis=-1))


# ---------------------------------------------------------------------------- placement


def patch_mask(image_hw: Sequence[int], size: int, position: str = 'bottom_right',
               margin: int = 0) -> tuple[Array, tuple[int, int]]:
  """Square trigger region: (`[H,W,1]` mask in {0,1}, (y0, x0) of its top-left pixel).

  `margin` is the gap in pixels to the nearest image edges (ignored for 'center', which
  rounds the offset down).
  """
  h, w = image_hw
  if position not in POSITIONS:
    raise ValueError(f'trigger position {position!r} is not one of {POSITIONS}')
  if size < 1 or margin < 0 or size + margin > min(h, w):
    raise ValueError(
        f'trigger of size {size} with margin {margin} does not fit the image {h}x{w}')
  y0 = margin if position.startswith('top') else h - size - margin
  x0 = margin if position.endswith('left') else w - size - margin
  if position == 'center':
    y0, x0 = (h - size) // 2, (w - size) // 2
  mask = np.zeros((h, w, 1), np.float32)
  mask[y0:y0 + size, x0:x0 + size] = 1.0
  return jnp.asarray(mask), (y0, x0)


def place_pattern(pattern: ArrayLike, image_hw: Sequence[int], y0: int, x0: int) -> Array:
  """Image-sized trigger `[H,W,C]`: `pattern` `[k,k,C]` at (y0, x0), zeros elsewhere."""
  h, w = image_hw
  pattern = jnp.asarray(pattern, jnp.float32)
  kh, kw, c = pattern.shape
  if y0 < 0 or x0 < 0 or y0 + kh > h or x0 + kw > w:
    raise ValueError(f'a {kh}x{kw} pattern at ({y0}, {x0}) does not fit the image {h}x{w}')
  return jnp.zeros((h, w, c), jnp.float32).at[y0:y0 + kh, x0:x0 + kw].set(pattern)


def trojan_mask(hw: Sequence[int], size: int, position: str = 'bottom_right') -> Array:
  """Square Trojan trigger region (Liu et al. 2018, square mask), `[H,W,1]` in {0,1}.

  Only the region: the pattern inside it is optimized elsewhere, then stamped with
  `apply_patch(x, pattern, trojan_mask(...), 1.0)`.
  """
  return patch_mask(hw, size, position)[0]


# ------------------------------------------------------------------------------ triggers


def apply_patch(x: Array, pattern_full: ArrayLike, mask: ArrayLike, alpha: ArrayLike) -> Array:
  """Patch trigger with transparency (ICLR'22 seed, Eq. 3).

      x~ = (1 - m) * x + m * [(1 - alpha) * x + alpha * p]

  x `[B,H,W,C]` in [0,1]; `pattern_full` p `[H,W,C]` in [0,1] (see `place_pattern`);
  `mask` m `[H,W,1]` with 1 on the trigger; alpha in (0,1], scalar or `[B]`. alpha = 1
  is the opaque BadNets patch. (The seed's extracted Eq. 3 puts m on the other term; we
  follow its text, "m decides the trigger injecting region", and Gao et al.'s BadNets
  formula.) Pixels with m = 0 are returned bit-exactly.
  """
  a = _per_sample(alpha, x)
  m = jnp.asarray(mask, jnp.float32)
  p = jnp.asarray(pattern_full, jnp.float32)
  return _clip01((1.0 - m) * x + m * ((1.0 - a) * x + a * p))


def blend(x: Array, pattern: ArrayLike, alpha: ArrayLike) -> Array:
  """Blended trigger (Chen et al. 2017): x~ = (1 - alpha) * x + alpha * t.

  x `[B,H,W,C]`, t `[H,W,C]`, both in [0,1]; alpha scalar or `[B]` (0.1-0.2 in the
  seeds, BackdoorBench default 0.2).
  """
  a = _per_sample(alpha, x)
  return _clip01((1.0 - a) * x + a * jnp.asarray(pattern, jnp.float32))


def sinusoid(x: Array, delta: ArrayLike = 40 / 255, freq: ArrayLike = 6.0) -> Array:
  """SIG trigger (Barni et al. 2019): a horizontal sinusoid added to every row.

      x~_ij = clip(x_ij + delta * sin(2 pi j f / m), 0, 1)

  with j = 0..m-1 the column index and m = W the image width, identical for every row
  and channel. This is Barni et al.'s additive definition (x + v), as in the NAD /
  Gao et al. code, not BackdoorBench's alpha-blended variant; the clip keeps pixels
  valid. delta is on the [0,1] scale (40/255 is the field's default), delta and freq
  scalars or `[B]`.
  """
  width = x.shape[-2]
  d, f = _per_sample(delta, x), _per_sample(freq, x)
  col = jnp.arange(width, dtype=jnp.float32)[:, None]  # [W,1]: varies along W, not C
  return _clip01(x + d * jnp.sin(2.0 * math.pi * col * f / width))


def apply_four_corner(x: Array, amplitude: ArrayLike, size: int = 3) -> Array:
  """Label-consistent four-corner trigger with reduced amplitude (Turner et al. 2019).

      x~ = clip(x + amplitude * (2p - 1) * m, 0, 1)

  x `[B,H,W,C]`; amplitude in (0,1], scalar or `[B]`. amplitude = 1 reproduces the fully
  visible trigger (white/black pixels replace the corners); Turner et al.'s reduced-
  visibility version, used with amplitude 16/255 in the ICLR'22 seed (App. A), adds
  +-amplitude instead. Pixels outside the corners are returned bit-exactly.
  """
  h, w, c = x.shape[-3:]
  t = four_corner_pattern((h, w), c, size)
  return _clip01(x + _per_sample(amplitude, x) * t)
