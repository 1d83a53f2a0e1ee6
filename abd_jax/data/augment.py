"""On-device augmentation inside the jitted training step: random crop and horizontal flip."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def to_float(images: jax.Array) -> jax.Array:
  """uint8 [...] in 0..255 -> float32 [...] in [0, 1]."""
  return images.astype(jnp.float32) / 255.0


def augment(key: jax.Array, images: jax.Array, crop_padding: int, flip: bool) -> jax.Array:
  """float32 [B,H,W,C] in [0, 1] -> float32 [B,H,W,C], independently per sample.

  Crop: zero-pad `crop_padding` pixels on each side and cut an H x W window at a uniform
  offset, i.e. shift the image by (dy, dx) in [-p, p]^2 with zeros entering.
  Flip: mirror left-right with probability 0.5.
  `crop_padding` and `flip` fix the program's shape: pass them as static (Python) values.
  With crop_padding = 0 and flip = False the input is returned as is.
  """
  crop_key, flip_key = jax.random.split(key)
  if crop_padding > 0:
    images = _random_crop(crop_key, images, crop_padding)
  if flip:
    images = _random_flip(flip_key, images)
  return images


def _random_crop(key: jax.Array, images: jax.Array, padding: int) -> jax.Array:
  _, h, w, c = images.shape
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  offsets = jax.random.randint(key, (images.shape[0], 2), 0, 2 * padding + 1)

  def crop(image, offset):
    return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

  return jax.vmap(crop)(padded, offsets)


def _random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
  mirror = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
  return jnp.where(mirror, images[:, :, ::-1, :], images)
