"""Whether a model's downsampling fits the dataset's image size.

A model too deep for its images does not fail loudly: VGG-16's five 2x2 max-pools take
an 8x8 digit to a 0x0 map, the global average pool of nothing is NaN, and training stops
only once the loss has become NaN. `check_image_size` finds this before anything is
trained, from the model's own definition: it traces the forward pass on abstract images
(no FLOPs) and looks for an intermediate array with a zero-length axis, i.e. a feature map
that its pooling / strided layers shrank below 1x1.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp

from abd_jax.errors import ConfigError


def _subjaxprs(value):
  """The jaxprs nested in an equation parameter (pjit, custom_jvp, scan, cond, ...)."""
  if hasattr(value, 'eqns'):  # Jaxpr
    yield value
  elif hasattr(value, 'jaxpr') and hasattr(value.jaxpr, 'eqns'):  # ClosedJaxpr
    yield value.jaxpr
  elif isinstance(value, (tuple, list)):
    for v in value:
      yield from _subjaxprs(v)


def _has_empty_array(jaxpr) -> bool:
  for eqn in jaxpr.eqns:
    for var in eqn.outvars:
      shape = getattr(var.aval, 'shape', ())
      if any(d == 0 for d in shape):
        return True
    for param in eqn.params.values():
      if any(_has_empty_array(sub) for sub in _subjaxprs(param)):
        return True
  return False


@functools.lru_cache(maxsize=None)
def fits(model_name: str, height: int, width: int, channels: int = 1) -> bool:
  """True when `model_name`'s forward pass on [1, height, width, channels] images keeps
  every intermediate array non-empty (shapes are the same in training mode)."""
  from abd_jax.models import create_model  # the registry imports this module
  # Width and class count change no spatial size; the smallest trace fastest.
  model = create_model(model_name, 2, width=1 / 64)
  x = jax.ShapeDtypeStruct((1, height, width, channels), jnp.float32)
  try:
    variables = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
    jaxpr = jax.make_jaxpr(functools.partial(model.apply, train=False))(variables, x).jaxpr
  except (TypeError, ValueError):  # e.g. a negative dimension: the map shrank below empty
    return False
  return not _has_empty_array(jaxpr)


@functools.lru_cache(maxsize=None)
def min_image_size(model_name: str, channels: int = 1, limit: int = 4096) -> int:
  """The smallest S such that S x S images fit `model_name` (by bisection between powers
  of two, assuming that larger images fit whenever smaller ones do)."""
  high = 1
  while not fits(model_name, high, high, channels):
    if high >= limit:
      raise ValueError(f'{model_name} fits no image size up to {limit}x{limit}')
    high *= 2
  low = high // 2  # does not fit (or 0)
  while high - low > 1:
    mid = (low + high) // 2
    if fits(model_name, mid, mid, channels):
      high = mid
    else:
      low = mid
  return high


def check_image_size(model_name: str, image_shape: Sequence[int]) -> None:
  """Raises ConfigError('model.name', ...) when the dataset's images ([H, W] or [H, W, C])
  are too small for the model's downsampling (a feature map would shrink below 1x1)."""
  height, width = int(image_shape[0]), int(image_shape[1])
  channels = int(image_shape[2]) if len(image_shape) > 2 else 1
  if fits(model_name, height, width, channels):
    return
  size = min_image_size(model_name, channels)
  raise ConfigError('model.name', model_name,
                    f"{model_name} needs images of at least {size}×{size}; the dataset's "
                    f'images are {height}×{width} (choose a model for smaller images, or '
                    f'resize them with dataset.image_size)')
