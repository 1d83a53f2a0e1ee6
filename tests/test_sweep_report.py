"""A sweep's results: the rows, their CSV / JSONL files, the console table, the mean±std over
seeds and the figures of each axis count."""

import csv
import json
import os

import matplotlib.image
import numpy as np
import pytest

from abd_jax import config as config_lib
from abd_jax.sweep import grid, report

EPS = grid.axis(('perturb.eps', 'perturb.step_size'), ((0.0, 0.0), (0.1, 0.025), (0.2, 0.05)))
ALPHA = grid.axis('attack.alpha', (0.2, 1.0))


def points_of(axes, seeds=(0,)):
  c = config_lib.apply_digits_scale(config_lib.base_config())
  c.sweep = grid.sweep_block(axes, seeds=seeds)
  return grid.axes_of(c.sweep), grid.expand(c)


def fake_result(p):
  """asr = eps + alpha / 10 + seed * 0.04: every cell and seed distinct and known."""
  o = p.overrides
  asr = o['perturb.eps'] + o.get('attack.alpha', 0.0) / 10 + o['seed'] * 0.04
  return {'clean_acc': 0.9, 'asr': asr, 'epochs': 2}


def test_result_rows_columns_and_order():
  _, points = points_of({'eps': EPS, 'alpha': ALPHA}, seeds=(0, 1))
  results = {p.name: fake_result(p) for p in points[1:]}
  results[points[2].name] = {'train_loss': 0.5, **fake_result(points[2])}  # a later new key
  results[points[3].name] = None  # failed
  rows = report.result_rows(points, results, {points[3].name: 'diverged'})
  assert len(rows) == len(points) == 12
  assert list(rows[0]) == ['point', 'perturb.eps', 'perturb.step_size', 'attack.alpha', 'seed',
                           'clean_acc', 'asr', 'epochs', 'train_loss', 'error']
  assert [r['point'] for r in rows] == [p.name for p in points]
  assert rows[0]['asr'] is None and rows[0]['error'] is None  # no result, no error
  assert rows[3]['error'] == 'diverged' and rows[3]['clean_acc'] is None
  assert rows[2]['train_loss'] == 0.5 and rows[4]['train_loss'] is None
  assert rows[5]['perturb.step_size'] == 0.025 and rows[5]['seed'] == 1
  assert rows[5]['asr'] == pytest.approx(0.1 + 0.02 + 0.04)
  # Without errors there is no error column.
  assert 'error' not in report.result_rows(points, results)[0]


def test_csv_and_jsonl_are_exact_and_identical_on_rewrite(tmp_path):
  _, points = points_of({'m': grid.axis('train.milestones', ((10,), (5, 10))), 'alpha': ALPHA})
  results = {p.name: {'asr': 1 / 3, 'clean_acc': np.float32(0.5), 'epochs': 2} for p in points}
  results[points[-1].name] = None
  rows = report.result_rows(points, results, {points[-1].name: 'out of memory, "batch" 64'})
  path = str(tmp_path / 'results.csv')
  assert report.write_csv(path, rows) == path
  first = open(path, 'rb').read()
  report.write_csv(path, rows)
  assert open(path, 'rb').read() == first
  assert sorted(os.listdir(tmp_path)) == ['results.csv']  # no .tmp left behind
  read = list(csv.DictReader(open(path, newline='')))
  assert list(read[0]) == list(rows[0])
  assert read[0]['asr'] == repr(1 / 3) and float(read[0]['asr']) == 1 / 3
  assert read[0]['train.milestones'] == '(10,)' and read[1]['attack.alpha'] == '1.0'
  assert read[0]['error'] == '' and read[-1]['asr'] == ''
  assert read[-1]['error'] == 'out of memory, "batch" 64'

  jpath = str(tmp_path / 'results.jsonl')
  report.write_jsonl(jpath, rows)
  first = open(jpath, 'rb').read()
  report.write_jsonl(jpath, rows)
  assert open(jpath, 'rb').read() == first
  lines = [json.loads(line) for line in open(jpath)]
  assert len(lines) == len(rows) and list(lines[0]) == list(rows[0])
  assert lines[0]['asr'] == 1 / 3 and lines[0]['clean_acc'] == 0.5
  assert lines[2]['train.milestones'] == [5, 10] and lines[-1]['asr'] is None


