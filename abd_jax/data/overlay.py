"""Many poisoned copies of one training set without copying it: the clean images once,
and per run only the rows its attack changed.

A sweep over trigger strengths, poison rates or seeds trains on as many poisoned training
sets as it has points, which differ from the clean set in a few percent of the rows. Each
run keeps those rows and an index map; the training step gathers its batch from the
shared clean images and swaps in the run's rows (`gather`). Under `jax.vmap` the clean
images are broadcast (in_axes None) and the rows and map are per run.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Overlaid(NamedTuple):
  """base: uint8 [N,H,W,C], the clean images (shared by every run).
  rows:  uint8 [P,H,W,C], P >= 1, this run's changed images (padding rows are never used).
  slot:  int32 [N], the row of `rows` that replaces image i, or -1 to keep base[i]."""
  base: jax.Array
  rows: jax.Array
  slot: jax.Array


def overlay_rows(changed: np.ndarray, changed_images: np.ndarray, num_images: int,
                 num_rows: int) -> tuple[np.ndarray, np.ndarray]:
  """(rows uint8 [num_rows,H,W,C], slot int32 [num_images]) of a poisoned copy of the clean
  set whose rows `changed` [M] (distinct indices) hold `changed_images` [M,H,W,C];
  M <= num_rows, the rest of `rows` is padding."""
  if len(changed) > num_rows or num_rows < 1:
    raise ValueError(f'{len(changed)} changed rows do not fit in {num_rows} (>= 1) slots')
  rows = np.zeros((num_rows, *changed_images.shape[1:]), np.uint8)
  rows[:len(changed)] = changed_images
  slot = np.full(num_images, -1, np.int32)
  slot[changed] = np.arange(len(changed), dtype=np.int32)
  return rows, slot


def gather(images: jax.Array | Overlaid, idx: jax.Array) -> jax.Array:
  """images[idx] for a plain uint8 array [N,H,W,C] or an `Overlaid` set; idx int32 [B]."""
  if not isinstance(images, Overlaid):
    return images[idx]
  slot = images.slot[idx]
  own = images.rows[jnp.maximum(slot, 0)]
  return jnp.where((slot >= 0)[:, None, None, None], own, images.base[idx])


def num_images(images: jax.Array | Overlaid) -> int:
  return (images.base if isinstance(images, Overlaid) else images).shape[0]
