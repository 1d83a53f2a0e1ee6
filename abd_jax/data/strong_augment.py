"""Strong on-device augmentations: RandAugment, AutoAugment (CIFAR-10 policy), SimCLR views.

All run inside jit-compiled steps with fixed shapes and no host sync: every sample of a
batch gets its own random draws (its row of one [B, n] uniform block, mapped with
`jax.vmap`) and its op is chosen with `lax.switch`. Inputs are float32 [B,H,W,C] in [0, 1]
with C = 1 or 3; outputs have the input's shape and dtype and are clipped to [0, 1].

    x = rand_augment(key, x, num_ops=2, magnitude=9)    # Cubuk et al. 2020, RandAugment
    x = auto_augment(key, x)                            # Cubuk et al. 2019, AutoAugment
    v1, v2 = simclr_view(k1, x), simclr_view(k2, x)     # Chen et al. 2020, SimCLR

`rand_augment` follows torchvision.transforms.RandAugment: `num_ops` times, a uniform op
among Identity, ShearX, ShearY, TranslateX, TranslateY, Rotate, Brightness, Color,
Contrast, Sharpness, Posterize, Solarize, AutoContrast, Equalize, at bin `magnitude` of
torchvision's `_augmentation_space(num_bins, (H, W))`: shear linspace(0, 0.3) (the tangent),
translate linspace(0, 150/331 * W or H) pixels (truncated to an integer), rotate
linspace(0, 30) degrees, Brightness/Color/Contrast/Sharpness factor 1 + linspace(0, 0.9),
Posterize 8 - round(arange(num_bins) / ((num_bins - 1) / 4)) bits, Solarize threshold
linspace(1, 0) (torchvision's 255..0 on the [0, 1] scale). Signed ops get a random sign.
`auto_augment` follows torchvision.transforms.AutoAugment(AutoAugmentPolicy.CIFAR10): one of
its 25 sub-policies, each of two (op, probability, magnitude bin) with bins of
`_augmentation_space(10, (H, W))`, plus Invert; signed ops get a random sign.
`simclr_view` is SimCLR's CIFAR view (no blur): RandomResizedCrop back to H x W (the
crop is only ever enlarged, bilinear, so no antialiasing), horizontal flip with p = 0.5,
ColorJitter(brightness, contrast, saturation, hue) with probability `jitter_p` (the four in
a random order, as torchvision; (0.4, 0.4, 0.4, 0.1) is SimCLR's strength 0.5),
RandomGrayscale. Options other than `key` and `x` are static (Python values).

The per-image ops (one image [H,W,C]) are public for reuse and tests. On uint8 images the
pixel ops match PIL (ImageOps, ImageEnhance: what torchvision uses on PIL images) within one
gray level, and the geometric ops pick the pixels PIL's nearest resampling picks. Where
they differ from torchvision:
  - Floats are not rounded to uint8 between ops. Posterize and Equalize round to the 256
    levels of uint8 first; Posterize with 8 bits returns the input unchanged.
  - Contrast uses the float mean of the grayscale image (PIL rounds it to an integer);
    Sharpness does not round the smoothed image. Both as torchvision's tensor path.
  - Grayscale is rec601 (0.2989, 0.587, 0.114), as torchvision's tensors and dm_pix.
  - Geometric ops sample the nearest pixel (torchvision's default interpolation) with fill
    0, in PIL's pixel geometry: shear about the image's top-left corner, rotation about its
    centre. A source point exactly half-way between pixels may pick the other neighbour.
  - For C = 1, Color, saturation, hue and grayscale are the identity.
  - Under vmap `lax.switch` computes every branch and selects, so a step costs the sum over
    the pixel ops plus one resampling (all geometric ops share it).
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np

Op = Callable[[jax.Array, jax.Array], jax.Array]  # (image [H,W,C], magnitude []) -> image


# ----- Pixel ops on one image [H,W,C] in [0, 1] -----------------------------------------

def invert(img: jax.Array) -> jax.Array:
  return 1.0 - img


def solarize(img: jax.Array, threshold: jax.Array | float) -> jax.Array:
  """Invert pixels >= threshold (PIL / torchvision: threshold 1 still inverts white)."""
  return pix.solarize(img, threshold)


def posterize(img: jax.Array, bits: jax.Array | int) -> jax.Array:
  """Keep the top `bits` bits of each 8-bit level."""
  bits = jnp.asarray(bits, img.dtype)
  step = 2.0 ** (8.0 - bits)
  levels = jnp.round(img * 255.0)
  out = jnp.floor(levels / step) * step / 255.0
  return jnp.where(bits >= 8, img, out)  # 8 bits keeps everything, even off-grid floats


def autocontrast(img: jax.Array) -> jax.Array:
  """Stretch each channel's [min, max] to [0, 1]; a flat channel stays as it is."""
  lo = jnp.min(img, axis=(0, 1), keepdims=True)
  hi = jnp.max(img, axis=(0, 1), keepdims=True)
  span = hi - lo
  stretched = (img - lo) / jnp.where(span > 0, span, 1.0)
  return jnp.clip(jnp.where(span > 0, stretched, img), 0.0, 1.0)


