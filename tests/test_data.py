"""Tests of abd_jax.data: every loader on tiny fake data (no download), resizing, augmentation."""

from __future__ import annotations

import csv

import jax
import ml_collections
import numpy as np
import PIL.Image
import pytest
import tensorflow_datasets as tfds

from abd_jax.data import DATASET_NAMES, Dataset, DatasetError, augment, load_dataset, to_float
from abd_jax.data.resize import resize_images


def _cfg(**overrides) -> ml_collections.ConfigDict:
  """A `dataset` config block with the defaults of the run config."""
  cfg = dict(name='digits', data_dir='', image_size=0, resize_method='nearest',
             test_fraction=0.2, num_train=64, num_test=16, num_classes=10, channels=3,
             crop_padding=0, flip=False)
  cfg.update(overrides)
  return ml_collections.ConfigDict(cfg)


def _rows(x: np.ndarray) -> set[bytes]:
  return {image.tobytes() for image in x}


# --- API ------------------------------------------------------------------------------------

def test_dataset_names_and_unknown_name():
  assert DATASET_NAMES == ('digits', 'cifar10', 'cifar100', 'mnist', 'imagenette', 'gtsrb',
                           'tiny_imagenet', 'synthetic')
  with pytest.raises(DatasetError, match='unknown dataset'):
    load_dataset(_cfg(name='svhn'), seed=0)


def test_dataset_rejects_wrong_dtypes_and_labels():
  x = np.zeros((4, 8, 8, 3), np.uint8)
  y = np.zeros(4, np.int32)
  assert Dataset('ok', x, y, x, y, 2).image_shape == (8, 8, 3)
  with pytest.raises(DatasetError, match='x_train'):
    Dataset('bad', x.astype(np.float32), y, x, y, 2)
  with pytest.raises(DatasetError, match='y_test'):
    Dataset('bad', x, y, x, y.astype(np.int64), 2)
  with pytest.raises(DatasetError, match='labels outside'):
    Dataset('bad', x, y, x, y + 2, 2)


# --- digits ---------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def digits() -> Dataset:
  return load_dataset(_cfg(), seed=0)


def test_digits_shapes_dtypes_and_scaling(digits):
  assert digits.x_train.shape == (1437, 8, 8, 1) and digits.x_test.shape == (360, 8, 8, 1)
  assert digits.x_train.dtype == np.uint8 and digits.y_train.dtype == np.int32
  assert digits.num_classes == 10 and digits.image_shape == (8, 8, 1)
  # The bundled 0..16 counts map onto 17 levels, round(v * 255 / 16), spanning 0..255.
  levels = {round(v * 255 / 16) for v in range(17)}
  values = set(np.unique(np.concatenate([digits.x_train, digits.x_test])).tolist())
  assert values <= levels and {0, 255} <= values
  assert set(np.unique(digits.y_test).tolist()) == set(range(10))


def test_digits_split_is_fixed_whatever_the_run_seed(digits):
  other = load_dataset(_cfg(), seed=123)
  for field in ('x_train', 'y_train', 'x_test', 'y_test'):
    np.testing.assert_array_equal(getattr(digits, field), getattr(other, field))


def test_digits_split_is_stratified_and_disjoint(digits):
  y_all = np.concatenate([digits.y_train, digits.y_test])
  expected = np.bincount(y_all, minlength=10) * len(digits.y_test) / len(y_all)
  assert np.all(np.abs(np.bincount(digits.y_test, minlength=10) - expected) <= 1)
  assert not _rows(digits.x_train) & _rows(digits.x_test)
  assert len(_rows(digits.x_train) | _rows(digits.x_test)) == 1797  # every image used once


def test_digits_test_fraction():
  data = load_dataset(_cfg(test_fraction=0.5), seed=0)
  assert abs(len(data.y_test) - 1797 * 0.5) <= 1


def test_digits_nearest_upsampling_replicates_pixels(digits):
  big = load_dataset(_cfg(image_size=32, resize_method='nearest'), seed=0)
  assert big.x_train.shape == (1437, 32, 32, 1) and big.x_train.dtype == np.uint8
  # Each 4x4 block is one original pixel.
  np.testing.assert_array_equal(big.x_train, digits.x_train.repeat(4, axis=1).repeat(4, axis=2))
  np.testing.assert_array_equal(big.y_train, digits.y_train)


