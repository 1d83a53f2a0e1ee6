"""`load_dataset`: the config's dataset name -> its loader, then the common resize."""

from __future__ import annotations

import dataclasses
from typing import Callable

import ml_collections

from abd_jax.data.base import Dataset, DatasetError
from abd_jax.data.resize import resize_images

Loader = Callable[[ml_collections.ConfigDict, int], Dataset]

# The loader modules are imported on first use: scikit-learn and TFDS add about a second
# each to every start (the config validator imports this package), needed or not.


def _digits(cfg, seed):
  del seed  # the split is fixed, see digits.SPLIT_SEED
  from abd_jax.data import digits
  return digits.load_digits(cfg.test_fraction)


def _tfds(cfg, seed):
  del seed
  from abd_jax.data import tfds_source
  return tfds_source.load_tfds(cfg.name, cfg.data_dir, cfg.image_size, cfg.resize_method)


def _gtsrb(cfg, seed):
  del seed
  from abd_jax.data import folders
  return folders.load_gtsrb(cfg.data_dir, cfg.image_size, cfg.resize_method)


def _tiny_imagenet(cfg, seed):
  del seed
  from abd_jax.data import folders
  return folders.load_tiny_imagenet(cfg.data_dir, cfg.image_size, cfg.resize_method)


def _synthetic(cfg, seed):
  from abd_jax.data import synthetic
  return synthetic.load_synthetic(cfg.num_train, cfg.num_test, cfg.image_size, cfg.channels,
                                  cfg.num_classes, seed)


_LOADERS: dict[str, Loader] = {
    'digits': _digits,
    'cifar10': _tfds,
    'cifar100': _tfds,
    'mnist': _tfds,
    'imagenette': _tfds,
    'gtsrb': _gtsrb,
    'tiny_imagenet': _tiny_imagenet,
    'synthetic': _synthetic,
}
DATASET_NAMES = tuple(_LOADERS)


def load_dataset(cfg: ml_collections.ConfigDict, seed: int) -> Dataset:
  """The `dataset` block of a run config -> the whole dataset in host memory.

  Images are uint8 [N,S,S,C] with S = cfg.image_size, or the dataset's native (or default)
  size when cfg.image_size is 0. Only 'synthetic' depends on `seed`; every other dataset
  and its train/test split are the same for all seeds.
  Raises DatasetError for an unknown name or data that is not where cfg.data_dir says.
  """
  if cfg.name not in _LOADERS:
    raise DatasetError(f'unknown dataset {cfg.name!r}; choose one of {DATASET_NAMES}')
  data = _LOADERS[cfg.name](cfg, seed)
  # Loaders return fixed-size images at their native size (variable-size ones are already
  # resized while decoding): one resize here serves them all, a no-op when sizes agree.
  return dataclasses.replace(
      data, x_train=resize_images(data.x_train, cfg.image_size, cfg.resize_method),
      x_test=resize_images(data.x_test, cfg.image_size, cfg.resize_method))