def test_format_table_fits_a_terminal():
  _, points = points_of({'eps': EPS, 'alpha': ALPHA}, seeds=(0, 1, 2, 3, 4))
  results = {p.name: {**fake_result(p), 'robust_acc': 0.25, 'train_loss': 1.5} for p in points}
  results[points[0].name] = None
  rows = report.result_rows(points, results, {points[0].name: 'x' * 200})
  assert len(rows) == 30
  table = report.format_table(rows).splitlines()
  assert len(table) == 30 + 2
  assert table[0].split() == ['perturb.eps', 'perturb.step_size', 'attack.alpha', 'seed',
                              'asr', 'clean_acc', 'robust_acc', 'error']
  assert max(map(len, table)) <= 150
  assert '0.9000' in table[3] and '0.2500' in table[3] and '0.1000' in table[2 + 10]
  assert table[2].split()[4:7] == ['-', '-', '-'] and table[2].endswith('...')
  chosen = report.format_table(rows, columns=['point', 'train_loss']).splitlines()
  assert chosen[0].split() == ['point', 'train_loss'] and chosen[3].split()[1] == '1.5000'


def test_aggregate_mean_and_std_over_seeds():
  axes, points = points_of({'eps': EPS, 'alpha': ALPHA}, seeds=(0, 1))
  results = {p.name: fake_result(p) for p in points}
  del results['eps=0.1_alpha=1_seed=0'], results['eps=0.1_alpha=1_seed=1']  # one empty cell
  rows = report.result_rows(points, results)[::-1]  # matched by value, not position
  mean, std, count = report.aggregate(axes, rows, 'asr')
  assert mean.shape == std.shape == count.shape == (3, 2)  # [eps, alpha]
  # Seeds 0 and 1 add 0 and 0.04: mean +0.02, population std 0.02.
  assert mean[2, 0] == pytest.approx(0.2 + 0.02 + 0.02) and std[2, 0] == pytest.approx(0.02)
  assert count[2, 0] == 2 and count[1, 1] == 0 and np.isnan(mean[1, 1])
  text = report.cell_text(mean, std, count, spread=True)
  assert text[2, 0] == '0.24±0.02' and text[0, 1] == '0.12±0.02' and text[1, 1] == '–'
  assert report.cell_text(mean, std, count, spread=False)[2, 0] == '0.24'
  # A metric no row has: all empty.
  assert not report.aggregate(axes, rows, 'robust_acc')[2].any()


def read_png(path):
  assert open(path, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'
  image = matplotlib.image.imread(path)
  assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
  return image


def test_figures_of_two_axes_with_seeds(tmp_path):
  axes, points = points_of({'eps': EPS, 'alpha': ALPHA}, seeds=(0, 1))
  results = {p.name: fake_result(p) for p in points[2:]}
  rows = report.result_rows(points, results)
  paths = report.write_figures(str(tmp_path), axes, rows, metrics=('asr', 'robust_acc'))
  # robust_acc is in no row: skipped.
  assert [os.path.basename(p) for p in paths] == ['heatmap_asr.png', 'line_asr.png']
  for path in paths:
    read_png(path)
  assert sorted(os.listdir(tmp_path)) == ['heatmap_asr.png', 'line_asr.png']


def test_figures_of_one_and_of_three_axes_and_of_seeds_only(tmp_path):
  # One categorical axis: a line plot.
  axes, points = points_of({'pos': grid.axis('attack.position', ('bottom_right', 'center'))})
  rows = report.result_rows(points, {p.name: {'asr': 0.5} for p in points})
  paths = report.write_figures(str(tmp_path / 'one'), axes, rows)
  assert [os.path.basename(p) for p in paths] == ['line_asr.png']
  read_png(paths[0])
  # Three axes: one heat map with a panel per value of the third.
  axes, points = points_of({'eps': EPS, 'alpha': ALPHA,
                            'rate': grid.axis('attack.poison_rate', (0.05, 0.1, 0.2))})
  rows = report.result_rows(points, {p.name: {'asr': 0.1, 'clean_acc': 0.9} for p in points})
  paths = report.write_figures(str(tmp_path / 'three'), axes, rows, metrics=('clean_acc',))
  assert [os.path.basename(p) for p in paths] == ['heatmap_clean_acc.png']
  read_png(paths[0])
  # Seeds only: nothing to draw.
  axes, points = points_of({}, seeds=(0, 1))
  rows = report.result_rows(points, {p.name: {'asr': 0.1} for p in points})
  assert report.write_figures(str(tmp_path / 'seeds'), axes, rows) == []
  assert not os.path.exists(tmp_path / 'seeds')