def test_digits_bilinear_upsampling_is_smooth(digits):
  nearest = load_dataset(_cfg(image_size=32, resize_method='nearest'), seed=0).x_test
  bilinear = load_dataset(_cfg(image_size=32, resize_method='bilinear'), seed=0).x_test
  assert bilinear.shape == (360, 32, 32, 1) and bilinear.dtype == np.uint8

  def roughness(x):  # sum of squared differences between horizontal neighbours
    return float(np.sum(np.diff(x.astype(np.float64), axis=2) ** 2))

  assert roughness(bilinear) < 0.5 * roughness(nearest)
  # Interpolation keeps the brightness: mean within a few levels of the original.
  assert abs(bilinear.mean() - digits.x_test.mean()) < 3


def test_resize_images_no_op_and_method_check():
  x = np.zeros((2, 8, 8, 3), np.uint8)
  assert resize_images(x, 0, 'nearest') is x
  assert resize_images(x, 8, 'bilinear') is x
  with pytest.raises(ValueError, match='resize method'):
    resize_images(x, 16, 'cubic')


# --- TFDS -----------------------------------------------------------------------------------

@pytest.mark.parametrize('name,shape,classes', [
    ('cifar10', (32, 32, 3), 10), ('cifar100', (32, 32, 3), 100), ('mnist', (28, 28, 1), 10),
    ('imagenette', (64, 64, 3), 10)])
def test_tfds_loaders_on_mocked_data(name, shape, classes):
  # USE_CODE: the features come from the builder code; no metadata files are needed.
  with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
    data = load_dataset(_cfg(name=name, data_dir='/nonexistent'), seed=0)
  assert data.name == name and data.num_classes == classes
  assert data.x_train.shape == (12,) + shape and data.x_test.shape == (12,) + shape
  assert data.x_train.dtype == np.uint8 and data.y_train.dtype == np.int32
  for y in (data.y_train, data.y_test):
    assert 0 <= y.min() and y.max() < classes


def test_tfds_image_size_resizes():
  with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE):
    mnist = load_dataset(_cfg(name='mnist', image_size=32, resize_method='bilinear'), seed=0)
    imagenette = load_dataset(_cfg(name='imagenette', image_size=24), seed=0)
  assert mnist.image_shape == (32, 32, 1)
  assert imagenette.image_shape == (24, 24, 3)


@pytest.fixture
def prepared_cifar10(tmp_path):
  """A real ArrayRecord copy of a tiny fake 'cifar10' (6 train, 4 test images) in tmp_path.

  Written by TFDS itself without TensorFlow: PIL images are PNG-encoded by Pillow.
  """
  rng = np.random.default_rng(0)
  images = {split: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            for split, n in (('train', 6), ('test', 4))}

  class FakeCifar10(tfds.builder_cls('cifar10'), skip_registration=True):
    name = 'cifar10'

    def _split_generators(self, dl_manager):
      return {split: self._examples(x) for split, x in images.items()}

    def _examples(self, x):
      for i, image in enumerate(x):
        yield i, {'id': str(i), 'image': PIL.Image.fromarray(image), 'label': i % 10}

  FakeCifar10(data_dir=str(tmp_path), file_format='array_record').download_and_prepare()
  return tmp_path, images


def test_tfds_reads_a_real_array_record_copy(prepared_cifar10):
  data_dir, images = prepared_cifar10
  data = load_dataset(_cfg(name='cifar10', data_dir=str(data_dir)), seed=0)
  assert data.x_train.shape == (6, 32, 32, 3) and data.x_test.shape == (4, 32, 32, 3)
  # TFDS shuffles records when writing: compare (image, label) pairs as sets.
  for x, y, original in ((data.x_train, data.y_train, images['train']),
                         (data.x_test, data.y_test, images['test'])):
    got = {(image.tobytes(), int(label)) for image, label in zip(x, y)}
    assert got == {(image.tobytes(), i % 10) for i, image in enumerate(original)}


def test_tfds_missing_data_says_how_to_prepare(tmp_path):
  with pytest.raises(DatasetError) as info:
    load_dataset(_cfg(name='cifar10', data_dir=str(tmp_path)), seed=0)
  message = str(info.value)
  assert 'cifar10' in message and str(tmp_path) in message
  assert 'Prepare' in message and "file_format='array_record'" in message
  assert info.value.__cause__ is None and info.value.__suppress_context__


# --- folder datasets ------------------------------------------------------------------------

def _color(label: int) -> tuple[int, int, int]:
  return (40 * label + 10, 200 - 30 * label, 7 * label + 3)


def _solid(path, size, label, mode='RGB'):
  path.parent.mkdir(parents=True, exist_ok=True)
  PIL.Image.new('RGB', size, _color(label)).convert(mode).save(path)


