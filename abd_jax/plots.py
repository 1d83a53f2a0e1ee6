"""Figure helpers: small independent functions that turn arrays into PNG files.

Every function takes plain numpy arrays and a path, draws one figure with the Agg backend
(no display needed, safe in tests and on headless machines) and closes it again.

    save_image_grid('out/gallery.png', rows, row_labels, col_labels, title='Triggers')
    residual = show_residual(clean, poisoned)   # |x~ - x|, amplified to [0, 1]
"""

from __future__ import annotations

import os
from typing import Sequence

import matplotlib

# Before pyplot is imported: the default backend may try to open a window.
matplotlib.use('Agg')

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# Inches per image cell: an 8x8 or 32x32 image fills it with big, sharp pixels.
CELL_INCHES = 1.35
DPI = 110


def to_display(image: np.ndarray) -> np.ndarray:
  """One image for `imshow`: float [H,W] (grey) or [H,W,3] (RGB) in [0, 1].

  `image` is [H,W], [H,W,1] or [H,W,3], either uint8 in 0..255 or float in [0, 1]
  (clipped, so values just outside the range from rounding are harmless).
  """
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
    raise ValueError(f'expected an image [H,W], [H,W,1] or [H,W,3], got shape {image.shape}')
  if image.dtype == np.uint8:
    return image.astype(np.float32) / 255.0
  return np.clip(image.astype(np.float32), 0.0, 1.0)


def _as_float(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x)
  return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)


def residual_gain(clean: np.ndarray, poisoned: np.ndarray, signed: bool = False,
                  max_gain: float = 50.0) -> float:
  """The factor `show_residual` uses by default: the largest |x~ - x| maps to full range.

  Computed over the whole input, so pass a batch [B,H,W,C] to scale every image of a
  figure alike (rows stay comparable). Capped at `max_gain` so that rounding noise of an
  (almost) unchanged image is not blown up into a picture; 1.0 when nothing changed.
  """
  diff = np.abs(_as_float(poisoned) - _as_float(clean))
  peak = float(diff.max()) if diff.size else 0.0
  if peak == 0.0:
    return 1.0
  full = 0.5 if signed else 1.0  # a signed residual has half the range on each side
  return float(min(full / peak, max_gain))


def show_residual(clean: np.ndarray, poisoned: np.ndarray, signed: bool = False,
                  gain: float | None = None) -> np.ndarray:
  """The trigger's footprint x~ - x, amplified to a visible range.

  clean, poisoned: same shape (one image [H,W,C] or a batch [B,H,W,C]), uint8 in 0..255
  or float in [0, 1]. Returns float32 of that shape in [0, 1]:

    signed=False: gain * |x~ - x|          (black = unchanged, white = changed most)
    signed=True:  0.5 + gain * (x~ - x)    (grey = unchanged, bright = added, dark = removed)

  `gain` defaults to `residual_gain(clean, poisoned, signed)`. Colour images keep one
  residual per channel, so a trigger that differs between channels shows in colour.
  """
  c, p = _as_float(clean), _as_float(poisoned)
  if c.shape != p.shape:
    raise ValueError(f'clean {c.shape} and poisoned {p.shape} images differ in shape')
  if gain is None:
    gain = residual_gain(c, p, signed)
  out = 0.5 + gain * (p - c) if signed else gain * np.abs(p - c)
  return np.clip(out, 0.0, 1.0).astype(np.float32)


def save_image_grid(path: str, rows: Sequence[Sequence[np.ndarray | None]],
                    row_labels: Sequence[str], col_labels: Sequence[str],
                    title: str | None = None) -> str:
  """Draws `rows` as a table of images and writes it to `path` (PNG); returns `path`.

  rows[i][j]: an image as `to_display` takes it (uint8 or float [0,1], grey or RGB), or
  None for an empty cell; rows may be shorter than `col_labels`. Pixels are drawn as
  blocks (nearest-neighbour), never smoothed: triggers are often a few pixels wide, and
  interpolation would smear exactly what the figure is meant to show. Grey images use a
  fixed 0..1 grey scale, not one stretched to each image's own range, so brightness is
  comparable across cells.
  """
  n_rows, n_cols = len(rows), len(col_labels)
  if len(row_labels) != n_rows:
    raise ValueError(f'{len(row_labels)} row labels for {n_rows} rows')
  if any(len(r) > n_cols for r in rows):
    raise ValueError(f'a row has more images than the {n_cols} column labels')
  fig, axes = plt.subplots(n_rows, n_cols, squeeze=False,
                           figsize=(CELL_INCHES * n_cols + 0.9,
                                    CELL_INCHES * n_rows + (0.75 if title else 0.4)))
  for i, row in enumerate(rows):
    for j in range(n_cols):
      ax = axes[i, j]
      ax.set_xticks([])
      ax.set_yticks([])
      image = row[j] if j < len(row) else None
      if image is None:
        ax.axis('off')
        continue
      image = to_display(image)
      ax.imshow(image, cmap='gray' if image.ndim == 2 else None, vmin=0.0, vmax=1.0,
                interpolation='nearest')
      if i == 0:
        ax.set_title(col_labels[j], fontsize=8)
      if j == 0:
        ax.set_ylabel(row_labels[i], fontsize=8)
  # Empty first-row / first-column cells would otherwise leave a column or row unlabeled.
  for j in range(n_cols):
    if not axes[0, j].get_title():
      axes[0, j].set_title(col_labels[j], fontsize=8)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=DPI)
  plt.close(fig)
  return path