def equalize(img: jax.Array) -> jax.Array:
  """Histogram equalization per channel on 256 levels, PIL's ImageOps.equalize lookup table."""
  levels = jnp.round(img * 255.0).astype(jnp.int32)

  def channel(lv: jax.Array, original: jax.Array) -> jax.Array:
    hist = jnp.zeros(256, jnp.int32).at[lv.reshape(-1)].add(1)
    last = hist[255 - jnp.argmax(hist[::-1] > 0)]  # count of the highest level present
    step = (lv.size - last) // 255
    below = jnp.cumsum(hist) - hist
    lut = jnp.clip((below + step // 2) // jnp.maximum(step, 1), 0, 255)
    # step == 0 (one level, or too few pixels): PIL leaves the channel alone.
    return jnp.where(step > 0, lut[lv].astype(img.dtype) / 255.0, original)

  return jax.vmap(channel, in_axes=2, out_axes=2)(levels, img)


def grayscale(img: jax.Array) -> jax.Array:
  """Luma [H,W,1] of an RGB image; a one-channel image is returned as is."""
  return img if img.shape[-1] == 1 else pix.rgb_to_grayscale(img)


def _blend(img: jax.Array, degenerate: jax.Array, factor: jax.Array | float) -> jax.Array:
  # factor * img + (1 - factor) * degenerate, written so that factor 1 returns img exactly.
  return jnp.clip(factor * img + (1.0 - factor) * degenerate, 0.0, 1.0)


def brightness(img: jax.Array, factor: jax.Array | float) -> jax.Array:
  """Blend with black: ImageEnhance.Brightness."""
  return _blend(img, jnp.zeros_like(img), factor)


def color(img: jax.Array, factor: jax.Array | float) -> jax.Array:
  """Blend with the grayscale image (saturation): ImageEnhance.Color; identity for C = 1."""
  if img.shape[-1] == 1:
    return img
  return _blend(img, grayscale(img), factor)


def contrast(img: jax.Array, factor: jax.Array | float) -> jax.Array:
  """Blend with the mean gray level: ImageEnhance.Contrast."""
  return _blend(img, jnp.mean(grayscale(img)), factor)


_SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13.0  # PIL's SMOOTH


def sharpness(img: jax.Array, factor: jax.Array | float) -> jax.Array:
  """Blend with PIL's SMOOTH filter, border pixels unfiltered: ImageEnhance.Sharpness."""
  h, w, _ = img.shape
  padded = jnp.pad(img, ((1, 1), (1, 1), (0, 0)))
  smooth = sum(float(_SMOOTH[i, j]) * padded[i:i + h, j:j + w]
               for i in range(3) for j in range(3))
  rows = jnp.arange(h)[:, None, None]
  cols = jnp.arange(w)[None, :, None]
  inner = (rows > 0) & (rows < h - 1) & (cols > 0) & (cols < w - 1)
  return _blend(img, jnp.where(inner, smooth, img), factor)


def hue(img: jax.Array, delta: jax.Array | float) -> jax.Array:
  """Rotate the hue by `delta` turns (torchvision's hue_factor); identity for C = 1."""
  if img.shape[-1] == 1:
    return img
  return jnp.clip(pix.adjust_hue(img, delta), 0.0, 1.0)


# ----- Geometric ops on one image: nearest pixel, fill 0 ---------------------------------
# Each is an affine map: output pixel (r, c) reads input (r, c) @ matrix.T + offset, in pixel
# indices. A policy step resamples once with the chosen op's map (the identity for pixel ops)
# instead of once per geometric op.

Affine = tuple[jax.Array, jax.Array]  # (matrix [2,2], offset [2]) on (row, column)


def _affine(img: jax.Array, matrix: jax.Array, offset: jax.Array) -> jax.Array:
  full = jnp.zeros((3, 4), img.dtype)  # homogeneous map on (row, column, channel)
  full = full.at[:2, :2].set(matrix).at[:2, 3].set(offset).at[2, 2].set(1.0)
  return pix.affine_transform(img, full, order=0, mode='constant', cval=0.0)


def _matrix(a: jax.Array | float, b: jax.Array | float, c: jax.Array | float,
            d: jax.Array | float) -> jax.Array:
  return jnp.stack([jnp.stack([a, b]), jnp.stack([c, d])]).astype(jnp.float32)


def _identity_map(m: jax.Array, h: int, w: int) -> Affine:
  return jnp.eye(2), jnp.zeros(2)


def _shear_x_map(amount: jax.Array, h: int, w: int) -> Affine:
  # PIL's affine (1, amount, 0, 0, 1, 0) samples at pixel centres measured from the image
  # corner: column c reads c + amount * (r + 1/2).
  return _matrix(1.0, 0.0, amount, 1.0), jnp.stack([0.0, amount / 2])


def _shear_y_map(amount: jax.Array, h: int, w: int) -> Affine:
  return _matrix(1.0, amount, 0.0, 1.0), jnp.stack([amount / 2, 0.0])


def _translate_x_map(pixels: jax.Array, h: int, w: int) -> Affine:
  return jnp.eye(2), jnp.stack([0.0, -jnp.trunc(pixels)])  # torchvision: int(magnitude)


def _translate_y_map(pixels: jax.Array, h: int, w: int) -> Affine:
  return jnp.eye(2), jnp.stack([-jnp.trunc(pixels), 0.0])


def _rotate_map(degrees: jax.Array, h: int, w: int) -> Affine:
  # dm_pix.rotate's map: counter-clockwise about the centre, as PIL's Image.rotate.
  cos, sin = jnp.cos(jnp.deg2rad(degrees)), jnp.sin(jnp.deg2rad(degrees))
  matrix = _matrix(cos, sin, -sin, cos)
  centre = jnp.array([(h - 1) / 2, (w - 1) / 2])
  return matrix, centre - matrix @ centre


def _warp(img: jax.Array, make_map: Callable[..., Affine], magnitude: jax.Array | float
          ) -> jax.Array:
  h, w, _ = img.shape
  return _affine(img, *make_map(jnp.asarray(magnitude, jnp.float32), h, w))


def shear_x(img: jax.Array, amount: jax.Array | float) -> jax.Array:
  """PIL's affine (1, amount, 0, 0, 1, 0): row r slides left by amount * (r + 1/2)."""
  return _warp(img, _shear_x_map, amount)


def shear_y(img: jax.Array, amount: jax.Array | float) -> jax.Array:
  """PIL's affine (1, 0, 0, amount, 1, 0): column c slides up by amount * (c + 1/2)."""
  return _warp(img, _shear_y_map, amount)


def translate_x(img: jax.Array, pixels: jax.Array | float) -> jax.Array:
  """Move the content int(pixels) to the right; zeros enter."""
  return _warp(img, _translate_x_map, pixels)


def translate_y(img: jax.Array, pixels: jax.Array | float) -> jax.Array:
  """Move the content int(pixels) down; zeros enter."""
  return _warp(img, _translate_y_map, pixels)


def rotate(img: jax.Array, degrees: jax.Array | float) -> jax.Array:
  """Rotate counter-clockwise by `degrees` about the centre, as PIL's Image.rotate."""
  return _warp(img, _rotate_map, degrees)


# ----- Op tables ------------------------------------------------------------------------

_GEOMETRY: dict[str, Callable[..., Affine]] = {
    'ShearX': _shear_x_map,
    'ShearY': _shear_y_map,
    'TranslateX': _translate_x_map,
    'TranslateY': _translate_y_map,
    'Rotate': _rotate_map,
}

_PIXEL_OPS: dict[str, Op] = {
    'Brightness': lambda img, m: brightness(img, 1.0 + m),
    'Color': lambda img, m: color(img, 1.0 + m),
    'Contrast': lambda img, m: contrast(img, 1.0 + m),
    'Sharpness': lambda img, m: sharpness(img, 1.0 + m),
    'Posterize': posterize,
    'Solarize': solarize,
    'AutoContrast': lambda img, m: autocontrast(img),
    'Equalize': lambda img, m: equalize(img),
    'Invert': lambda img, m: invert(img),
}

RAND_AUGMENT_OPS = ('Identity', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY', 'Rotate',
                    'Brightness', 'Color', 'Contrast', 'Sharpness', 'Posterize', 'Solarize',
                    'AutoContrast', 'Equalize')

# torchvision's AutoAugmentPolicy.CIFAR10: (op, probability, magnitude bin or None).
CIFAR10_POLICY = (
    (('Invert', 0.1, None), ('Contrast', 0.2, 6)),
    (('Rotate', 0.7, 2), ('TranslateX', 0.3, 9)),
    (('Sharpness', 0.8, 1), ('Sharpness', 0.9, 3)),
    (('ShearY', 0.5, 8), ('TranslateY', 0.7, 9)),
    (('AutoContrast', 0.5, None), ('Equalize', 0.9, None)),
    (('ShearY', 0.2, 7), ('Posterize', 0.3, 7)),
    (('Color', 0.4, 3), ('Brightness', 0.6, 7)),
    (('Sharpness', 0.3, 9), ('Brightness', 0.7, 9)),
    (('Equalize', 0.6, None), ('Equalize', 0.5, None)),
    (('Contrast', 0.6, 7), ('Sharpness', 0.6, 5)),
    (('Color', 0.7, 7), ('TranslateX', 0.5, 8)),
    (('Equalize', 0.3, None), ('AutoContrast', 0.4, None)),
    (('TranslateY', 0.4, 3), ('Sharpness', 0.2, 6)),
    (('Brightness', 0.9, 6), ('Color', 0.2, 8)),
    (('Solarize', 0.5, 2), ('Invert', 0.0, None)),
    (('Equalize', 0.2, None), ('AutoContrast', 0.6, None)),
    (('Equalize', 0.2, None), ('Equalize', 0.6, None)),
    (('Color', 0.9, 9), ('Equalize', 0.6, None)),
    (('AutoContrast', 0.8, None), ('Solarize', 0.2, 8)),
    (('Brightness', 0.1, 3), ('Color', 0.7, 0)),
    (('Solarize', 0.4, 5), ('AutoContrast', 0.9, None)),
    (('TranslateY', 0.9, 9), ('TranslateY', 0.7, 9)),
    (('AutoContrast', 0.9, None), ('Solarize', 0.8, 3)),
    (('Equalize', 0.8, None), ('Invert', 0.1, None)),
    (('TranslateY', 0.7, 9), ('AutoContrast', 0.9, None)),
)
_AUTO_AUGMENT_OPS = ('Identity',) + tuple(
    sorted({op for sub in CIFAR10_POLICY for op, _, _ in sub}))


def augmentation_space(num_bins: int, height: int, width: int
                       ) -> dict[str, tuple[np.ndarray, bool]]:
  """torchvision's `_augmentation_space`: op -> (magnitude per bin [num_bins], signed).

  Magnitude-free ops get zeros. Solarize is on the [0, 1] scale.
  """
  if num_bins < 2:
    raise ValueError(f'num_bins must be at least 2, got {num_bins}')
  lin = lambda hi: np.linspace(0.0, hi, num_bins, dtype=np.float32)
  zero = np.zeros(num_bins, np.float32)
  bits = 8 - np.round(np.arange(num_bins) / ((num_bins - 1) / 4))  # half to even, as torch
  return {
      'Identity': (zero, False),
      'ShearX': (lin(0.3), True),
      'ShearY': (lin(0.3), True),
      'TranslateX': (lin(150.0 / 331.0 * width), True),
      'TranslateY': (lin(150.0 / 331.0 * height), True),
      'Rotate': (lin(30.0), True),
      'Brightness': (lin(0.9), True),
      'Color': (lin(0.9), True),
      'Contrast': (lin(0.9), True),
      'Sharpness': (lin(0.9), True),
      'Posterize': (bits.astype(np.float32), False),
      'Solarize': (np.linspace(1.0, 0.0, num_bins, dtype=np.float32), False),
      'AutoContrast': (zero, False),
      'Equalize': (zero, False),
      'Invert': (zero, False),
  }


def _check_images(x: jax.Array) -> None:
  if x.ndim != 4 or x.shape[-1] not in (1, 3):
    raise ValueError(f'expected images [B,H,W,C] with C = 1 or 3, got shape {x.shape}')


def _apply(op: jax.Array, magnitude: jax.Array, negate: jax.Array, img: jax.Array,
           names: tuple[str, ...]) -> jax.Array:
  """Op `names[op]` at +-magnitude: one resampling (the identity unless geometric), then one
  pixel op (the identity for geometric ops)."""
  h, w, _ = img.shape
  magnitude = jnp.where(negate, -magnitude, magnitude)
  maps = [functools.partial(_GEOMETRY.get(name, _identity_map), h=h, w=w) for name in names]
  img = _affine(img, *jax.lax.switch(op, maps, magnitude))
  pixel_ops = [_PIXEL_OPS.get(name, lambda img, m: img) for name in names]
  return jax.lax.switch(op, pixel_ops, img, magnitude)


def _uniforms(key: jax.Array, batch: int, n: int) -> jax.Array:
  """[batch, n] independent U[0, 1): row i holds every random draw of sample i."""
  # One flat draw instead of jax.random.split + a draw per decision: every threefry call
  # site adds XLA compile time (~0.3 s each on a CPU, ~1 s for a 2-D shape).
  return jax.random.uniform(key, (batch * n,)).reshape(batch, n)


def _randint(u: jax.Array, n: int | jax.Array) -> jax.Array:
  """U[0, 1) -> uniform integer in [0, n)."""
  return jnp.minimum(jnp.floor(u * n), n - 1).astype(jnp.int32)  # u * n may round up to n


# ----- Policies -------------------------------------------------------------------------

@functools.partial(jax.jit, static_argnames=('num_ops', 'magnitude', 'num_bins'))
def rand_augment(key: jax.Array, x: jax.Array, num_ops: int = 2, magnitude: int = 9,
                 num_bins: int = 31) -> jax.Array:
  """RandAugment (torchvision semantics): float32 [B,H,W,C] in [0, 1] -> same, per sample."""
  _check_images(x)
  if not 0 <= magnitude < num_bins:
    raise ValueError(f'magnitude must be in [0, {num_bins}), got {magnitude}')
  b, h, w, _ = x.shape
  space = augmentation_space(num_bins, h, w)
  names = RAND_AUGMENT_OPS
  magnitudes = jnp.asarray([space[name][0][magnitude] for name in names])
  signed = jnp.asarray([space[name][1] for name in names])

  def step(img: jax.Array, u: jax.Array) -> tuple[jax.Array, None]:
    op = _randint(u[0], len(names))
    return _apply(op, magnitudes[op], signed[op] & (u[1] < 0.5), img, names), None

  def one(u: jax.Array, img: jax.Array) -> jax.Array:
    # scan, not a Python loop: the 14 branches are compiled once, not num_ops times.
    return jax.lax.scan(step, img, u.reshape(num_ops, 2))[0]

  out = jax.vmap(one)(_uniforms(key, b, 2 * num_ops), x)
  return jnp.clip(out, 0.0, 1.0).astype(x.dtype)


@jax.jit
def auto_augment(key: jax.Array, x: jax.Array) -> jax.Array:
  """AutoAugment, torchvision's CIFAR-10 policy: float32 [B,H,W,C] in [0, 1] -> same."""
  _check_images(x)
  b, h, w, _ = x.shape
  space = augmentation_space(10, h, w)
  names = _AUTO_AUGMENT_OPS
  # [25, 2] tables: op index, probability, magnitude, signed.
  ops = jnp.asarray([[names.index(op) for op, _, _ in sub] for sub in CIFAR10_POLICY])
  probs = jnp.asarray([[p for _, p, _ in sub] for sub in CIFAR10_POLICY], jnp.float32)
  mags = jnp.asarray([[0.0 if bin_ is None else space[op][0][bin_] for op, _, bin_ in sub]
                      for sub in CIFAR10_POLICY], jnp.float32)
  signed = jnp.asarray([[space[op][1] for op, _, _ in sub] for sub in CIFAR10_POLICY])

  def step(img: jax.Array, args: tuple[jax.Array, ...]) -> tuple[jax.Array, None]:
    return _apply(*args, img, names), None

  def one(u: jax.Array, img: jax.Array) -> jax.Array:
    policy = _randint(u[0], len(CIFAR10_POLICY))
    op = jnp.where(u[1:3] < probs[policy], ops[policy], 0)  # 0: Identity
    negate = signed[policy] & (u[3:5] < 0.5)
    return jax.lax.scan(step, img, (op, mags[policy], negate))[0]

  out = jax.vmap(one)(_uniforms(key, b, 5), x)
  return jnp.clip(out, 0.0, 1.0).astype(x.dtype)


POLICIES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    'randaugment': rand_augment,
    'autoaugment': auto_augment,
}


# ----- SimCLR ---------------------------------------------------------------------------

def _interpolation_matrix(start: jax.Array, size: jax.Array, n: int) -> jax.Array:
  """[n, n]: row o holds the bilinear weights that resize input[start:start+size] to n."""
  # Half-pixel centres, edge pixels repeated: what cropping first and then resizing gives.
  pos = start + (jnp.arange(n) + 0.5) * size / n - 0.5
  pos = jnp.clip(pos, start, start + size - 1)
  lo = jnp.floor(pos)
  frac = (pos - lo)[:, None]
  lo = lo.astype(jnp.int32)
  hi = jnp.minimum(lo + 1, start + size - 1)
  return (1.0 - frac) * jax.nn.one_hot(lo, n) + frac * jax.nn.one_hot(hi, n)


def resized_crop(img: jax.Array, top: jax.Array, left: jax.Array, height: jax.Array,
                 width: jax.Array) -> jax.Array:
  """Crop [top:top+height, left:left+width] of [H,W,C] and resize it to H x W, bilinear.

  The box may be traced (fixed output shape); it must lie inside the image. Only upscaling
  happens here, so no antialiasing is needed.
  """
  h, w, _ = img.shape
  rows = _interpolation_matrix(top, height, h)
  cols = _interpolation_matrix(left, width, w)
  return jnp.einsum('yh,hwc,xw->yxc', rows, img, cols, precision=jax.lax.Precision.HIGHEST)


_CROP_ATTEMPTS = 10  # torchvision's RandomResizedCrop tries 10 boxes
# Uniforms per sample: crop box, flip, jitter (4 factors + 4 for the order), apply, gray.
_CROP_DRAWS = 2 * _CROP_ATTEMPTS + 2
_SIMCLR_DRAWS = _CROP_DRAWS + 1 + 8 + 1 + 1


def _crop_box(u: jax.Array, h: int, w: int, scale: tuple[float, float],
              ratio: tuple[float, float]) -> tuple[jax.Array, ...]:
  """torchvision's RandomResizedCrop.get_params from 22 uniforms: (top, left, height, width).

  The first of 10 drawn boxes that fits, else the largest centred box within `ratio`.
  """
  n = _CROP_ATTEMPTS
  area = h * w * (scale[0] + (scale[1] - scale[0]) * u[:n])
  log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
  aspect = jnp.exp(log_lo + (log_hi - log_lo) * u[n:2 * n])
  cw = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
  ch = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
  fits = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
  first = jnp.argmax(fits)
  if w / h < min(ratio):
    fw, fh = w, int(round(w / min(ratio)))
  elif w / h > max(ratio):
    fw, fh = int(round(h * max(ratio))), h
  else:
    fw, fh = w, h
  found = fits.any()
  ch = jnp.where(found, ch[first], fh)
  cw = jnp.where(found, cw[first], fw)
  top = jnp.where(found, _randint(u[2 * n], h - ch + 1), (h - ch) // 2)
  left = jnp.where(found, _randint(u[2 * n + 1], w - cw + 1), (w - cw) // 2)
  return top, left, ch, cw


def _color_jitter(u: jax.Array, img: jax.Array, strengths: tuple[float, float, float, float]
                  ) -> jax.Array:
  """torchvision ColorJitter from 8 uniforms: factors uniform in [max(0, 1 - s), 1 + s]
  (hue shift in [-s, s] turns), the four ops in a random order."""
  b, c, s, hu = strengths
  draw = lambda v, lo, hi: lo + (hi - lo) * v
  fb = draw(u[0], max(0.0, 1 - b), 1 + b)
  fc = draw(u[1], max(0.0, 1 - c), 1 + c)
  fs = draw(u[2], max(0.0, 1 - s), 1 + s)
  fh = draw(u[3], -hu, hu)
  fns = [lambda im: brightness(im, fb), lambda im: contrast(im, fc),
         lambda im: color(im, fs), lambda im: hue(im, fh)]
  order = jnp.argsort(u[4:8])  # a uniform random permutation
  step = lambda img, fn_id: (jax.lax.switch(fn_id, fns, img), None)
  return jax.lax.scan(step, img, order)[0]


@functools.partial(jax.jit, static_argnames=('crop_scale', 'crop_ratio', 'flip', 'jitter',
                                             'jitter_p', 'gray_p'))
def simclr_view(key: jax.Array, x: jax.Array, *, crop_scale: tuple[float, float] = (0.08, 1.0),
                crop_ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True,
                jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
                jitter_p: float = 0.8, gray_p: float = 0.2) -> jax.Array:
  """One SimCLR view of float32 [B,H,W,C] in [0, 1] -> same shape, per sample.

  RandomResizedCrop(scale=crop_scale, ratio=crop_ratio) to H x W, horizontal flip (p 0.5 if
  `flip`), ColorJitter(*jitter) with probability `jitter_p`, RandomGrayscale(gray_p) (kept
  at C channels). The keyword arguments are static (Python values, tuples).
  """
  _check_images(x)
  b, h, w, _ = x.shape
  if not 0.0 <= jitter[3] <= 0.5:
    raise ValueError(f'hue jitter must be in [0, 0.5], got {jitter[3]}')

  def one(u: jax.Array, img: jax.Array) -> jax.Array:
    n = _CROP_DRAWS
    img = resized_crop(img, *_crop_box(u[:n], h, w, crop_scale, crop_ratio))
    if flip:
      img = jnp.where(u[n] < 0.5, pix.flip_left_right(img), img)
    jittered = _color_jitter(u[n + 1:n + 9], img, jitter)
    img = jnp.where(u[n + 9] < jitter_p, jittered, img)
    gray = jnp.broadcast_to(grayscale(img), img.shape)
    return jnp.where(u[n + 10] < gray_p, gray, img)

  out = jax.vmap(one)(_uniforms(key, b, _SIMCLR_DRAWS), x)
  return jnp.clip(out, 0.0, 1.0).astype(x.dtype)
