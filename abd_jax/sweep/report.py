"""A sweep's results: one row per point, written as CSV / JSONL, a console table, figures.

    rows = report.result_rows(points, results, errors)
    report.write_csv(os.path.join(workdir, 'results.csv'), rows)
    print(report.format_table(rows, metrics=block.metrics))
    report.write_figures(workdir, grid.axes_of(block), rows, block.metrics)

Figures follow the axes other than the seeds: two give a heat map (x the first axis, y the
second) and a line plot with one line per value of the second axis (as ASR vs eps, one line
per alpha, in the ICLR'22 paper's Fig. 3a); one gives a line plot; more give one heat-map
panel per combination of the others. Several seeds are averaged: mean±std (population std).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from abd_jax import plots
from abd_jax.sweep import grid
from abd_jax.sweep.grid import DEFAULT_METRICS, SEED_FIELD, Axis, Point


# ------------------------------------------------------------------------ rows and files


def result_rows(points: Sequence[Point], results: Mapping[str, Mapping | None],
                errors: Mapping[str, str] | None = None) -> list[dict]:
  """One dict per point in grid order: `point` (its name), every swept field under its
  dotted name (`seed` last), then every result key (the union over points, in order of
  first appearance; None where a point has no result), then `error` (None for points
  without one) if any point failed. `results` and `errors` are keyed by point name."""
  errors = errors or {}
  keys: dict[str, None] = {}  # an ordered set
  for p in points:
    keys.update(dict.fromkeys(results.get(p.name) or {}))
  rows = []
  for p in points:
    result = results.get(p.name) or {}
    row = {'point': p.name, **p.overrides}
    for key in keys:
      row.setdefault(key, result.get(key))  # a result never replaces a swept value
    if errors:
      row['error'] = errors.get(p.name)
    rows.append(row)
  return rows


def columns_of(rows: Sequence[Mapping]) -> list[str]:
  """The union of the rows' keys in order of first appearance."""
  columns: dict[str, None] = {}
  for row in rows:
    columns.update(dict.fromkeys(row))
  return list(columns)


def _plain(value: Any) -> Any:
  """JSON-able: numpy scalars as Python ones, tuples as lists."""
  if isinstance(value, Mapping):
    return {k: _plain(v) for k, v in value.items()}
  value = grid.tupled(value)
  return [_plain(v) for v in value] if isinstance(value, tuple) else value


def _atomic_write(path: str, write: Callable) -> str:
  """write(file), into `path + '.tmp'` renamed over `path`: a kill never leaves half a file."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + '.tmp'
  with open(tmp, 'w', newline='') as f:
    write(f)
  os.replace(tmp, path)
  return path


def write_csv(path: str, rows: Sequence[Mapping]) -> str:
  """`rows` as CSV: the header is `columns_of(rows)`; floats as repr (exact, and the same
  bytes on every rewrite), tuples as Python literals, None as an empty cell."""
  columns = columns_of(rows)

  def write(f):
    out = csv.writer(f, lineterminator='\n')
    out.writerow(columns)
    for row in rows:
      out.writerow(['' if row.get(c) is None else grid.flag_value(row[c]) for c in columns])

  return _atomic_write(path, write)


def write_jsonl(path: str, rows: Sequence[Mapping]) -> str:
  """`rows` as JSON lines, keys in row order (json writes floats as repr)."""
  return _atomic_write(path, lambda f: f.writelines(json.dumps(_plain(row)) + '\n'
                                                    for row in rows))


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def format_table(rows: Sequence[Mapping], columns: Sequence[str] | None = None,
                 metrics: Sequence[str] = DEFAULT_METRICS, max_width: int = 48) -> str:
  """A plain-text table for the console. `columns` defaults to the swept fields (the dotted
  ones and `seed`), the `metrics` present and `error`. Floats with 4 decimals, missing
  values '-', text cut to `max_width` characters."""
  if columns is None:
    present = columns_of(rows)
    columns = ([c for c in present if '.' in c or c == SEED_FIELD]
               + [m for m in metrics if m in present] + [c for c in ('error',) if c in present])

  def cell(value: Any) -> str:
    if value is None or value == '':
      return '-'
    text = f'{value:.4f}' if isinstance(value, (float, np.floating)) else str(value)
    return text if len(text) <= max_width else text[:max_width - 3] + '...'

  table = [[cell(row.get(c)) for c in columns] for row in rows]
  widths = [max([len(c)] + [len(r[i]) for r in table]) for i, c in enumerate(columns)]
  numeric = [all(_is_number(row.get(c)) or row.get(c) is None for row in rows) for c in columns]

  def line(cells: Sequence[str]) -> str:
    return '  '.join(t.rjust(w) if num else t.ljust(w)
                     for t, w, num in zip(cells, widths, numeric)).rstrip()

  return '\n'.join([line(columns), line(['-' * w for w in widths])] + [line(r) for r in table])


# ------------------------------------------------------------------------ aggregation


def plot_axes(axes: Sequence[Axis]) -> list[Axis]:
  """The axes figures are drawn over: all but the seeds."""
  return [ax for ax in axes if ax.fields != (SEED_FIELD,)]


def _number(value: Any) -> float:
  return float(value) if _is_number(value) else math.nan


def aggregate(axes: Sequence[Axis], rows: Sequence[Mapping], metric: str
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(mean, std, count) of `metric` over seeds, each float/int [len(a.values) for a in
  plot_axes(axes)], indexed by the position of each axis value. Cells without a result
  (missing, None or not a number) are NaN with count 0; std is the population std (0 for
  one seed). Rows are matched to cells by their field values, so their order is free."""
  swept = plot_axes(axes)
  index = [{row: i for i, row in enumerate(ax.values)} for ax in swept]
  samples: dict[tuple, list[float]] = {}
  for row in rows:
    try:
      cell = tuple(ix[grid.tupled(tuple(row[f] for f in ax.fields))]
                   for ix, ax in zip(index, swept))
    except KeyError:  # a row of a point outside this grid
      continue
    value = _number(row.get(metric))
    if not math.isnan(value):
      samples.setdefault(cell, []).append(value)
  shape = tuple(len(ax.values) for ax in swept)
  mean, std, count = np.full(shape, np.nan), np.full(shape, np.nan), np.zeros(shape, np.int64)
  for cell, values in samples.items():
    mean[cell], std[cell], count[cell] = np.mean(values), np.std(values), len(values)
  return mean, std, count


