"""Figure helpers: small independent functions that turn arrays into PNG files.

Every function takes plain numpy arrays and a path, draws one figure with the Agg backend
(no display needed, safe in tests and on headless machines) and closes it again.

    save_image_grid('out/gallery.png', rows, row_labels, col_labels, title='Triggers')
    residual = show_residual(clean, poisoned)   # |x~ - x|, amplified to [0, 1]
"""

from __future__ import annotations

import functools
import os
from typing import Sequence

import numpy as np

# Inches per image cell: an 8x8 or 32x32 image fills it with big, sharp pixels.
CELL_INCHES = 1.35
DPI = 110


@functools.cache
def pyplot():
  """matplotlib.pyplot with the Agg backend, imported on first use: it takes ~0.5 s, which
  every run that draws nothing would pay."""
  import matplotlib
  matplotlib.use('Agg')  # before pyplot: the default backend may try to open a window
  import matplotlib.pyplot as plt
  return plt


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
  fig, axes = pyplot().subplots(n_rows, n_cols, squeeze=False,
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
  pyplot().close(fig)
  return path


# ---------------------------------------------------------------- defense score figures

CLEAN_COLOR = 'tab:blue'
POISONED_COLOR = 'tab:red'
MAX_PANELS = 6


def _sample_arrays(**named: np.ndarray) -> dict[str, np.ndarray]:
  """The arrays as 1-D numpy, checked to hold one entry per sample each (ValueError naming them)."""
  out = {name: np.asarray(a) for name, a in named.items()}
  for name, a in out.items():
    if a.ndim != 1:
      raise ValueError(f'{name} must be 1-D (one entry per sample), got shape {a.shape}')
  lengths = {name: len(a) for name, a in out.items()}
  if len(set(lengths.values())) > 1:
    raise ValueError('arrays must have one entry per sample, but '
                     + ', '.join(f'{name} has {n}' for name, n in lengths.items()))
  if not next(iter(lengths.values())):
    raise ValueError(f'no samples: {", ".join(lengths)} are empty')
  return out


def _finite_values(name: str, values: np.ndarray) -> np.ndarray:
  values = values.astype(np.float64)
  if not np.all(np.isfinite(values)):
    raise ValueError(f'{name} must be finite, got {int((~np.isfinite(values)).sum())} NaN/inf')
  return values


def _shared_bins(values: np.ndarray, num: int = 60) -> np.ndarray:
  """`num` equal bins over the range of `values`; a small range around a single value."""
  lo, hi = float(values.min()), float(values.max())
  if hi <= lo:  # all identical: np.histogram would still work, but the axis would be 1e-15 wide
    pad = 0.05 * abs(lo) if lo else 0.5
    lo, hi = lo - pad, hi + pad
  return np.linspace(lo, hi, num + 1)


def _group_hists(ax, values: np.ndarray, poisoned: np.ndarray, bins: np.ndarray,
                 **kwargs) -> list[str]:
  """Clean and poisoned histograms of `values` on `ax`; returns the groups drawn (not empty)."""
  drawn = []
  for group, mask, color in (('clean', ~poisoned, CLEAN_COLOR),
                             ('poisoned', poisoned, POISONED_COLOR)):
    if not mask.any():
      continue
    ax.hist(values[mask], bins=bins, color=color, alpha=0.45, histtype='stepfilled',
            edgecolor=color, linewidth=1.0, label=f'{group} (n={int(mask.sum())})', **kwargs)
    drawn.append(group)
  return drawn


def _text_box(ax, text: str) -> None:
  ax.text(0.02, 0.97, text, transform=ax.transAxes, ha='left', va='top', fontsize=8,
          bbox=dict(boxstyle='round', facecolor='white', edgecolor='0.6', alpha=0.9))


def _save(fig, path: str, title: str) -> None:
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=DPI)
  pyplot().close(fig)


def _panel_epochs(epochs: Sequence[int], limit: int = MAX_PANELS) -> list[int]:
  """At most `limit` of the sorted `epochs`, evenly spaced, always including the first and last."""
  epochs = sorted(epochs)
  if len(epochs) <= limit:
    return epochs
  # Spacing >= 1 once len > limit, so rounding never picks the same epoch twice.
  idx = np.round(np.linspace(0, len(epochs) - 1, limit)).astype(int)
  return [epochs[i] for i in idx]