@pytest.fixture
def gtsrb_dir(tmp_path):
  """Classes 0..2 with 2, 3, 2 training images and 4 test images, all of odd sizes."""
  sizes = [(17, 23), (30, 29), (41, 35)]
  header = 'Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId'.split(';')
  for label, count in enumerate((2, 3, 2)):
    folder = tmp_path / 'GTSRB' / 'Final_Training' / 'Images' / f'{label:05d}'
    rows = []
    for k in range(count):
      name = f'00000_{k:05d}.ppm'
      _solid(folder / name, sizes[k], label)
      rows.append([name, *sizes[k], 1, 1, sizes[k][0] - 2, sizes[k][1] - 2, label])
    _write_csv(folder / f'GT-{label:05d}.csv', header, rows)
  rows = []
  for k, label in enumerate((2, 0, 1, 2)):
    name = f'{k:05d}.ppm'
    _solid(tmp_path / 'GTSRB' / 'Final_Test' / 'Images' / name, sizes[k % 3], label)
    rows.append([name, *sizes[k % 3], 1, 1, 5, 5, label])
  _write_csv(tmp_path / 'GT-final_test.csv', header, rows)  # where the GT zip unpacks it
  return tmp_path


def _write_csv(path, header, rows):
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f, delimiter=';')
    writer.writerow(header)
    writer.writerows(rows)


def test_gtsrb_loads_the_official_layout(gtsrb_dir):
  data = load_dataset(_cfg(name='gtsrb', data_dir=str(gtsrb_dir), resize_method='bilinear'),
                      seed=0)
  assert data.num_classes == 43
  assert data.x_train.shape == (7, 32, 32, 3) and data.x_test.shape == (4, 32, 32, 3)
  np.testing.assert_array_equal(data.y_train, [0, 0, 1, 1, 1, 2, 2])
  np.testing.assert_array_equal(data.y_test, [2, 0, 1, 2])
  # Solid images stay solid: each pixel shows the colour of its label, so files and labels
  # were paired correctly.
  for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
    expected = np.array([_color(label) for label in y], np.uint8)[:, None, None, :]
    np.testing.assert_array_equal(x, np.broadcast_to(expected, x.shape))


def test_gtsrb_image_size(gtsrb_dir):
  data = load_dataset(_cfg(name='gtsrb', data_dir=str(gtsrb_dir), image_size=16), seed=0)
  assert data.image_shape == (16, 16, 3)


@pytest.fixture
def tiny_imagenet_dir(tmp_path):
  """3 classes (listed unsorted), 2 training images each (one grayscale), 3 val images."""
  root = tmp_path / 'tiny-imagenet-200'
  wnids = ['n0003', 'n0001', 'n0002']
  root.mkdir()
  (root / 'wnids.txt').write_text('\n'.join(wnids) + '\n')
  for wnid in wnids:
    label = sorted(wnids).index(wnid)
    for k in range(2):
      _solid(root / 'train' / wnid / 'images' / f'{wnid}_{k}.JPEG', (64, 64), label,
             mode='L' if k else 'RGB')
  lines = []
  for k, wnid in enumerate(('n0002', 'n0003', 'n0001')):
    _solid(root / 'val' / 'images' / f'val_{k}.JPEG', (64, 64), sorted(wnids).index(wnid))
    lines.append(f'val_{k}.JPEG\t{wnid}\t0\t0\t63\t63')
  (root / 'val' / 'val_annotations.txt').write_text('\n'.join(lines) + '\n')
  return tmp_path


def test_tiny_imagenet_loads_the_official_layout(tiny_imagenet_dir):
  data = load_dataset(_cfg(name='tiny_imagenet', data_dir=str(tiny_imagenet_dir)), seed=0)
  assert data.num_classes == 200
  assert data.x_train.shape == (6, 64, 64, 3) and data.x_test.shape == (3, 64, 64, 3)
  np.testing.assert_array_equal(data.y_train, [0, 0, 1, 1, 2, 2])  # sorted wnids
  np.testing.assert_array_equal(data.y_test, [1, 2, 0])
  expected = np.array([_color(label) for label in data.y_test], np.float64)
  # JPEG is lossy: the mean colour is close, not exact.
  assert np.abs(data.x_test.mean(axis=(1, 2)) - expected).max() < 4
  gray = data.x_train[1]  # saved in mode 'L': three equal channels
  np.testing.assert_array_equal(gray[..., 0], gray[..., 2])


def test_tiny_imagenet_image_size(tiny_imagenet_dir):
  data = load_dataset(_cfg(name='tiny_imagenet', data_dir=str(tiny_imagenet_dir),
                           image_size=32, resize_method='bilinear'), seed=0)
  assert data.image_shape == (32, 32, 3)


