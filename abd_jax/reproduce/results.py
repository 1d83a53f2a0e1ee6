"""A reproduction's results: measured rows beside the paper's, as NAME.csv, NAME.md and
NAME.png in experiments/results/.

`NAME.csv` holds every measured row (one per point and dataset; rerunning one dataset
replaces only its rows); `NAME.json` how each dataset's rows were obtained (command,
machine, versions, wall time); `NAME.md` and `NAME.png` are rebuilt from both and the
paper tables. A cell nobody measured says so; it is never filled.
"""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Any, Mapping, Sequence

import numpy as np

from abd_jax import plots
from abd_jax.reproduce import paper as paper_lib
from abd_jax.reproduce.spec import NEEDS, OFFLINE, Reproduction

# Result keys that are fractions in [0, 1]: shown in percent beside a percent table.
FRACTIONS = ('clean_acc', 'robust_acc', 'asr', 'kept_fraction', 'kept_poison_rate',
             'trained_fraction', 'trained_poison_rate', 'precision', 'recall',
             'detection_auroc', 'detector_clean_acc', 'detector_robust_acc', 'detector_asr',
             'backdoored_clean_acc', 'backdoored_asr')
RATIO = {'poison_removed': 'poison_total'}  # shown as "removed/total", the seeds' form


def _plain(value: Any) -> Any:
  if isinstance(value, float) and math.isnan(value):
    return None
  return value


