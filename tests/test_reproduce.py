"""The reproduction framework: paper-number files, joining measured rows to the paper's,
the results files, and the arms' test size and shared run directories."""

import json

import pytest

from abd_jax import config as config_lib
from abd_jax.reproduce import paper as paper_lib
from abd_jax.reproduce import results as results_lib
from abd_jax.reproduce import runner as run_lib
from abd_jax.reproduce import spec as spec_lib
from abd_jax.reproduce.spec import Arm, Reproduction, Vary

TABLE = """# Paper (venue), Table 9: what it shows

paper: A. Author, A title, Venue 2023
table: Table 9
dataset: cifar10
model: resnet18
setting: 10% poisoned, target 0
keys: attack, eps
units: percent

| attack | eps | clean_acc | asr |
| --- | --- | --- | --- |
| badnets | 0 | 94.1 | 100.0 |
| badnets | 8/255 | 84.3 | 2.1 |
| blended | 8/255 | 83.0 | - |

Notes: the blended ASR is not printed.
"""


def test_parse_reads_header_keys_rows_and_notes():
  table = paper_lib.parse(TABLE, 'x_table9')
  assert table.keys == ('attack', 'eps')
  assert table.values == ('clean_acc', 'asr')
  assert table.dataset == 'cifar10' and table.meta['units'] == 'percent'
  assert table.row(('badnets', '8/255')) == {'attack': 'badnets', 'eps': '8/255',
                                            'clean_acc': '84.3', 'asr': '2.1'}
  assert table.row(('blended', '0')) is None
  assert table.notes == 'Notes: the blended ASR is not printed.'


@pytest.mark.parametrize('change, message', [
    (('keys: attack, eps', 'keys: attack, budget'), 'budget not among the columns'),
    (('units: percent', 'units: percentage'), "units: 'percentage' is not one of"),
    (('model: resnet18\n', ''), '`model:`'),
    (('| badnets | 0 | 94.1 | 100.0 |', '| badnets | 0 | 94.1 |'), 'line 13: 3 cells for 4 columns'),
    (('| blended | 8/255', '| badnets | 8/255'), "line 15: duplicate key {'attack': 'badnets'"),
    (('| --- | --- | --- | --- |', '| a | b | c | d |'), 'line 12: the second table row'),
    (('Notes: the', '| a | b |\nNotes: the'), 'a second table'),
    (('# Paper (venue), Table 9: what it shows', ''), 'no title'),
])
def test_parse_refuses_a_malformed_file_naming_the_line(change, message):
  with pytest.raises(paper_lib.PaperTableError) as error:
    paper_lib.parse(TABLE.replace(*change), 'x_table9')
  assert message in str(error.value) and 'x_table9.md' in str(error.value)


@pytest.mark.parametrize('cell, value', [('93.1', 93.1), ('732/750', 0.976), ('~0', 0.0),
                                         ('-', None), ('high', None), ('<1.5', 1.5),
                                         ('12%', 12.0), ('-3.5', -3.5)])
def test_number(cell, value):
  assert paper_lib.number(cell) == (pytest.approx(value) if value is not None else None)


def _experiment(**kw):
  base = dict(name='x_table9', papers=('x_table9',), arms=lambda data: [],
              metrics=('clean_acc', 'asr'), datasets=('digits', 'cifar10'))
  return Reproduction(**{**base, **kw})


def _row(data, attack, eps, clean, asr, seed=0, **extra):
  return {'data': data, 'attack': attack, 'eps': eps, 'clean_acc': clean, 'asr': asr,
          'seed': seed, **extra}