def cell_text(mean: np.ndarray, std: np.ndarray, count: np.ndarray, spread: bool) -> np.ndarray:
  """The text of heat-map cells: 'm' (2 decimals), 'm±s' when `spread` (several seeds), '–'
  for a cell without results. Same shape as `mean`."""
  text = np.full(mean.shape, '–', dtype=object)
  for i in np.ndindex(mean.shape):
    if count[i]:
      text[i] = f'{mean[i]:.2f}±{std[i]:.2f}' if spread else f'{mean[i]:.2f}'
  return text


# ------------------------------------------------------------------------ figures


def is_fraction(metric: str) -> bool:
  """Metrics drawn on a fixed [0, 1] scale (accuracies and rates)."""
  return metric == 'asr' or metric.endswith(('_acc', '_asr', '_rate'))


def axis_title(ax: Axis) -> str:
  """'perturb.eps', or for a zip 'perturb.eps (+ perturb.step_size)'."""
  return ax.fields[0] + (f' (+ {", ".join(ax.fields[1:])})' if len(ax.fields) > 1 else '')


def _save(fig, path: str, title: str) -> str:
  fig.suptitle(title, fontsize=11)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=plots.DPI)
  plots.pyplot().close(fig)
  return path


def _color_range(metric: str, mean: np.ndarray) -> tuple[float, float]:
  if is_fraction(metric):
    return 0.0, 1.0
  lo, hi = float(np.nanmin(mean)), float(np.nanmax(mean))
  return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def _heatmap_panel(ax, mean, std, count, spread, x_axis, y_axis, vmin, vmax):
  """mean, std, count: [len(x_axis.values), len(y_axis.values)]."""
  image = ax.imshow(mean.T, origin='lower', aspect='auto', cmap='viridis', vmin=vmin, vmax=vmax)
  text = cell_text(mean, std, count, spread)
  for i, j in np.ndindex(mean.shape):
    # Light text on the dark (low) end of viridis; empty cells are white.
    dark = bool(count[i, j]) and (mean[i, j] - vmin) / (vmax - vmin) < 0.5
    ax.text(i, j, text[i, j], ha='center', va='center', fontsize=7,
            color='white' if dark else 'black')
  ax.set_xticks(range(len(x_axis.values)), grid.axis_labels(x_axis), fontsize=8)
  ax.set_yticks(range(len(y_axis.values)), grid.axis_labels(y_axis), fontsize=8)
  ax.set_xlabel(axis_title(x_axis), fontsize=9)
  ax.set_ylabel(axis_title(y_axis), fontsize=9)
  return image