@pytest.mark.parametrize('name,layout', [('gtsrb', 'GTSRB/Final_Training/Images'),
                                         ('tiny_imagenet', 'tiny-imagenet-200/wnids.txt')])
def test_folder_datasets_missing(tmp_path, name, layout):
  with pytest.raises(DatasetError, match=name) as info:
    load_dataset(_cfg(name=name, data_dir=str(tmp_path)), seed=0)
  assert layout in str(info.value) and str(tmp_path) in str(info.value)
  assert 'http' in str(info.value)
  with pytest.raises(DatasetError, match='data_dir is empty'):
    load_dataset(_cfg(name=name, data_dir=''), seed=0)


# --- synthetic ------------------------------------------------------------------------------

def test_synthetic_shapes_and_labels():
  data = load_dataset(_cfg(name='synthetic', num_train=50, num_test=20, image_size=0,
                           channels=1, num_classes=5), seed=0)
  assert data.x_train.shape == (50, 32, 32, 1) and data.x_test.shape == (20, 32, 32, 1)
  assert data.x_train.dtype == np.uint8 and data.y_train.dtype == np.int32
  assert data.num_classes == 5
  np.testing.assert_array_equal(np.bincount(data.y_train), [10] * 5)
  sized = load_dataset(_cfg(name='synthetic', image_size=16), seed=0)
  assert sized.image_shape == (16, 16, 3)


def test_synthetic_follows_the_seed():
  a, b, c = (load_dataset(_cfg(name='synthetic'), seed=s) for s in (1, 1, 2))
  np.testing.assert_array_equal(a.x_train, b.x_train)
  np.testing.assert_array_equal(a.y_test, b.y_test)
  assert not np.array_equal(a.x_train, c.x_train)


# --- augmentation ---------------------------------------------------------------------------

def _distinct(batch=32, size=6, channels=2) -> np.ndarray:
  """float32 images whose every value is distinct and non-zero, so a zero marks padding."""
  n = batch * size * size * channels
  return (np.arange(1, n + 1, dtype=np.float32) / n).reshape(batch, size, size, channels)


def _shift(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
  """out[r, c] = image[r - dy, c - dx], zero where that falls outside."""
  h, w, _ = image.shape
  out = np.zeros_like(image)
  out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
      image[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
  return out


def _find_shift(out: np.ndarray, image: np.ndarray, p: int) -> tuple[int, int] | None:
  for dy in range(-p, p + 1):
    for dx in range(-p, p + 1):
      if np.array_equal(out, _shift(image, dy, dx)):
        return dy, dx
  return None


def test_augment_off_is_identity():
  x = jax.numpy.asarray(_distinct())
  assert augment(jax.random.key(0), x, 0, False) is x


def test_augment_crop_is_a_zero_filled_shift():
  p, x = 2, _distinct()
  out = np.asarray(augment(jax.random.key(0), jax.numpy.asarray(x), p, False))
  assert out.shape == x.shape and out.dtype == np.float32
  shifts = [_find_shift(o, i, p) for o, i in zip(out, x)]
  assert None not in shifts
  assert len(set(shifts)) > 5  # per-sample offsets, not one for the batch


def test_augment_flip_mirrors_some_samples():
  x = _distinct()
  out = np.asarray(augment(jax.random.key(1), jax.numpy.asarray(x), 0, True))
  mirrored = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, x)]
  kept = [np.array_equal(o, i) for o, i in zip(out, x)]
  assert all(m or k for m, k in zip(mirrored, kept))
  assert 0 < sum(mirrored) < len(x)


def test_augment_is_jittable_and_deterministic():
  x = jax.numpy.asarray(_distinct())
  key = jax.random.key(3)
  jitted = jax.jit(augment, static_argnums=(2, 3))
  eager = augment(key, x, 3, True)
  np.testing.assert_array_equal(jitted(key, x, 3, True), eager)
  np.testing.assert_array_equal(augment(key, x, 3, True), eager)
  assert not np.array_equal(augment(jax.random.key(4), x, 3, True), eager)
  # Crop then flip: each output is a mirrored or plain zero-filled shift of its input.
  for o, i in zip(np.asarray(eager), np.asarray(x)):
    assert _find_shift(o, i, 3) is not None or _find_shift(o[:, ::-1], i, 3) is not None


def test_to_float():
  x = np.array([[0, 51, 255]], np.uint8)
  y = to_float(x)
  assert y.dtype == np.float32
  np.testing.assert_allclose(np.asarray(y), [[0.0, 0.2, 1.0]], rtol=1e-6)