def read_csv(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  with open(path, newline='') as f:
    rows = list(csv.DictReader(f))
  for row in rows:
    for key, value in row.items():
      row[key] = _parse(value)
  return rows


def _parse(text: str) -> Any:
  if text == '':
    return None
  try:
    return int(text)
  except ValueError:
    pass
  try:
    return float(text)
  except ValueError:
    return text


def _columns(rows: Sequence[Mapping]) -> list[str]:
  columns: dict[str, None] = {}
  for row in rows:
    columns.update(dict.fromkeys(row))
  return list(columns)


def write_csv(path: str, rows: Sequence[Mapping]) -> None:
  columns = _columns(rows)
  tmp = path + '.tmp'
  with open(tmp, 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=columns)
    writer.writeheader()
    for row in rows:
      writer.writerow({c: '' if row.get(c) is None else _plain(row.get(c)) for c in columns})
  os.replace(tmp, path)


def merge(previous: Sequence[Mapping], data: str, rows: Sequence[Mapping]) -> list[dict]:
  """`previous` rows of other datasets, then `rows` (all of dataset `data`)."""
  return [dict(r) for r in previous if r.get('data') != data] + [dict(r) for r in rows]


# ------------------------------------------------------------------------------- tables


def _mean(values: Sequence[float]) -> tuple[float, float]:
  values = np.asarray(values, float)
  return float(values.mean()), float(values.std())


def measured_cell(rows: Sequence[Mapping], metric: str, percent: bool) -> str:
  """The metric over the rows of one key (several seeds: mean±std), formatted as the
  paper prints it; a point that failed shows its error."""
  if metric in RATIO:
    done = [r for r in rows if r.get(metric) is not None and r.get(RATIO[metric]) is not None]
    return ', '.join(f'{int(r[metric])}/{int(r[RATIO[metric]])}' for r in done) or _missing(rows)
  values = [float(r[metric]) for r in rows if isinstance(r.get(metric), (int, float))]
  if not values:
    return _missing(rows)
  scale = 100.0 if percent and metric in FRACTIONS else 1.0
  mean, std = _mean([v * scale for v in values])
  digits = 1 if scale == 100.0 else 3
  text = f'{mean:.{digits}f}'
  return text + (f' ± {std:.{digits}f}' if len(values) > 1 else '')


def _missing(rows: Sequence[Mapping]) -> str:
  errors = [str(r['error']) for r in rows if r.get('error')]
  return 'failed: ' + errors[0][:60] if errors else '–'


def not_run(data: str) -> str:
  return f'not run: needs {NEEDS[data]}' if data in NEEDS else 'not run'


def _matches(row: Mapping, keys: Sequence[str], key: Sequence[str]) -> bool:
  return all(str(row.get(k)) == v for k, v in zip(keys, key))


def _fits(row: Mapping, table: paper_lib.PaperTable) -> bool:
  """The row has every key column of the table, and each key cell its arm holds fixed is
  one the table has (a swept key may add rows)."""
  if not all(row.get(k) is not None for k in table.keys):
    return False
  swept = str(row.get('axes') or '').split()
  return all(k in swept or str(row[k]) in {r[k] for r in table.rows} for k in table.keys)


def _belongs(row: Mapping, table: paper_lib.PaperTable,
             tables: Sequence[paper_lib.PaperTable]) -> bool:
  """Whether a measured row is shown in `table`: where it fits (so tables keyed alike, e.g.
  two poison rates of one figure, do not take each other's rows), or, fitting none of the
  experiment's `tables`, in every table that has its key columns."""
  if _fits(row, table):
    return True
  has_keys = all(row.get(k) is not None for k in table.keys)
  return has_keys and not any(_fits(row, t) for t in tables)


def columns_for(table: paper_lib.PaperTable, experiment: Reproduction) -> list[str]:
  """The datasets measured beside a table: the offline ones and the table's own (every
  dataset for a table that mixes datasets)."""
  return [d for d in experiment.datasets
          if d in OFFLINE or table.dataset in (d, 'mixed') or d not in NEEDS]


def comparison(table: paper_lib.PaperTable, experiment: Reproduction,
               measured: Sequence[Mapping], tables: Sequence[paper_lib.PaperTable] = ()
               ) -> tuple[list[str], list[list[str]]]:
  """The side-by-side table: the paper's key columns, then per metric the paper's column
  (when the table has one) and one column per dataset. Rows: the paper's, in its order,
  then measured keys the paper has no row for."""
  percent = table.meta['units'] == 'percent'
  metrics = list(experiment.metrics)
  datasets = columns_for(table, experiment)
  header = list(table.keys)
  for metric in metrics:
    column = experiment.paper_column(metric)
    if column in table.values:
      header.append(f'{metric} paper ({table.dataset})' if column == metric else
                    f'{metric} paper {column} ({table.dataset})')
    header += [f'{metric} {data}' for data in datasets]
  keys = [table.key_of(r) for r in table.rows]
  relevant = [r for r in measured if _belongs(r, table, tables or [table])]
  for row in relevant:
    key = tuple(str(row[k]) for k in table.keys)
    if key not in keys:
      keys.append(key)
  ran = {r.get('data') for r in measured}
  body = []
  for key in keys:
    paper_row = table.row(key)
    line = list(key)
    for metric in metrics:
      column = experiment.paper_column(metric)
      if column in table.values:
        line.append(paper_row[column] if paper_row else '–')
      for data in datasets:
        rows = [r for r in relevant if r.get('data') == data and _matches(r, table.keys, key)]
        if rows:
          line.append(measured_cell(rows, metric, percent))
        else:
          line.append(not_run(data) if data not in ran else 'not in grid')
    body.append(line)
  return header, body


def markdown_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
  lines = ['| ' + ' | '.join(header) + ' |', '|' + ' --- |' * len(header)]
  lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in body]
  return '\n'.join(lines)


def _runs_table(runs: Mapping[str, Mapping]) -> str:
  header = ['data', 'command', 'machine', 'wall time', 'date']
  body = [[data, f'`{r["command"]}`', r['machine'], f'{r["wall_s"] / 60:.1f} min'
           + (' (resumed)' if r.get('resumed') else '')
           + (f'; {r["reused_points"]} of {r["points"]} points reused from other experiments\' runs'
              if r.get('reused_points') else ''), r['date']] for data, r in runs.items()]
  return markdown_table(header, body)


