"""The in-memory dataset every loader returns, and the one error they raise."""

from __future__ import annotations

import dataclasses

import numpy as np


class DatasetError(ValueError):
  """A dataset cannot be loaded. The message says what is missing and how to fix it."""


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A train/test pair of image arrays, held whole in host memory.

  x_train: uint8 [N,H,W,C] in 0..255, C in {1, 3}; y_train: int32 [N] in [0, num_classes).
  x_test:  uint8 [M,H,W,C], same H, W, C;          y_test:  int32 [M].
  """

  name: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int

  def __post_init__(self):
    # Checked once here so that a loader bug shows up at load time, not as a shape error
    # inside a compiled training step.
    for split, x, y in (('train', self.x_train, self.y_train), ('test', self.x_test, self.y_test)):
      if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DatasetError(f'{self.name}: x_{split} must be uint8 [N,H,W,C] with C in {{1, 3}}, '
                           f'got {x.dtype} {x.shape}')
      if y.dtype != np.int32 or y.shape != x.shape[:1]:
        raise DatasetError(f'{self.name}: y_{split} must be int32 [{x.shape[0]}], '
                           f'got {y.dtype} {y.shape}')
      if y.size and (y.min() < 0 or y.max() >= self.num_classes):
        raise DatasetError(f'{self.name}: y_{split} has labels outside [0, {self.num_classes})')
    if self.x_train.shape[1:] != self.x_test.shape[1:]:
      raise DatasetError(f'{self.name}: train images {self.x_train.shape[1:]} and test images '
                         f'{self.x_test.shape[1:]} differ in shape')

  def train_rows(self, rows: np.ndarray) -> 'Dataset':
    """The same dataset with only the training rows `rows` (bool mask [N] or indices);
    the test split is kept. The defenses train on such subsets."""
    return dataclasses.replace(self, x_train=self.x_train[rows], y_train=self.y_train[rows])

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """(H, W, C) of one image."""
    return tuple(self.x_train.shape[1:])
