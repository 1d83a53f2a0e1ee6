"""GTSRB and Tiny-ImageNet from their official archives, unpacked as they come.

Files are decoded with Pillow on a thread pool (decoding releases the GIL) into one uint8
array per split, converted to RGB, and resized to a square.
"""

from __future__ import annotations

import concurrent.futures
import csv
import os
import pathlib
from typing import Sequence

import numpy as np
import PIL.Image

from abd_jax.data.base import Dataset, DatasetError
from abd_jax.data.resize import resize_pil

GTSRB_CLASSES = 43
GTSRB_DEFAULT_SIZE = 32  # its images range from 15x15 to 250x250 px
TINY_IMAGENET_CLASSES = 200
TINY_IMAGENET_SIZE = 64  # every image is 64x64

_GTSRB_LAYOUT = """\
  DATA_DIR/GTSRB/Final_Training/Images/00000/00000_00000.ppm ... 00042/*.ppm
  DATA_DIR/GTSRB/Final_Test/Images/00000.ppm ...
  DATA_DIR/GT-final_test.csv  (or in GTSRB/ or GTSRB/Final_Test/Images/)
Unzip GTSRB_Final_Training_Images.zip, GTSRB_Final_Test_Images.zip and
GTSRB_Final_Test_GT.zip into DATA_DIR; they are linked from
https://benchmark.ini.rub.de/gtsrb_dataset.html"""
# Where GTSRB_Final_Test_GT.zip's one file may have been put, relative to DATA_DIR.
_GTSRB_TEST_CSV = ('GT-final_test.csv', 'GTSRB/GT-final_test.csv',
                   'GTSRB/Final_Test/Images/GT-final_test.csv')

_TINY_IMAGENET_LAYOUT = """\
  DATA_DIR/tiny-imagenet-200/wnids.txt
  DATA_DIR/tiny-imagenet-200/train/<wnid>/images/*.JPEG
  DATA_DIR/tiny-imagenet-200/val/images/*.JPEG and val/val_annotations.txt
Unzip http://cs231n.stanford.edu/tiny-imagenet-200.zip into DATA_DIR."""


def load_gtsrb(data_dir: str, image_size: int, method: str) -> Dataset:
  """The official 39,209 training and 12,630 test images, 43 classes.

  Whole images (the sign with its ~10% margin, as in the usual benchmarks) are stretched
  to uint8 [N,S,S,3] with S = image_size or 32. Training labels come from the class
  folder names, test labels from GT-final_test.csv.
  """
  root = pathlib.Path(os.path.expanduser(data_dir))
  train_dir = root / 'GTSRB' / 'Final_Training' / 'Images'
  test_dir = root / 'GTSRB' / 'Final_Test' / 'Images'
  test_csv = next((root / p for p in _GTSRB_TEST_CSV if (root / p).is_file()), None)
  if not (data_dir and train_dir.is_dir() and test_dir.is_dir() and test_csv):
    raise _missing('gtsrb', data_dir, _GTSRB_LAYOUT)

  train_files, train_labels = [], []
  for class_dir in sorted(p for p in train_dir.iterdir() if p.name.isdigit()):
    files = sorted(class_dir.glob('*.ppm'))
    train_files += files
    train_labels += [int(class_dir.name)] * len(files)
  with open(test_csv, newline='') as f:
    rows = list(csv.DictReader(f, delimiter=';'))
  test_files = [test_dir / row['Filename'] for row in rows]
  test_labels = [int(row['ClassId']) for row in rows]
  if not (train_files and test_files):
    raise _missing('gtsrb', data_dir, _GTSRB_LAYOUT)

  size = image_size or GTSRB_DEFAULT_SIZE
  return Dataset('gtsrb', _decode(train_files, size, method), _labels(train_labels),
                 _decode(test_files, size, method), _labels(test_labels), GTSRB_CLASSES)


def load_tiny_imagenet(data_dir: str, image_size: int, method: str) -> Dataset:
  """100,000 training images (500 per class) and the 10,000 labelled validation images
  as the test set, 200 classes, uint8 [N,S,S,3] with S = image_size or 64.

  Class ids follow the sorted WordNet ids, as a folder-per-class reader would number them.
  """
  root = pathlib.Path(os.path.expanduser(data_dir)) / 'tiny-imagenet-200'
  annotations = root / 'val' / 'val_annotations.txt'
  if not (data_dir and (root / 'wnids.txt').is_file() and annotations.is_file()):
    raise _missing('tiny_imagenet', data_dir, _TINY_IMAGENET_LAYOUT)

  wnids = sorted((root / 'wnids.txt').read_text().split())
  class_id = {wnid: i for i, wnid in enumerate(wnids)}
  train_files, train_labels = [], []
  for wnid in wnids:
    files = sorted((root / 'train' / wnid / 'images').glob('*.JPEG'))
    train_files += files
    train_labels += [class_id[wnid]] * len(files)
  # val_annotations.txt: filename <tab> wnid <tab> bounding box (4 ints).
  rows = [line.split('\t') for line in annotations.read_text().splitlines() if line.strip()]
  test_files = [root / 'val' / 'images' / row[0] for row in rows]
  test_labels = [class_id[row[1]] for row in rows]
  if not (train_files and test_files):
    raise _missing('tiny_imagenet', data_dir, _TINY_IMAGENET_LAYOUT)

  size = image_size or TINY_IMAGENET_SIZE
  return Dataset('tiny_imagenet', _decode(train_files, size, method), _labels(train_labels),
                 _decode(test_files, size, method), _labels(test_labels),
                 TINY_IMAGENET_CLASSES)


def _missing(name: str, data_dir: str, layout: str) -> DatasetError:
  where = f'in {data_dir!r}' if data_dir else '(dataset.data_dir is empty)'
  return DatasetError(f"dataset '{name}': files not found {where}. Expected:\n{layout}")


def _decode(files: Sequence[pathlib.Path], size: int, method: str) -> np.ndarray:
  """Image files -> uint8 [N,size,size,3], in the order given."""
  def decode(path: pathlib.Path) -> np.ndarray:
    # Grayscale and palette files occur in both archives; every output has 3 channels.
    with PIL.Image.open(path) as image:
      return resize_pil(image.convert('RGB'), size, method)

  with concurrent.futures.ThreadPoolExecutor() as pool:
    return np.stack(list(pool.map(decode, files)))


def _labels(labels: Sequence[int]) -> np.ndarray:
  return np.asarray(labels, np.int32)