def test_comparison_puts_measured_cells_beside_the_papers():
  table = paper_lib.parse(TABLE, 'x_table9')
  measured = [_row('digits', 'badnets', '0', 0.994, 1.0),
              _row('digits', 'badnets', '8/255', 0.9, 0.25), _row('digits', 'badnets', '8/255', 0.92, 0.35, seed=1),
              _row('digits', 'wanet', '8/255', 0.97, 0.5, axes='attack eps')]
  header, body = results_lib.comparison(table, _experiment(), measured)
  assert header == ['attack', 'eps', 'clean_acc paper (cifar10)', 'clean_acc digits',
                    'clean_acc cifar10', 'asr paper (cifar10)', 'asr digits', 'asr cifar10']
  rows = {tuple(r[:2]): r for r in body}
  assert rows[('badnets', '0')][2:5] == ['94.1', '99.4', 'not run: needs CIFAR-10']
  assert rows[('badnets', '8/255')][6] == '30.0 ± 5.0'  # two seeds: mean ± std, in percent
  assert rows[('blended', '8/255')][3] == 'not in grid'  # the paper's row, not measured
  assert rows[('blended', '8/255')][5] == '-'
  assert rows[('wanet', '8/255')][2] == '–' and rows[('wanet', '8/255')][6] == '50.0'
  assert [tuple(r[:2]) for r in body][-1] == ('wanet', '8/255')  # extra rows come last


def test_comparison_shows_fractions_as_fractions_and_removals_as_counts():
  table = paper_lib.parse(TABLE.replace('units: percent', 'units: fraction'), 'x_table9')
  header, body = results_lib.comparison(table, _experiment(), [_row('digits', 'badnets', '0', 0.9944, 1.0)])
  assert body[0][3] == '0.994'
  counts = _experiment(metrics=('poison_removed',))
  measured = [_row('digits', 'badnets', '0', 1, 1, poison_removed=108, poison_total=143)]
  header, body = results_lib.comparison(table, counts, measured)
  assert body[0][2] == '108/143'


def test_a_failed_point_shows_its_error():
  table = paper_lib.parse(TABLE, 'x_table9')
  measured = [_row('digits', 'badnets', '0', None, None, error='TrainingDivergedError: loss nan')]
  _, body = results_lib.comparison(table, _experiment(), measured)
  assert body[0][3].startswith('failed: TrainingDivergedError')


def test_write_all_and_merge_keep_other_datasets(tmp_path):
  table = paper_lib.parse(TABLE, 'x_table9')
  experiment = _experiment()
  runs = {'digits': {'command': 'python experiments/x_table9.py', 'machine': 'm', 'wall_s': 60.0,
                     'date': '2026-12-01'}}
  first = [_row('cifar10', 'badnets', '0', 0.93, 1.0), _row('digits', 'badnets', '0', 0.5, 0.5)]
  paths = results_lib.write_all(str(tmp_path), experiment, [table], first, runs)
  assert set(paths) == {'csv', 'json', 'md', 'png'}
  rows = results_lib.merge(results_lib.read_csv(paths['csv']), 'digits',
                           [_row('digits', 'badnets', '0', 0.994, 1.0)])
  assert [(r['data'], r['clean_acc']) for r in rows] == [('cifar10', 0.93), ('digits', 0.994)]
  text = results_lib.write_markdown(paths['md'], experiment, [table], rows, runs)
  assert '| badnets | 0 | 94.1 | 99.4 | 93.0 |' in text
  assert '`python experiments/x_table9.py`' in text and '1.0 min' in text
  assert json.loads(open(paths['json']).read()) == runs


def _arm(**kw):
  config = config_lib.base_config()
  config = config_lib.apply_digits_scale(config)
  base = dict(name='grid', keys={'attack': 'badnets'}, config=config,
              vary=(Vary('eps', ('perturb.eps', 'perturb.step_size'),
                         ((0.0, 0.0), (0.05, 0.0125), (0.1, 0.025)), labels=('0', '4/255', '8/255')),
                    Vary('alpha', 'attack.alpha', (0.2, 0.6, 1.0))))
  return Arm(**{**base, **kw})


def test_measured_rows_label_each_point_with_the_papers_key():
  arm = _arm()
  rows = [{'point': 'p', 'perturb.eps': 0.05, 'perturb.step_size': 0.0125, 'attack.alpha': 1.0,
           'seed': 0, 'asr': 0.5, 'clean_acc': 0.9, 'poison_removed': 3, 'poison_total': 4}]
  (row,) = run_lib.measured_rows(arm, 'digits', rows, ('asr', 'poison_removed'))
  assert row['eps'] == '4/255' and row['alpha'] == '1.0' and row['attack'] == 'badnets'
  assert row['poison_total'] == 4 and row['data'] == 'digits' and 'clean_acc' not in row


