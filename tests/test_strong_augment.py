"""Tests of abd_jax.data.strong_augment: pixel ops against PIL (what torchvision applies to PIL
images), geometric ops, and the RandAugment / AutoAugment / SimCLR batch policies."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import PIL.Image
import PIL.ImageEnhance
import PIL.ImageOps
import pytest

from abd_jax.data import strong_augment as sa

NEAREST = PIL.Image.Resampling.NEAREST
# The per-image ops, jitted: one compile per op and shape instead of op-by-op dispatch.
OPS = {name: jax.jit(getattr(sa, name)) for name in (
    'equalize', 'autocontrast', 'invert', 'posterize', 'solarize', 'brightness', 'color',
    'contrast', 'sharpness', 'rotate', 'shear_x', 'shear_y', 'translate_x', 'translate_y')}
resized_crop = jax.jit(sa.resized_crop)  # the box is traced: one compile for every box
SIZE = (32, 32)  # one image shape for the op tests: fewer compiles; 1024 pixels for equalize


def uint8_image(mode: str, shape=SIZE, seed=0) -> np.ndarray:
  """A skewed (not flat-histogram) uint8 [H,W] or [H,W,3] image, so equalize has work to do."""
  rng = np.random.default_rng(seed)
  full = shape + ((3,) if mode == 'RGB' else ())
  return (rng.random(full) ** 2 * 200 + 20).astype(np.uint8)


def as_float(u8: np.ndarray) -> jax.Array:
  """uint8 [H,W(,3)] -> float32 [H,W,C] in [0, 1]."""
  return jnp.asarray(u8.reshape(u8.shape[:2] + (-1,)) / 255.0, jnp.float32)


def to_levels(x) -> np.ndarray:
  return np.round(np.asarray(x) * 255.0).astype(int)


def assert_matches_pil(ours, pil_image, tol=1):
  ref = np.asarray(pil_image).astype(int).reshape(ours.shape)
  diff = np.abs(to_levels(ours) - ref)
  assert diff.max() <= tol, f'max difference {diff.max()} gray levels'


# --- pixel ops against PIL --------------------------------------------------------------

@pytest.mark.parametrize('mode', ['RGB', 'L'])
def test_parameter_free_ops_match_pil(mode):
  u8 = uint8_image(mode)
  pil, x = PIL.Image.fromarray(u8, mode), as_float(u8)
  equalized, stretched = OPS['equalize'](x), OPS['autocontrast'](x)
  assert_matches_pil(equalized, PIL.ImageOps.equalize(pil), tol=0)
  assert_matches_pil(stretched, PIL.ImageOps.autocontrast(pil))
  assert_matches_pil(OPS['invert'](x), PIL.ImageOps.invert(pil), tol=0)
  # equalize and autocontrast really change this image (the comparison is not vacuous)
  assert np.abs(to_levels(equalized) - to_levels(x)).max() > 20
  assert np.abs(to_levels(stretched) - to_levels(x)).max() > 20


@pytest.mark.parametrize('mode', ['RGB', 'L'])
def test_posterize_and_solarize_match_pil(mode):
  u8 = uint8_image(mode)
  u8[0, 0] = 255  # pure white: PIL's solarize inverts it even at threshold 255
  pil, x = PIL.Image.fromarray(u8, mode), as_float(u8)
  for bits in (4, 5, 6, 7, 8):
    assert_matches_pil(OPS['posterize'](x, bits), PIL.ImageOps.posterize(pil, bits), tol=0)
  for threshold in (0, 64, 128, 200, 255):
    assert_matches_pil(OPS['solarize'](x, threshold / 255.0),
                       PIL.ImageOps.solarize(pil, threshold), tol=0)
  assert float(OPS['solarize'](x, 1.0)[0, 0, 0]) == 0.0


@pytest.mark.parametrize('mode,name', [('RGB', 'Brightness'), ('RGB', 'Color'),
                                       ('RGB', 'Contrast'), ('RGB', 'Sharpness'),
                                       ('L', 'Contrast')])
def test_enhance_ops_match_pil(mode, name):
  u8 = uint8_image(mode)
  pil, x = PIL.Image.fromarray(u8, mode), as_float(u8)
  ours = OPS[name.lower()]
  for factor in (0.1, 0.5, 1.5, 1.9):  # RandAugment's range 1 +- 0.9
    assert_matches_pil(ours(x, factor), getattr(PIL.ImageEnhance, name)(pil).enhance(factor))
  np.testing.assert_array_equal(ours(x, 1.0), x)  # factor 1 is exactly the identity


def test_off_grid_floats_and_flat_images_are_safe():
  x = jnp.asarray(np.random.default_rng(0).random(SIZE + (3,)), jnp.float32)
  np.testing.assert_array_equal(OPS['posterize'](x, 8), x)  # 8 bits keeps off-grid values
  flat = np.full(SIZE + (3,), 0.4, np.float32)
  for name in ('autocontrast', 'equalize'):
    np.testing.assert_array_equal(OPS[name](flat), flat)
  # atol: the rec601 luma weights sum to 0.9999, so gray 0.4 has luma 0.39996
  for name in ('contrast', 'sharpness'):
    np.testing.assert_allclose(OPS[name](flat, 1.9), flat, atol=1e-4)
  np.testing.assert_allclose(OPS['color'](flat, 0.1), flat, atol=1e-4)


# --- geometric ops ----------------------------------------------------------------------

@pytest.mark.parametrize('size', [32, 9])
def test_rotate_quarter_turn_is_rot90(size):
  x = np.random.default_rng(1).random((size, size, 3)).astype(np.float32)
  np.testing.assert_array_equal(OPS['rotate'](x, 90.0), np.rot90(x))
  np.testing.assert_array_equal(OPS['rotate'](x, -90.0), np.rot90(x, -1))
  np.testing.assert_array_equal(OPS['rotate'](x, 0.0), x)


def test_rotate_and_shear_match_pil_nearest_with_zero_fill():
  u8 = uint8_image('RGB')
  pil, x = PIL.Image.fromarray(u8), as_float(u8)

  def same_fraction(ours, ref):
    return (to_levels(ours) == np.asarray(ref).astype(int)).all(-1).mean()

  for degrees in (17.0, -23.0, 30.0):
    ref = pil.rotate(degrees, resample=NEAREST, fillcolor=(0, 0, 0))
    assert same_fraction(OPS['rotate'](x, degrees), ref) > 0.98  # ties may round apart
  for amount in (0.3, -0.3, 0.1):
    ref = pil.transform(pil.size, PIL.Image.Transform.AFFINE, (1, amount, 0, 0, 1, 0),
                        resample=NEAREST, fillcolor=(0, 0, 0))
    assert same_fraction(OPS['shear_x'](x, amount), ref) > 0.98
    ref = pil.transform(pil.size, PIL.Image.Transform.AFFINE, (1, 0, 0, amount, 1, 0),
                        resample=NEAREST, fillcolor=(0, 0, 0))
    assert same_fraction(OPS['shear_y'](x, amount), ref) > 0.98


def test_translate_shifts_whole_pixels_with_zero_fill():
  x = np.random.default_rng(2).uniform(0.1, 1.0, SIZE + (3,)).astype(np.float32)
  right = np.asarray(OPS['translate_x'](x, 3.0))
  np.testing.assert_array_equal(right[:, 3:], x[:, :-3])
  np.testing.assert_array_equal(right[:, :3], 0.0)
  up = np.asarray(OPS['translate_y'](x, -2.7))  # truncated to -2, as torchvision's int()
  np.testing.assert_array_equal(up[:-2], x[2:])
  np.testing.assert_array_equal(up[-2:], 0.0)
  np.testing.assert_array_equal(OPS['translate_x'](x, 0.0), x)


@pytest.mark.parametrize('name,magnitude', [('shear_x', 0.3), ('shear_y', -0.3),
                                            ('translate_x', -5.0), ('translate_y', 4.0),
                                            ('rotate', 30.0), ('rotate', -13.0)])
def test_flat_image_stays_flat_under_geometric_ops_except_fill(name, magnitude):
  out = np.asarray(OPS[name](np.full(SIZE + (3,), 0.6, np.float32), magnitude))
  assert set(np.unique(out)) <= {np.float32(0.0), np.float32(0.6)}
  assert (out == np.float32(0.6)).mean() > 0.5
  assert out[16, 16, 0] == np.float32(0.6)  # the centre never leaves the image


def test_resized_crop_matches_pil_crop_then_bilinear_resize():
  u8 = uint8_image('RGB')
  pil, x = PIL.Image.fromarray(u8), as_float(u8)
  for top, left, h, w in ((2, 3, 10, 7), (5, 1, 4, 31), (20, 0, 12, 32)):
    ref = pil.crop((left, top, left + w, top + h)).resize(SIZE, PIL.Image.Resampling.BILINEAR)
    assert_matches_pil(resized_crop(x, top, left, h, w), ref)
  np.testing.assert_array_equal(resized_crop(x, 0, 0, 32, 32), x)  # whole image: exact


def test_crop_boxes_fit_the_image_and_follow_scale_and_ratio():
  box = lambda u: jnp.stack(sa._crop_box(u, 32, 32, (0.08, 1.0), (3 / 4, 4 / 3)))
  uniforms = np.random.default_rng(6).random((400, sa._CROP_DRAWS), np.float32)
  top, left, h, w = np.asarray(jax.jit(jax.vmap(box))(uniforms)).T
  assert (top >= 0).all() and (left >= 0).all()
  assert (top + h <= 32).all() and (left + w <= 32).all()
  area, ratio = h * w / 1024, w / h
  assert area.min() >= 0.07 and area.max() <= 1.0 and area.std() > 0.15  # whole scale range
  assert ratio.min() >= 0.7 and ratio.max() <= 1.45  # 3/4 .. 4/3 up to integer rounding
  assert len({(t, l) for t, l in zip(top, left)}) > 100  # positions vary too
  # a box of the whole 16 x 40 area never fits a 3/4 .. 4/3 ratio: torchvision's fallback
  # is the widest centred box of ratio 4/3
  wide = jax.jit(sa._crop_box, static_argnums=(1, 2, 3, 4))(
      np.full(sa._CROP_DRAWS, 0.5, np.float32), 16, 40, (1.0, 1.0), (3 / 4, 4 / 3))
  assert [int(v) for v in wide] == [0, 9, 16, 21]


def test_augmentation_space_is_torchvisions():
  space = sa.augmentation_space(31, 32, 40)
  np.testing.assert_array_equal(space['Posterize'][0][[0, 3, 4, 11, 12, 30]], [8, 8, 7, 7, 6, 4])
  assert space['Solarize'][0][0] == 1.0 and space['Solarize'][0][-1] == 0.0
  assert space['TranslateX'][0][-1] == pytest.approx(150 / 331 * 40)
  assert space['TranslateY'][0][-1] == pytest.approx(150 / 331 * 32)
  assert space['Rotate'][0][9] == pytest.approx(9.0)
  assert space['ShearX'][1] and not space['Posterize'][1]
  # AutoAugment's 10 bins: CIFAR-10 policy's Posterize bin 7 is 5 bits
  np.testing.assert_array_equal(sa.augmentation_space(10, 32, 32)['Posterize'][0],
                                [8, 8, 7, 7, 6, 6, 5, 5, 4, 4])
  assert len(sa.CIFAR10_POLICY) == 25 and sa.POLICIES['autoaugment'] is sa.auto_augment


# --- batch policies ---------------------------------------------------------------------

def batch(c: int, b: int = 16, size: int = 12) -> jax.Array:
  """Images on the uint8 grid, strictly below 1 (so Solarize at threshold 1 is a no-op)."""
  u8 = np.random.default_rng(c).integers(0, 255, (b, size, size, c))
  return jnp.asarray(u8 / 255.0, jnp.float32)


POLICY_FNS = {'rand_augment': sa.rand_augment, 'auto_augment': sa.auto_augment,
              'simclr_view': sa.simclr_view}


@pytest.mark.parametrize('c', [1, 3])
@pytest.mark.parametrize('name', list(POLICY_FNS))
def test_policy_shape_range_keys_and_per_sample_draws(name, c):
  fn = POLICY_FNS[name]
  x = batch(c)
  y = fn(jax.random.key(0), x)
  assert y.shape == x.shape and y.dtype == jnp.float32
  assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
  np.testing.assert_array_equal(fn(jax.random.key(0), x), y)  # same key, same output
  assert not np.array_equal(fn(jax.random.key(1), x), y)
  assert (np.abs(np.asarray(y) - np.asarray(x)).max(axis=(1, 2, 3)) > 0).sum() >= 4
  # one image repeated over the batch: the samples draw their own ops and magnitudes
  same = jnp.broadcast_to(x[:1], x.shape)
  outputs = {np.asarray(image).tobytes() for image in fn(jax.random.key(2), same)}
  assert len(outputs) >= 6


@pytest.mark.parametrize('name', list(POLICY_FNS))
def test_policies_trace_inside_an_outer_jit(name):
  fn = POLICY_FNS[name]
  x = batch(3)
  lowered = jax.jit(lambda key, images: fn(key, images) * 2.0).lower(jax.random.key(0), x)
  assert lowered.out_info.shape == x.shape  # traced without host sync or concrete values


def test_rand_augment_magnitude_zero_only_applies_magnitude_free_ops():
  x = batch(3)
  y = np.asarray(sa.rand_augment(jax.random.key(3), x, num_ops=2, magnitude=0))
  ac, eq = OPS['autocontrast'], OPS['equalize']
  for image, out in zip(x, y):
    # what two of Identity, AutoContrast, Equalize can make (autocontrast is idempotent)
    candidates = (image, ac(image), eq(image), eq(eq(image)), ac(eq(image)), eq(ac(image)))
    assert any(np.abs(out - np.asarray(c)).max() <= 1e-6 for c in candidates)
  unchanged = (y == np.asarray(x)).all(axis=(1, 2, 3))
  assert 0 < unchanged.sum() < len(x)  # the 12 other ops at magnitude 0 leave samples as is


def test_rand_augment_keeps_a_flat_image_finite_and_in_range():
  flat = jnp.asarray(np.full(batch(3).shape, 0.5, np.float32))  # batch's shape: no recompile
  y = np.asarray(sa.rand_augment(jax.random.key(4), flat))
  assert np.isfinite(y).all() and y.min() >= 0.0 and y.max() <= 1.0


def test_simclr_view_with_a_full_crop_and_no_jitter_is_grayscale_of_the_input():
  x = batch(3)
  # the whole-image crop resizes exactly; grayscale with probability 1 is the only change
  gray = np.asarray(sa.simclr_view(jax.random.key(5), x, crop_scale=(1.0, 1.0),
                                   crop_ratio=(1.0, 1.0), flip=False, jitter_p=0.0, gray_p=1.0))
  luma = np.asarray(x) @ np.array([0.2989, 0.587, 0.114], np.float32)
  np.testing.assert_allclose(gray, np.repeat(luma[..., None], 3, axis=-1), atol=1e-6)


def test_policies_reject_bad_shapes_and_magnitudes():
  with pytest.raises(ValueError, match='C = 1 or 3'):
    sa.rand_augment(jax.random.key(0), jnp.zeros((2, 8, 8, 2)))
  with pytest.raises(ValueError, match='magnitude'):
    sa.rand_augment(jax.random.key(0), jnp.zeros((2, 8, 8, 3)), magnitude=31)
