"""CIFAR-10/100, MNIST and Imagenette from TFDS, read through its random-access
ArrayRecord data source: TensorFlow is needed once to prepare the files, never to read them.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Sequence

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

from abd_jax.data.base import Dataset, DatasetError
from abd_jax.data.resize import resize_pil


@dataclasses.dataclass(frozen=True)
class _Source:
  tfds_name: str  # TFDS name, with a builder config where the dataset has several
  test_split: str
  # > 0 for datasets whose images differ in size: each is center-cropped to a square and
  # resized to image_size, or to this when the config asks for the native size.
  default_size: int = 0


_SOURCES = {
    'cifar10': _Source('cifar10', 'test'),
    'cifar100': _Source('cifar100', 'test'),
    'mnist': _Source('mnist', 'test'),
    # The 160px copy (shorter side 160) is the smallest: ample for the 64 px default and
    # a fraction of the full-size download.
    'imagenette': _Source('imagenette/160px', 'validation', default_size=64),
}
TFDS_NAMES = tuple(_SOURCES)


def load_tfds(name: str, data_dir: str, image_size: int, method: str) -> Dataset:
  """Reads both splits whole. data_dir '' = the TFDS default (TFDS_DATA_DIR or
  ~/tensorflow_datasets).

  Returns uint8 images at the native size (CIFAR [N,32,32,3], MNIST [N,28,28,1]; the caller
  resizes those) or, for Imagenette, [N,S,S,3] with S = image_size or 64. Labels int32.
  """
  source = _SOURCES[name]
  builder = tfds.builder(source.tfds_name, data_dir=os.path.expanduser(data_dir) or None)
  train, test = _open(builder, name, source)
  size = image_size or source.default_size

  def to_array(image: np.ndarray) -> np.ndarray:
    if not source.default_size:
      return image
    return resize_pil(PIL.Image.fromarray(image), size, method, center_crop=True)

  x_train, y_train = _read(train, to_array)
  x_test, y_test = _read(test, to_array)
  return Dataset(name, x_train, y_train, x_test, y_test,
                 builder.info.features['label'].num_classes)


def _open(builder: Any, name: str, source: _Source) -> list[Sequence[dict]]:
  """The train and test data sources, or one DatasetError that says how to prepare them."""
  try:
    return [builder.as_data_source(split=split) for split in ('train', source.test_split)]
  except NotImplementedError:  # TFDS's answer when nothing, or only TFRecords, is prepared
    raise DatasetError(_how_to_prepare(builder, name, source)) from None
  except (ValueError, OSError) as err:  # a copy with incomplete metadata
    raise DatasetError(f'{_how_to_prepare(builder, name, source)}\n(TFDS: {err})') from None


def _how_to_prepare(builder: Any, name: str, source: _Source) -> str:
  return (
      f"dataset '{name}': no prepared ArrayRecord copy of TFDS '{source.tfds_name}' in "
      f'{builder.data_dir}.\n'
      'Prepare it once (this step needs TensorFlow and internet; training reads the files '
      'without either):\n'
      # importlib_resources: TFDS 4.9 imports it when preparing, without declaring it.
      '  pip install tensorflow importlib_resources\n'
      '  python -c "import tensorflow_datasets as tfds; '
      f"tfds.builder('{source.tfds_name}', data_dir='{builder.data_dir_root}', "
      "file_format='array_record').download_and_prepare()\"\n"
      'A TFRecord copy written by tfds.load() cannot be read at random: prepare into '
      'another data_dir, or delete it first.')


def _read(records: Sequence[dict], to_array: Callable[[np.ndarray], np.ndarray]
          ) -> tuple[np.ndarray, np.ndarray]:
  """All records of one split -> (uint8 [N,H,W,C], int32 [N]), in record order."""
  # One record at a time: batched `__getitems__` is barely faster here, and the TFDS mock
  # used by the tests implements only `__getitem__`.
  images, labels = [], []
  for index in range(len(records)):
    example = records[index]
    images.append(to_array(example['image']))
    labels.append(example['label'])
  return np.stack(images), np.asarray(labels, np.int32)