def test_shrink_keeps_the_first_and_last_point_of_the_first_axis():
  config = _arm().config
  config.defense.detector_epochs = 20
  arm = spec_lib.shrink(_arm(config=config, seeds=(0, 1)))
  assert arm.vary[0].values == ((0.0, 0.0), (0.1, 0.025)) and arm.vary[0].labels == ('0', '8/255')
  assert arm.vary[1].values == (1.0,) and arm.seeds == (0,)
  assert arm.config.train.epochs == 1 and arm.config.defense.detector_epochs == 1
  assert arm.config.perturb.steps == 2 and arm.config.train.milestones == ()
  assert _arm().config.train.epochs == 15  # the original arm is untouched


def test_identical_arms_share_a_run_directory_and_different_ones_do_not():
  key = run_lib.arm_key(_arm())
  assert key == run_lib.arm_key(_arm(keys={'attack': 'other'}))  # keys: labels only
  assert key != run_lib.arm_key(_arm(vary=_arm().vary[:1]))
  config = _arm().config
  config.train.epochs = 8
  assert key != run_lib.arm_key(_arm(config=config))
  assert key.startswith('grid-')


def test_load_resizes_digits32_and_applies_overrides():
  config = spec_lib.load('configs/cat.py:blended', 'digits32', train__epochs=4)
  assert config.dataset.name == 'digits' and config.dataset.image_size == 32
  assert config.dataset.resize_method == 'bilinear' and config.train.epochs == 4
  assert config.attack.name == 'blended' and config.model.name == 'cnn'
  cifar = spec_lib.load('configs/cat.py', 'cifar10')
  assert cifar.dataset.name == 'cifar10' and cifar.model.name == 'resnet18'


def test_run_refuses_data_the_experiment_does_not_support(tmp_path):
  with pytest.raises(ValueError, match="--data='gtsrb' is not allowed: this experiment runs on digits, cifar10"):
    run_lib.run(_experiment(), 'gtsrb', str(tmp_path), str(tmp_path))


def test_vary_labels_must_match_values():
  with pytest.raises(ValueError, match="Vary 'eps': 1 labels for 2 values"):
    Vary('eps', 'perturb.eps', (0.1, 0.2), labels=('8/255',))


def test_a_paper_column_of_another_name_is_matched_to_its_metric():
  table = paper_lib.parse(TABLE.replace('| clean_acc | asr |', '| accuracy | asr_defense |'), 'x_table9')
  experiment = _experiment(metrics=('asr',), paper_columns={'asr': 'asr_defense'})
  header, body = results_lib.comparison(table, experiment, [_row('digits', 'badnets', '0', 0.9, 0.25)])
  assert header[2] == 'asr paper asr_defense (cifar10)'
  assert body[0][2:4] == ['100.0', '25.0']


def test_a_row_whose_fixed_key_the_table_lacks_goes_to_another_table():
  table = paper_lib.parse(TABLE, 'x_table9')
  measured = [_row('digits', 'wanet', '8/255', 0.9, 0.5, axes='eps'),  # attack fixed: not here
              _row('digits', 'badnets', '4/255', 0.9, 0.5, axes='eps')]  # a swept budget: here
  other = paper_lib.parse(TABLE.replace('| blended |', '| wanet |'), 'x_table10')
  _, body = results_lib.comparison(table, _experiment(), measured, [table, other])
  assert [tuple(r[:2]) for r in body] == [('badnets', '0'), ('badnets', '8/255'),
                                          ('blended', '8/255'), ('badnets', '4/255')]
  # A row no table of the experiment fits is shown in every table with its key columns.
  _, body = results_lib.comparison(table, _experiment(), measured, [table])
  assert ('wanet', '8/255') in [tuple(r[:2]) for r in body]


def test_a_table_of_one_dataset_shows_the_offline_columns_and_its_own():
  table = paper_lib.parse(TABLE.replace('dataset: cifar10', 'dataset: gtsrb'), 'x_table9')
  experiment = _experiment(datasets=('digits', 'digits32', 'cifar10', 'gtsrb'))
  header, _ = results_lib.comparison(table, experiment, [])
  assert header[2:7] == ['clean_acc paper (gtsrb)', 'clean_acc digits', 'clean_acc digits32',
                         'clean_acc gtsrb', 'asr paper (gtsrb)']
