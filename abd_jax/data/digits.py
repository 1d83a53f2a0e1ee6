"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes, no download)."""

from __future__ import annotations

import numpy as np
import sklearn.datasets
import sklearn.model_selection

from abd_jax.data.base import Dataset

# Fixed, and deliberately not the run seed: every run, whatever its seed, is scored on the
# same test images.
SPLIT_SEED = 0
NUM_CLASSES = 10
_MAX_VALUE = 16  # the bundled pixels are counts 0..16


def load_digits(test_fraction: float) -> Dataset:
  """Stratified split with `test_fraction` of the images in the test set.

  Returns images uint8 [N,8,8,1], the 0..16 pixel counts scaled (rounded) to 0..255.
  """
  bunch = sklearn.datasets.load_digits()
  images = np.rint(bunch.images * (255 / _MAX_VALUE)).astype(np.uint8)[..., None]
  labels = bunch.target.astype(np.int32)
  x_train, x_test, y_train, y_test = sklearn.model_selection.train_test_split(
      images, labels, test_size=test_fraction, stratify=labels, random_state=SPLIT_SEED)
  return Dataset('digits', x_train, y_train, x_test, y_test, NUM_CLASSES)