def step_count_densities(path: str, counts_by_epoch: dict[int, np.ndarray], poisoned: np.ndarray,
                         max_steps: int, title: str = '') -> dict:
  """Density of the PGD steps that flip each training sample, one panel per epoch (ICLR'22 Fig. 5).

  counts_by_epoch: {epoch: int [N] in 0..max_steps+1}, max_steps+1 meaning capped (not
  flipped within `max_steps`, drawn as the last bin '>max_steps'); poisoned: bool [N].
  More than 6 epochs are thinned to 6 evenly spaced ones including the last. Panels share
  the y axis so that densities compare across epochs.

  Returns {'path', 'panels': [epochs drawn], 'groups': ['clean', 'poisoned'] or fewer}.
  """
  if not counts_by_epoch:
    raise ValueError('counts_by_epoch is empty: no epoch to draw')
  if max_steps < 0:
    raise ValueError(f'max_steps must be >= 0, got {max_steps}')
  checked = {}
  for e in counts_by_epoch:
    arrays = _sample_arrays(**{f'counts_by_epoch[{e}]': counts_by_epoch[e], 'poisoned': poisoned})
    counts = arrays[f'counts_by_epoch[{e}]']
    if counts.min() < 0 or counts.max() > max_steps + 1:
      raise ValueError(f'counts_by_epoch[{e}] must lie in 0..max_steps+1 = 0..{max_steps + 1}, '
                       f'got {counts.min()}..{counts.max()}')
    checked[e] = counts.astype(np.int64)
  poisoned = np.asarray(poisoned).astype(bool)
  epochs = _panel_epochs(list(checked))

  # One unit bin per count; the axis ends at the largest count drawn, or at the "capped"
  # bin when some sample was capped.
  capped = any((checked[e] > max_steps).any() for e in epochs)
  last = max_steps + 1 if capped else int(max(checked[e].max() for e in epochs))
  bins = np.arange(last + 2) - 0.5
  stride = max(1, int(np.ceil((last + 1) / 8)))  # keep ~8 tick labels however long the axis
  ticks = list(range(0, last if capped else last + 1, stride))
  labels = [str(t) for t in ticks]
  if capped:
    ticks, labels = ticks + [max_steps + 1], labels + [f'>{max_steps}']

  n = len(epochs)
  fig, axes = pyplot().subplots(1, n, squeeze=False, sharey=True, figsize=(3.2 * n + 0.6, 3.2))
  groups: list[str] = []
  for ax, e in zip(axes[0], epochs):
    groups = _group_hists(ax, checked[e], poisoned, bins, density=True)
    ax.set_title(f'epoch {e}', fontsize=9)
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_xlim(bins[0], bins[-1])
    ax.set_xlabel('PGD steps to flip the prediction', fontsize=8)
  axes[0, 0].set_ylabel('density', fontsize=8)
  axes[0, 0].legend(fontsize=7, loc='upper right')
  _save(fig, path, title)
  return {'path': path, 'panels': epochs, 'groups': groups}


def loss_split_histogram(path: str, losses: np.ndarray, poisoned: np.ndarray, threshold: float,
                         xlabel: str = 'symmetric cross-entropy after iFGSM',
                         title: str = '', threshold_name: str = 'Otsu threshold',
                         selected: str = 'kept', selected_below: bool = False,
                         selected_mask: np.ndarray | None = None) -> dict:
  """Per-sample loss of clean vs poisoned samples, split at a threshold (A-ABL Fig. 4/9:
  Otsu's; ABL: the isolation threshold).

  losses: float [N] (finite); poisoned: bool [N]; threshold: t. The `selected` samples
  are those with loss > t (A-ABL's kept D_vul), or loss <= t with `selected_below` (ABL's
  isolated ones); `selected_mask` (bool [N]) gives them exactly where ties at t would
  blur the count. The y axis is logarithmic so that a poisoned group of a few percent
  stays visible next to the clean one.

  Returns {'path', 'groups', 'kept_clean', 'total_clean', 'kept_poisoned', 'total_poisoned'}
  ('kept' = selected).
  """
  arrays = _sample_arrays(losses=losses, poisoned=poisoned)
  losses = _finite_values('losses', arrays['losses'])
  poisoned = arrays['poisoned'].astype(bool)
  kept = losses <= threshold if selected_below else losses > threshold
  if selected_mask is not None:
    kept = np.asarray(selected_mask, bool)
  stats = {'kept_clean': int((kept & ~poisoned).sum()), 'total_clean': int((~poisoned).sum()),
           'kept_poisoned': int((kept & poisoned).sum()), 'total_poisoned': int(poisoned.sum())}

  bins = _shared_bins(losses)
  fig, ax = pyplot().subplots(figsize=(6.4, 4.0))
  groups = _group_hists(ax, losses, poisoned, bins, log=True)
  ax.axvline(threshold, color='black', linestyle='--', linewidth=1.2,
             label=f'{threshold_name} = {threshold:.3g}')
  # Headroom above the tallest bar (log scale) for the legend and the text box; no group
  # bin is taller than the bin of both groups together.
  tallest = int(np.histogram(losses, bins=bins)[0].max())
  ax.set_ylim(0.5, tallest * 40)
  ax.set_xlabel(xlabel, fontsize=9)
  ax.set_ylabel('samples (log scale)', fontsize=9)
  ax.legend(fontsize=8, loc='upper right')
  _text_box(ax, f"{selected} (loss {'<=' if selected_below else '>'} t): "
                f"clean {stats['kept_clean']}/{stats['total_clean']}, "
                f"poisoned {stats['kept_poisoned']}/{stats['total_poisoned']}")
  _save(fig, path, title)
  return {'path': path, 'groups': groups, **stats}


