"""Random images and labels of any shape: for smoke tests and timing, not for learning."""

from __future__ import annotations

import numpy as np

from abd_jax.data.base import Dataset

DEFAULT_SIZE = 32  # used when the config asks for the native size (image_size = 0)


def load_synthetic(num_train: int, num_test: int, image_size: int, channels: int,
                   num_classes: int, seed: int) -> Dataset:
  """Uniform uint8 images [N,S,S,channels] in 0..255 with S = image_size or 32.

  Labels are each class equally often (up to one) in a random order, so every class is
  present whenever N >= num_classes. The same seed gives the same arrays.
  """
  rng = np.random.default_rng(seed)
  size = image_size or DEFAULT_SIZE

  def split(n):
    images = rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8)
    labels = rng.permutation(np.arange(n) % num_classes).astype(np.int32)
    return images, labels

  x_train, y_train = split(num_train)
  x_test, y_test = split(num_test)
  return Dataset('synthetic', x_train, y_train, x_test, y_test, num_classes)