def _heatmap(path, metric, swept, mean, std, count, spread):
  """One panel, or one per combination of the values of the axes after the second."""
  extra = swept[2:]
  combos = list(itertools.product(*(range(len(ax.values)) for ax in extra)))
  cols = math.ceil(math.sqrt(len(combos)))
  rows = math.ceil(len(combos) / cols)
  nx, ny = len(swept[0].values), len(swept[1].values)
  # Cells wide enough for 'm±s' at 7 pt; room for tick labels, axis labels and titles.
  size = (cols * (0.95 * nx + 1.8) + 1.0, rows * (0.55 * ny + 1.4) + 0.5)
  fig, panels = plots.pyplot().subplots(rows, cols, squeeze=False, layout='constrained', figsize=size)
  vmin, vmax = _color_range(metric, mean)
  labels = [grid.axis_labels(ax) for ax in extra]
  for panel, combo in zip(panels.flat, combos):
    cell = (slice(None), slice(None)) + combo
    image = _heatmap_panel(panel, mean[cell], std[cell], count[cell], spread, swept[0], swept[1],
                           vmin, vmax)
    if extra:
      panel.set_title(', '.join(f'{ax.name}={lab[i]}' for ax, lab, i in zip(extra, labels, combo)),
                      fontsize=9)
  for panel in panels.flat[len(combos):]:
    panel.axis('off')
  fig.colorbar(image, ax=panels.ravel().tolist(), label=metric)
  return _save(fig, path, metric)


def _line_positions(ax: Axis) -> tuple[list[float], list[str] | None]:
  """x of each value of `ax` (its first field): the value when all are numbers, else the
  position, with the values as tick labels."""
  first = [row[0] for row in ax.values]
  if all(_is_number(v) for v in first):
    return [float(v) for v in first], None
  return list(range(len(first))), grid.axis_labels(ax)


def _line(path, metric, swept, mean, std, count, spread):
  """x = the first axis; one line per value of the second axis when there is one."""
  xs, ticks = _line_positions(swept[0])
  fig, ax = plots.pyplot().subplots(figsize=(6.4, 4.2), layout='constrained')
  if len(swept) == 1:
    series = [(None, mean, std)]
  else:
    labels = grid.axis_labels(swept[1])
    series = [(f'{swept[1].fields[0]}={labels[j]}', mean[:, j], std[:, j])
              for j in range(len(labels))]
  for label, m, s in series:
    ax.errorbar(xs, m, yerr=s if spread else None, marker='o', capsize=3, label=label)
  if ticks is not None:
    ax.set_xticks(xs, ticks)
  if is_fraction(metric):
    ax.set_ylim(-0.03, 1.03)
  ax.set_xlabel(axis_title(swept[0]), fontsize=9)
  ax.set_ylabel(metric + (' (mean ± std over seeds)' if spread else ''), fontsize=9)
  ax.grid(alpha=0.3)
  if len(swept) > 1:
    ax.legend(fontsize=8)
  return _save(fig, path, metric)


def write_figures(out_dir: str, axes: Sequence[Axis], rows: Sequence[Mapping],
                  metrics: Sequence[str] = DEFAULT_METRICS) -> list[str]:
  """PNG figures of `metrics` over the non-seed axes into `out_dir`; returns the paths.

  Two axes: heatmap_<metric>.png and line_<metric>.png; one axis: line_<metric>.png; more
  than two: heatmap_<metric>.png with one panel per combination of the extra axes' values;
  seeds only: nothing. A metric without a numeric value in any row is skipped; a point
  without results is a blank ('–') cell or a gap in the line.
  """
  swept = plot_axes(axes)
  if not swept:
    return []
  seeds = [ax for ax in axes if ax.fields == (SEED_FIELD,)]
  spread = bool(seeds) and len(seeds[0].values) > 1
  paths = []
  for metric in metrics:
    mean, std, count = aggregate(axes, rows, metric)
    if not count.any():
      continue
    name = grid.value_label(metric)
    data = (metric, swept, mean, std, count, spread)
    if len(swept) >= 2:
      paths.append(_heatmap(os.path.join(out_dir, f'heatmap_{name}.png'), *data))
    if len(swept) <= 2:
      paths.append(_line(os.path.join(out_dir, f'line_{name}.png'), *data))
  return paths