def score_histogram(path: str, scores: np.ndarray, poisoned: np.ndarray, removed: np.ndarray,
                    xlabel: str, title: str = '') -> dict:
  """Detection score of clean vs poisoned samples (spectral signatures, activation clustering).

  scores: float [N] (finite); poisoned, removed: bool [N], `removed` the samples the
  defense drops. Both groups share one set of 60 bins over the range of `scores`.

  Returns {'path', 'groups', 'removed_poisoned', 'total_poisoned', 'removed_clean', 'total_clean'}.
  """
  arrays = _sample_arrays(scores=scores, poisoned=poisoned, removed=removed)
  scores = _finite_values('scores', arrays['scores'])
  poisoned = arrays['poisoned'].astype(bool)
  removed = arrays['removed'].astype(bool)
  stats = {'removed_poisoned': int((removed & poisoned).sum()),
           'total_poisoned': int(poisoned.sum()),
           'removed_clean': int((removed & ~poisoned).sum()), 'total_clean': int((~poisoned).sum())}

  fig, ax = pyplot().subplots(figsize=(6.4, 4.0))
  groups = _group_hists(ax, scores, poisoned, _shared_bins(scores))
  _, top = ax.get_ylim()
  ax.set_ylim(0, top * 1.3)  # headroom for the legend and the text box
  ax.set_xlabel(xlabel, fontsize=9)
  ax.set_ylabel('samples', fontsize=9)
  ax.legend(fontsize=8, loc='upper right')
  _text_box(ax, f"removed: poisoned {stats['removed_poisoned']}/{stats['total_poisoned']}, "
                f"clean {stats['removed_clean']}/{stats['total_clean']}")
  _save(fig, path, title)
  return {'path': path, 'groups': groups, **stats}


def pruning_curves(path: str, curve: Sequence[dict], search: Sequence[dict] | None,
                   chosen: float, target: float | None = None, title: str = '') -> dict:
  """Fine-pruning: clean accuracy and ASR against the pruning ratio, before fine-tuning
  (`curve`: dicts with 'ratio', 'clean_acc' and optionally 'asr') and, when the ratio was
  searched, after it (`search`, same keys); the chosen ratio dashed, the target accuracy
  dotted. Returns {'path', 'ratios', 'chosen'}."""
  fig, ax = pyplot().subplots(figsize=(6.4, 4.0))
  ratios = [c['ratio'] for c in curve]
  ax.plot(ratios, [c['clean_acc'] for c in curve], 'o-', color='tab:blue', ms=3,
          label='clean acc., pruned')
  if all('asr' in c for c in curve):
    ax.plot(ratios, [c['asr'] for c in curve], 'o-', color='tab:red', ms=3, label='ASR, pruned')
  if search:
    sr = [s['ratio'] for s in search]
    ax.plot(sr, [s['clean_acc'] for s in search], 's--', color='tab:blue', ms=4, mfc='none',
            label='clean acc., fine-tuned')
    if all('asr' in s for s in search):
      ax.plot(sr, [s['asr'] for s in search], 's--', color='tab:red', ms=4, mfc='none',
              label='ASR, fine-tuned')
  ax.axvline(chosen, color='black', linestyle='--', linewidth=1.0, label=f'chosen {chosen:g}')
  if target is not None:
    ax.axhline(target, color='gray', linestyle=':', linewidth=1.0, label=f'target {target:g}')
  ax.set_xlim(-0.02, 1.0)
  ax.set_ylim(-0.02, 1.12)
  ax.set_xlabel('fraction of last-stage channels pruned', fontsize=9)
  ax.set_ylabel('accuracy / attack success rate', fontsize=9)
  ax.legend(fontsize=7, loc='lower left')
  _save(fig, path, title)
  return {'path': path, 'ratios': ratios, 'chosen': chosen}
