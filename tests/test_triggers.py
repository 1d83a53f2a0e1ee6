"""Trigger formulas checked pixel by pixel on hand-made images, plus WaNet's warp."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from abd_jax.poison import triggers as T
from abd_jax.poison import warp as W

HW = (8, 10)
C = 3


def ramp(b=2, hw=HW, c=C):
  """[b,H,W,C] float32 with distinct values in (0, 1): every pixel differs."""
  n = b * hw[0] * hw[1] * c
  return (np.arange(n, dtype=np.float32).reshape(b, *hw, c) + 1) / (n + 1)


def const(v, b=2, hw=HW, c=C):
  return np.full((b, *hw, c), v, np.float32)


# --------------------------------------------------------------------------- patterns


def test_checkerboard_values_and_corner():
  cb = np.asarray(T.checkerboard(3, C))
  assert cb.shape == (3, 3, C) and cb.dtype == np.float32
  np.testing.assert_array_equal(cb[..., 0], [[1, 0, 1], [0, 1, 0], [1, 0, 1]])
  assert (cb == cb[..., :1]).all()
  cb4 = np.asarray(T.checkerboard(4, 1))[..., 0]
  assert cb4[0, 0] == 1 and cb4[0, 1] == 0 and cb4[1, 0] == 0 and cb4[3, 3] == 1


def test_random_pattern_binary_and_deterministic():
  p = np.asarray(T.random_pattern(jax.random.key(0), 5, C))
  assert p.shape == (5, 5, C) and set(np.unique(p)) <= {0.0, 1.0}
  np.testing.assert_array_equal(p, T.random_pattern(jax.random.key(0), 5, C))


@pytest.mark.parametrize('position, margin, corner', [
    ('bottom_right', 0, (5, 7)), ('top_left', 0, (0, 0)), ('top_right', 0, (0, 7)),
    ('bottom_left', 0, (5, 0)), ('center', 0, (2, 3)), ('bottom_right', 1, (4, 6)),
    ('top_left', 2, (2, 2)), ('top_right', 1, (1, 6)), ('bottom_left', 1, (4, 1))])
def test_patch_mask_position_and_size(position, margin, corner):
  mask, (y0, x0) = T.patch_mask(HW, 3, position, margin)
  assert (y0, x0) == corner
  expected = np.zeros((*HW, 1), np.float32)
  expected[y0:y0 + 3, x0:x0 + 3] = 1
  np.testing.assert_array_equal(mask, expected)


def test_patch_mask_rejects_bad_arguments():
  with pytest.raises(ValueError, match='does not fit'):
    T.patch_mask(HW, 9)
  with pytest.raises(ValueError, match='does not fit'):
    T.patch_mask(HW, 7, 'top_left', margin=2)
  with pytest.raises(ValueError, match='position'):
    T.patch_mask(HW, 3, 'middle')


def test_place_pattern_and_trojan_mask():
  pat = np.arange(2 * 2 * C, dtype=np.float32).reshape(2, 2, C) / 12
  full = np.asarray(T.place_pattern(pat, HW, 3, 4))
  np.testing.assert_array_equal(full[3:5, 4:6], pat)
  assert full.sum() == pytest.approx(pat.sum())
  with pytest.raises(ValueError):
    T.place_pattern(pat, HW, 7, 0)
  m = np.asarray(T.trojan_mask(HW, 4))
  assert m.shape == (*HW, 1) and m.sum() == 16 and m[-4:, -4:].all()


# ---------------------------------------------------------------------- Eq. 3 / blend


@pytest.mark.parametrize('alpha', [0.2, 0.5, 1.0])
@pytest.mark.parametrize('image', ['const', 'ramp'])
def test_apply_patch_eq3(alpha, image):
  x = const(0.3) if image == 'const' else ramp()
  mask, (y0, x0) = T.patch_mask(HW, 3, 'bottom_right', margin=1)
  pattern = T.place_pattern(T.checkerboard(3, C), HW, y0, x0)
  out = np.asarray(T.apply_patch(jnp.asarray(x), pattern, mask, alpha))
  m, p, a = np.asarray(mask), np.asarray(pattern), np.float32(alpha)
  want = (1 - m) * x + m * ((1 - a) * x + a * p)
  inside = np.broadcast_to(m > 0, x.shape)
  assert out.dtype == np.float32 and out.shape == x.shape
  np.testing.assert_array_equal(out[~inside], x[~inside])  # bit-exact outside the mask
  np.testing.assert_allclose(out[inside], want[inside], rtol=0, atol=1e-6)
  if alpha == 1.0:  # opaque BadNets patch: the trigger replaces the pixels exactly
    np.testing.assert_array_equal(out[:, y0:y0 + 3, x0:x0 + 3], np.broadcast_to(
        np.asarray(T.checkerboard(3, C)), (2, 3, 3, C)))


def test_apply_patch_per_sample_alpha():
  x = const(0.5)
  mask, (y0, x0) = T.patch_mask(HW, 2, 'top_left')
  pattern = T.place_pattern(jnp.ones((2, 2, C)), HW, y0, x0)
  out = np.asarray(T.apply_patch(jnp.asarray(x), pattern, mask, jnp.array([0.2, 1.0])))
  np.testing.assert_allclose(out[0, 0, 0], 0.6, atol=1e-6)
  np.testing.assert_allclose(out[1, 0, 0], 1.0, atol=1e-6)


@pytest.mark.parametrize('alpha', [0.1, 0.2])
def test_blend_formula(alpha):
  x = ramp()
  t = np.asarray(T.noise_pattern(jax.random.key(3), HW, C))
  out = np.asarray(T.blend(jnp.asarray(x), t, alpha))
  a = np.float32(alpha)
  np.testing.assert_allclose(out, (1 - a) * x + a * t, rtol=0, atol=1e-6)


def test_noise_pattern_range_and_shape():
  t = np.asarray(T.noise_pattern(jax.random.key(0), HW, C))
  assert t.shape == (*HW, C) and t.min() >= 0 and t.max() < 1 and t.std() > 0.2


# -------------------------------------------------------------------------------- SIG


def test_sinusoid_is_columnwise():
  x = const(0.5)  # 0.5 +- 40/255 stays inside [0, 1]: no clipping
  delta, f = 40 / 255, 6
  out = np.asarray(T.sinusoid(jnp.asarray(x), delta, f))
  width = HW[1]
  col = np.float32(delta) * np.sin(2 * np.pi * np.arange(width) * f / width)
  np.testing.assert_allclose(out, x + col[None, None, :, None], atol=1e-6)
  change = out - x
  assert (change == change[:, :1]).all()  # every row changes identically
  assert (change == change[..., :1]).all()  # and every channel
  assert change[0, 0, 0, 0] == 0  # sin(0) at column 0


def test_sinusoid_clips():
  out = np.asarray(T.sinusoid(jnp.asarray(const(1.0)), 40 / 255, 6))
  assert out.max() == 1.0 and out.min() < 1.0


# ------------------------------------------------------------------------ four corner


def test_four_corner_pattern_layout():
  t = np.asarray(T.four_corner_pattern(HW, C))[..., 0]
  block = np.array([[1, -1, -1], [-1, 1, -1], [1, -1, 1]], np.float32)
  np.testing.assert_array_equal(t[:3, :3], block)
  np.testing.assert_array_equal(t[-3:, :3], block)
  np.testing.assert_array_equal(t[:3, -3:], block[:, ::-1])
  np.testing.assert_array_equal(t[-3:, -3:], block[:, ::-1])
  assert np.count_nonzero(t) == 36
  big = np.asarray(T.four_corner_pattern((32, 32), 1, size=6))[..., 0]
  np.testing.assert_array_equal(big[:6, :6], np.kron(block, np.ones((2, 2))))
  with pytest.raises(ValueError):
    T.four_corner_pattern(HW, C, size=5)


@pytest.mark.parametrize('amplitude', [16 / 255, 0.5, 1.0])
def test_four_corner_touches_only_the_corners(amplitude):
  x = ramp()
  out = np.asarray(T.apply_four_corner(jnp.asarray(x), amplitude))
  corners = np.zeros(HW, bool)
  for rows in (slice(0, 3), slice(-3, None)):
    for cols in (slice(0, 3), slice(-3, None)):
      corners[rows, cols] = True
  corners = np.broadcast_to(corners[None, :, :, None], x.shape)
  np.testing.assert_array_equal(out[~corners], x[~corners])
  t = np.asarray(T.four_corner_pattern(HW, C))
  want = np.clip(x + np.float32(amplitude) * t, 0, 1)
  np.testing.assert_allclose(out, want, atol=1e-6)
  if amplitude == 1.0:  # fully visible: pure white / black corner pixels
    assert set(np.unique(out[corners])) == {0.0, 1.0}


# ----------------------------------------------------------------------------- WaNet


def test_bicubic_matches_torch_align_corners():
  # torch.nn.functional.interpolate([0, 1, -2, 3], size=7, mode='bicubic', align_corners=True)
  ref = [0.0, 0.78125, 1.0, -0.875, -2.0, 0.21875, 3.0]
  row = W._bicubic_matrix(4, 7) @ np.array([0, 1, -2, 3], np.float32)
  np.testing.assert_allclose(row, ref, atol=1e-6)
  np.testing.assert_allclose(W._bicubic_matrix(4, 32).sum(1), 1, atol=1e-6)


def test_identity_grid_layout():
  g = np.asarray(W.identity_grid((4, 5)))
  assert g.shape == (4, 5, 2)
  np.testing.assert_allclose(g[0, :, 0], np.linspace(-1, 1, 5), atol=1e-7)  # x = column
  np.testing.assert_allclose(g[:, 0, 1], np.linspace(-1, 1, 4), atol=1e-7)  # y = row


def test_warping_field_shape_range_determinism():
  key = jax.random.key(7)
  f = np.asarray(W.warping_field(key, (32, 32)))
  assert f.shape == (32, 32, 2) and f.dtype == np.float32
  assert f.min() >= -1 and f.max() <= 1
  np.testing.assert_array_equal(f, W.warping_field(key, (32, 32)))
  assert np.abs(f - W.warping_field(jax.random.key(8), (32, 32))).max() > 1e-3
  ident = np.asarray(W.identity_grid((32, 32)))
  assert 0 < np.abs(f - ident).max() < 0.5 * 4 / 32  # s * max|noise| / H, |noise| <~ 4
  strong = np.asarray(W.warping_field(key, (16, 24), k=8, s=20.0, grid_rescale=1.2))
  assert strong.shape == (16, 24, 2) and strong.min() == -1 and strong.max() == 1


def test_warp_identity_at_s0():
  field = W.warping_field(jax.random.key(1), HW, s=0.0)
  np.testing.assert_allclose(field, W.identity_grid(HW), atol=1e-7)
  x = ramp()
  np.testing.assert_allclose(W.warp(jnp.asarray(x), field), x, atol=1e-6)


def test_warp_one_pixel_shift():
  x = ramp()
  shift = np.zeros((*HW, 2), np.float32)
  shift[..., 0] = 2 / (HW[1] - 1)
  out = np.asarray(W.warp(jnp.asarray(x), W.identity_grid(HW) + shift))
  np.testing.assert_allclose(out[:, :, :-1], x[:, :, 1:], atol=1e-5)
  assert np.abs(out[:, :, -1]).max() < 1e-4  # last column reads the zero padding


def test_warp_bilinear_midpoint_and_per_sample_grid():
  x = ramp()
  grid = np.asarray(W.identity_grid(HW)).copy()
  grid[..., 1] += 1 / (HW[0] - 1)  # half a pixel down
  grids = jnp.stack([W.identity_grid(HW), jnp.asarray(grid)])
  out = np.asarray(W.warp(jnp.asarray(x), grids))
  np.testing.assert_allclose(out[0], x[0], atol=1e-6)
  np.testing.assert_allclose(out[1, :-1], 0.5 * (x[1, :-1] + x[1, 1:]), atol=1e-6)


def test_noise_grid():
  base = W.warping_field(jax.random.key(2), (16, 16))
  g = np.asarray(W.noise_grid(jax.random.key(3), base, 5))
  assert g.shape == (5, 16, 16, 2) and g.min() >= -1 and g.max() <= 1
  dev = np.abs(g - np.asarray(base)[None])
  assert dev.max() <= 1 / 16 + 1e-6 and dev.mean() > 0.1 / 16
  assert np.abs(g[0] - g[1]).max() > 0  # fresh noise per sample
  np.testing.assert_array_equal(g, W.noise_grid(jax.random.key(3), base, 5))


# ------------------------------------------------------------------ jit and ranges


def test_strengths_are_traced_no_recompile():
  x = jnp.asarray(ramp())
  mask, (y0, x0) = T.patch_mask(HW, 3)
  pattern = T.place_pattern(T.checkerboard(3, C), HW, y0, x0)
  cases = [(T.apply_patch, (pattern, mask)), (T.blend, (pattern,)), (T.sinusoid, ()),
           (T.apply_four_corner, ())]
  for fn, args in cases:
    jfn = jax.jit(fn)
    a = jfn(x, *args, 0.2)
    b = jfn(x, *args, 0.6)
    assert jfn._cache_size() == 1, fn.__name__
    assert not np.array_equal(a, b)
  jfield = jax.jit(W.warping_field, static_argnums=(1, 2))
  jfield(jax.random.key(0), HW, 4, 0.5)
  jfield(jax.random.key(0), HW, 4, 1.0)
  assert jfield._cache_size() == 1


def test_outputs_stay_in_unit_range():
  key = jax.random.key(11)
  x = jax.random.uniform(key, (4, *HW, C))
  mask, (y0, x0) = T.patch_mask(HW, 3)
  pattern = T.place_pattern(T.random_pattern(key, 3, C), HW, y0, x0)
  field = W.warping_field(key, HW, s=2.0)
  outs = [T.apply_patch(x, pattern, mask, 1.0), T.apply_patch(x, pattern, mask, 0.37),
          T.blend(x, T.noise_pattern(key, HW, C), 0.9), T.sinusoid(x, 0.5, 3.0),
          T.apply_four_corner(x, 1.0), T.apply_four_corner(x, 0.3), W.warp(x, field),
          W.warp(x, W.noise_grid(key, field, 4))]
  for out in outs:
    out = np.asarray(out)
    assert out.shape == x.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1


# ----------------------------------------------------------------------- image files


def test_load_pattern_image(tmp_path):
  rgb = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]], np.uint8)
  path = str(tmp_path / 'trigger.png')
  Image.fromarray(rgb).save(path)
  p = np.asarray(T.load_pattern_image(path, (2, 2), 3))
  assert p.dtype == np.float32
  np.testing.assert_array_equal(p, rgb / np.float32(255))
  big = np.asarray(T.load_pattern_image(path, (8, 6), 3))
  assert big.shape == (8, 6, 3) and big.min() >= 0 and big.max() <= 1
  grey = np.asarray(T.load_pattern_image(path, (2, 2), 1))
  assert grey.shape == (2, 2, 1) and grey[1, 1, 0] == 1.0


def test_load_pattern_image_missing_file(tmp_path):
  path = str(tmp_path / 'no_such_kitty.png')
  with pytest.raises(FileNotFoundError, match='attack.pattern_file') as e:
    T.load_pattern_image(path, (32, 32), 3)
  assert 'no_such_kitty.png' in str(e.value)