def write_markdown(path: str, experiment: Reproduction, tables: Sequence[paper_lib.PaperTable],
                   measured: Sequence[Mapping], runs: Mapping[str, Mapping]) -> str:
  parts = [f'# {experiment.name}', '']
  if experiment.description:
    parts += [experiment.description.strip(), '']
  parts += ['## Runs', '']
  parts += [_runs_table(runs) if runs else 'Nothing measured yet.', '']
  for table in tables:
    header, body = comparison(table, experiment, measured, tables)
    parts += [f'## {table.title}', '',
              f'Paper: {table.meta["paper"]}, {table.meta["table"]} ({table.dataset}, '
              f'{table.meta["model"]}); {table.meta["setting"]}. Units: {table.meta["units"]}'
              + (' (measured fractions shown ×100).' if table.meta['units'] == 'percent' else '.'),
              '', markdown_table(header, body), '']
    if table.notes:
      parts += ['Transcription notes: ' + ' '.join(table.notes.split()).removeprefix('Notes:').strip(), '']
  text = '\n'.join(parts)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(text)
  return text


# ------------------------------------------------------------------------------- figure


def _numeric(cell: str, percent: bool, metric: str) -> float | None:
  """A paper cell or a formatted measured cell as a fraction (for the bars)."""
  if metric in RATIO:
    return paper_lib.number(cell.split(',')[0])
  value = paper_lib.number(cell.split('±')[0].strip())
  if value is None:
    return None
  return value / 100.0 if percent and metric in FRACTIONS else value


def write_figure(path: str, experiment: Reproduction, tables: Sequence[paper_lib.PaperTable],
                 measured: Sequence[Mapping]) -> str | None:
  """One panel per (paper table, metric): grouped bars per row, the paper's and ours."""
  panels = []
  for table in tables:
    header, body = comparison(table, experiment, measured, tables)
    percent = table.meta['units'] == 'percent'
    for metric in experiment.metrics:
      columns = [i for i, h in enumerate(header) if h.startswith(metric + ' ')]
      if not columns:
        continue
      series = {header[i]: [_numeric(row[i], percent, metric) for row in body] for i in columns}
      if any(v is not None for values in series.values() for v in values):
        labels = ['/'.join(row[:len(table.keys)]) for row in body]
        panels.append((f'{table.meta["table"]}: {metric}', labels, series))
  if not panels:
    return None
  fig, axes = plots.pyplot().subplots(len(panels), 1, figsize=(max(6, 0.5 * max(len(p[1]) for p in panels)
                                                                   + 2), 2.8 * len(panels)), squeeze=False)
  for ax, (title, labels, series) in zip(axes[:, 0], panels):
    width = 0.8 / len(series)
    for j, (name, values) in enumerate(series.items()):
      xs = np.arange(len(labels)) + (j - (len(series) - 1) / 2) * width
      heights = [np.nan if v is None else v for v in values]
      ax.bar(xs, heights, width, label=name)
    ax.set_xticks(np.arange(len(labels)), labels, rotation=45, ha='right', fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plots.pyplot().close(fig)
  return path


def write_all(out_dir: str, experiment: Reproduction, tables: Sequence[paper_lib.PaperTable],
              measured: Sequence[Mapping], runs: Mapping[str, Mapping]) -> dict[str, str]:
  """NAME.csv, NAME.json, NAME.md and NAME.png in `out_dir`; returns their paths."""
  os.makedirs(out_dir, exist_ok=True)
  base = os.path.join(out_dir, experiment.name)
  write_csv(base + '.csv', measured)
  with open(base + '.json', 'w') as f:
    json.dump(runs, f, indent=1, sort_keys=True)
    f.write('\n')
  write_markdown(base + '.md', experiment, tables, measured, runs)
  paths = {'csv': base + '.csv', 'json': base + '.json', 'md': base + '.md'}
  figure = write_figure(base + '.png', experiment, tables, measured)
  if figure:
    paths['png'] = figure
  return paths
