"""The trigger gallery: figure data checked pixel by pixel, PNGs written and readable, and
the command line on synthetic colour images."""

import dataclasses
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from abd_jax import config as config_lib
from abd_jax import gallery, plots
from abd_jax.data import load_dataset
from abd_jax.errors import ConfigError
from abd_jax.poison import poison_dataset
from cli import REPO, cli_env

ATTACKS = ('badnets', 'blended', 'sig', 'wanet')


def digits_config(size=16):
  c = config_lib.apply_digits_scale(config_lib.base_config())
  c.dataset.image_size = size
  return c


def synthetic_config(size=32):
  c = config_lib.base_config()
  c.dataset.update(name='synthetic', image_size=size, channels=3, num_train=200, num_test=40)
  return c


def check_png(path, min_side=200):
  assert os.path.isfile(path), path
  with Image.open(path) as im:
    assert im.format == 'PNG'
    assert min(im.size) >= min_side, im.size
    pixels = np.asarray(im.convert('L'))
  assert pixels.std() > 10, f'{path} looks blank'


# ------------------------------------------------------------------------- figure data


def test_badnets_changes_only_the_patch():
  config = gallery.attack_config(digits_config(16), 'badnets')
  data = load_dataset(config.dataset, config.seed)
  rows = gallery.gallery_rows(config, data, num=4, strengths=(0.2, 1.0))
  n, h, w, c = rows.clean.shape
  assert (n, h, w, c) == (4, 16, 16, 1) and rows.poisoned.dtype == np.uint8

  y0, x0 = rows.params['corner']
  k = config.attack.patch_size
  assert (y0, x0) == (h - k, w - k)  # bottom right
  inside = np.zeros((h, w), bool)
  inside[y0:, x0:] = True
  changed = (rows.poisoned != rows.clean).any(-1)
  assert not changed[:, ~inside].any(), 'pixels outside the patch changed'
  assert changed[:, inside].any(-1).all(), 'an image did not get the patch'
  # alpha = 1 stamps the checkerboard itself: white where the board is 1, black elsewhere.
  board = np.asarray(rows.poisoned[:, y0:, x0:, 0])
  checker = 255 * np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]])
  np.testing.assert_array_equal(board, np.broadcast_to(checker, board.shape))

  # Dirty label: distinct non-target classes, all relabelled to the target.
  assert len(set(rows.labels.tolist())) == 4 and config.attack.target not in rows.labels
  assert (rows.new_labels == config.attack.target).all()
  # Training poison and test trigger agree at the attack's own strength; the strip's
  # alpha = 0.2 is a fainter version of the same patch.
  np.testing.assert_array_equal(rows.triggered, rows.poisoned)
  np.testing.assert_array_equal(rows.strip[1], rows.poisoned)
  faint = np.abs(rows.strip[0].astype(int) - rows.clean.astype(int))
  assert 0 < faint.max() <= round(0.2 * 255) + 1 and not faint[:, ~inside].any()


def test_sig_residual_is_the_same_in_every_row():
  # A mid-grey image never clips, so the residual is exactly the sinusoid: constant down
  # each column (vertical stripes), varying across columns.
  config = gallery.attack_config(synthetic_config(), 'sig')
  data = load_dataset(config.dataset, config.seed)
  data = dataclasses.replace(data, x_train=np.full_like(data.x_train, 128))
  rows = gallery.gallery_rows(config, data, num=2)
  diff = rows.poisoned.astype(int) - rows.clean.astype(int)
  assert (diff == diff[:, :1]).all()
  assert np.ptp(diff[0, 0, :, 0]) > 2 * 0.9 * config.attack.sig_delta * 255


def test_attacks_match_the_ones_a_run_builds(tmp_path):
  # Same seed -> the same blended noise and WaNet field as `poison_dataset` draws.
  for name in ('blended', 'wanet'):
    config = gallery.attack_config(synthetic_config(16), name)
    data = load_dataset(config.dataset, config.seed)
    ours, _, _ = gallery.build_attack(config, data, str(tmp_path))
    theirs = poison_dataset(config, data).attack
    x = jax.numpy.asarray(data.x_test[:4], jax.numpy.float32) / 255.0
    np.testing.assert_array_equal(np.asarray(ours.trigger(x, 0.5)),
                                  np.asarray(theirs.trigger(x, 0.5)))


def test_clean_label_rows_use_the_target_class():
  config = digits_config(0)
  config.attack.update(label_mode='clean', target=3)
  config = gallery.attack_config(config, 'blended')
  data = load_dataset(config.dataset, config.seed)
  rows = gallery.gallery_rows(config, data, num=3)
  assert (rows.labels == 3).all() and (rows.new_labels == 3).all()


def test_default_attacks_skip_the_ones_needing_a_model():
  names = gallery.default_attacks()
  assert set(ATTACKS) <= set(names) and not set(names) & {'lc', 'trojan'}
  with pytest.raises(ConfigError, match='attack.name'):
    gallery.attack_config(digits_config(), 'nope')


# ------------------------------------------------------------------------------ plots


def test_show_residual_ranges():
  clean = np.full((4, 4, 1), 100, np.uint8)
  poisoned = clean.copy()
  poisoned[0, 0] = 110
  poisoned[1, 1] = 95
  r = plots.show_residual(clean, poisoned)
  assert r.dtype == np.float32 and r.max() == pytest.approx(1.0) and r[2, 2, 0] == 0.0
  s = plots.show_residual(clean, poisoned, signed=True)
  assert s[2, 2, 0] == pytest.approx(0.5) and s[0, 0, 0] == pytest.approx(1.0)
  assert s[1, 1, 0] == pytest.approx(0.25)
  assert plots.residual_gain(clean, clean) == 1.0  # nothing changed: nothing amplified


def test_save_image_grid_mixed_cells(tmp_path):
  grey = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8, 1)
  rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
  path = plots.save_image_grid(str(tmp_path / 'sub' / 'grid.png'), [[grey, rgb, None], [rgb]],
                               ['a', 'b'], ['x', 'y', 'z'], title='t')
  check_png(path, min_side=150)
  with pytest.raises(ValueError):
    plots.save_image_grid(str(tmp_path / 'bad.png'), [[grey]], ['a', 'b'], ['x'])


# ------------------------------------------------------------------------------ galleries


def test_make_gallery_on_upsampled_digits(tmp_path):
  paths = gallery.make_gallery(digits_config(16), str(tmp_path), ATTACKS, num=3,
                               strengths=(0.2, 1.0))
  expected = [str(tmp_path / f'gallery_{a}.png') for a in ATTACKS] + [str(tmp_path / 'gallery.png')]
  assert paths == expected
  for path in paths:
    check_png(path)
  assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in expected)


def test_command_line_on_synthetic_rgb(tmp_path):
  out = tmp_path / 'gallery'
  proc = subprocess.run(
      [sys.executable, '-m', 'abd_jax.gallery', '--config=configs/quickstart.py',
       f'--out={out}', '--config.dataset.name=synthetic', '--config.dataset.image_size=32',
       '--config.dataset.num_train=200', f'--attacks={",".join(ATTACKS)}', '--num=2',
       '--alphas=0.2,1.0', '--residual=signed'],
      cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  printed = proc.stdout.split()
  assert printed == [str(out / f'gallery_{a}.png') for a in ATTACKS] + [str(out / 'gallery.png')]
  for path in printed:
    check_png(path)
  with Image.open(out / 'gallery_badnets.png') as im:
    assert im.mode in ('RGB', 'RGBA')
