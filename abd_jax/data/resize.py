"""Image resizing: whole uint8 batches with `jax.image.resize`, single decoded files with PIL."""

from __future__ import annotations

import jax
import numpy as np
import PIL.Image
import PIL.ImageOps

RESIZE_METHODS = ('nearest', 'bilinear')
_PIL_FILTERS = {'nearest': PIL.Image.Resampling.NEAREST, 'bilinear': PIL.Image.Resampling.BILINEAR}
# Images resized per call: bounds the float32 working copy (e.g. 1024 x 224x224x3 = 600 MiB).
_CHUNK = 1024


def resize_images(images: np.ndarray, size: int, method: str = 'bilinear') -> np.ndarray:
  """uint8 [N,H,W,C] -> uint8 [N,size,size,C] in 0..255.

  `size == 0` or already size x size returns `images` unchanged. 'nearest' on an integer
  upscale factor replicates pixels exactly; 'bilinear' antialiases when downscaling.
  """
  _check_method(method)
  n, h, w, c = images.shape
  if size == 0 or (h, w) == (size, size):
    return images
  out = np.empty((n, size, size, c), np.uint8)
  for start in range(0, n, _CHUNK):
    chunk = images[start:start + _CHUNK].astype(np.float32)
    resized = jax.image.resize(chunk, (len(chunk), size, size, c), method)
    out[start:start + _CHUNK] = np.clip(np.rint(np.asarray(resized)), 0, 255)
  return out


def resize_pil(image: PIL.Image.Image, size: int, method: str, center_crop: bool = False
               ) -> np.ndarray:
  """One decoded image -> uint8 [size,size,C].

  `center_crop` first cuts the largest centered square (keeps the aspect ratio, for
  photos); otherwise the image is stretched to a square (for tightly framed objects).
  """
  _check_method(method)
  if image.size != (size, size):
    if center_crop:
      image = PIL.ImageOps.fit(image, (size, size), _PIL_FILTERS[method])
    else:
      image = image.resize((size, size), _PIL_FILTERS[method])
  array = np.asarray(image, np.uint8)
  return array[..., None] if array.ndim == 2 else array


def _check_method(method: str) -> None:
  if method not in RESIZE_METHODS:
    raise ValueError(f'resize method {method!r} is not one of {RESIZE_METHODS}')
