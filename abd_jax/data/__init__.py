"""Datasets held whole in host memory as uint8 arrays, and on-device augmentation.

    data = load_dataset(config.dataset, config.seed)   # -> Dataset
    x = augment(key, to_float(images), crop_padding, flip)
"""

from abd_jax.data.augment import augment, to_float
from abd_jax.data.base import Dataset, DatasetError
from abd_jax.data.registry import DATASET_NAMES, load_dataset

__all__ = ['DATASET_NAMES', 'Dataset', 'DatasetError', 'augment', 'load_dataset', 'to_float']
