"""Damaged files in a workdir (a full disk, an interrupted copy, a hand edit): the run
recovers, with one warning, or stops with one line that says what to do — never a
traceback, never results that differ from the undamaged run's.

One tiny digits run (3 epochs, the smallest CNN) is trained once per module; every test
damages a copy of it."""

import json
import logging
import os
import shutil

import numpy as np
import pytest

from abd_jax import config as config_lib
from abd_jax.data import load_dataset
from abd_jax.defenses import runner
from abd_jax.train import loop
from abd_jax.train.checkpoint import DIGEST, CheckpointError
from abd_jax.train.restore import load_run_variables
from abd_jax.train.subrun import run_once
from abd_jax.train.writer import JsonlWriter
from abd_jax.workdir import WorkdirError

EPOCHS = 3


def tiny_config():
  c = config_lib.apply_digits_scale(config_lib.base_config())
  c.perturb.name = 'none'
  c.model.width = 0.25
  c.train.update(epochs=EPOCHS)
  c.eval.update(steps=2, robust=False)
  c.checkpoint.max_to_keep = 2
  c.log.progress = False
  return c


@pytest.fixture(scope='module')
def data():
  c = tiny_config()
  return load_dataset(c.dataset, c.seed)


def _train(config, data):
  return lambda c, d: loop.train_and_evaluate(c, data, d)


@pytest.fixture(scope='module')
def finished(tmp_path_factory, data):
  """(config, workdir, results) of a finished run made by `run_once` (config.json,
  metrics.jsonl, results.json, checkpoints 2 and 3)."""
  config = tiny_config()
  workdir = str(tmp_path_factory.mktemp('finished') / 'run')
  results = run_once(config, workdir, _train(config, data), 'test run')
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '3']
  return config, workdir, results


@pytest.fixture
def run(finished, tmp_path):
  """A private copy of the finished run: (config, workdir, results)."""
  config, workdir, results = finished
  copy = str(tmp_path / 'run')
  shutil.copytree(workdir, copy)
  return config, copy, results


def warnings_of(caplog):
  return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def metrics_without_speed(path):
  with open(path) as f:
    return [{k: v for k, v in json.loads(line).items() if k != 'images_per_sec'} for line in f]


# ------------------------------------------------------------------------- checkpoints


def _remove_manifest(step):
  os.remove(os.path.join(step, 'state', 'manifest.ocdbt'))


def _truncate_data_file(step):
  folder = os.path.join(step, 'state', 'ocdbt.process_0', 'd')
  largest = max(os.listdir(folder), key=lambda n: os.path.getsize(os.path.join(folder, n)))
  with open(os.path.join(folder, largest), 'r+b') as f:
    f.truncate(os.path.getsize(os.path.join(folder, largest)) // 2)


@pytest.mark.parametrize('damage', [_remove_manifest, _truncate_data_file])
def test_damaged_latest_checkpoint_resumes_from_the_previous_one(run, data, caplog, capfd, damage):
  config, workdir, reference = run
  damage(os.path.join(workdir, 'checkpoints', '3'))
  with caplog.at_level(logging.WARNING):
    results = loop.train_and_evaluate(config, data, workdir)
  assert results == reference
  (warning,) = warnings_of(caplog)
  assert os.path.join(workdir, 'checkpoints', '3') in warning and 'epoch 2' in warning
  assert '\n' not in warning
  moved = os.path.join(workdir, 'checkpoints_damaged', '3')
  assert os.path.isdir(moved) and warning.count(moved) == 1
  # Epoch 3 was trained and saved again, with its digest.
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '3']
  assert os.path.exists(os.path.join(workdir, 'checkpoints', '3', DIGEST))
  assert len(metrics_without_speed(os.path.join(workdir, 'metrics.jsonl'))) == EPOCHS
  err = capfd.readouterr().err
  assert 'Traceback' not in err and 'Event loop is closed' not in err


def test_a_damaged_checkpoint_without_digest_is_found_by_reading_it(run, data, caplog, capfd):
  """A checkpoint whose writer was killed before it recorded the digest is trusted if it
  restores; here it does not."""
  config, workdir, reference = run
  step = os.path.join(workdir, 'checkpoints', '3')
  os.remove(os.path.join(step, DIGEST))
  folder = os.path.join(step, 'state', 'ocdbt.process_0', 'd')
  for name in os.listdir(folder):
    with open(os.path.join(folder, name), 'r+b') as f:
      f.truncate(5)
  with caplog.at_level(logging.WARNING):
    results = loop.train_and_evaluate(config, data, workdir)
  assert results == reference
  (warning,) = warnings_of(caplog)
  assert step in warning and 'epoch 2' in warning
  err = capfd.readouterr().err
  assert 'Traceback' not in err and 'Event loop is closed' not in err
  assert 'never awaited' not in err and 'never retrieved' not in err


def test_no_readable_checkpoint_left_trains_again_from_the_start(run, data, caplog):
  config, workdir, reference = run
  for epoch in ('2', '3'):
    _remove_manifest(os.path.join(workdir, 'checkpoints', epoch))
  with caplog.at_level(logging.WARNING):
    results = loop.train_and_evaluate(config, data, workdir)
  assert results == reference
  (warning,) = warnings_of(caplog)
  assert 'first epoch' in warning
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints_damaged'))) == ['2', '3']


def test_checkpoints_folder_replaced_by_a_file_is_one_line_error(run, data):
  config, workdir, _ = run
  path = os.path.join(workdir, 'checkpoints')
  shutil.rmtree(path)
  with open(path, 'w') as f:
    f.write('not a folder')
  with pytest.raises(CheckpointError) as e:
    loop.train_and_evaluate(config, data, workdir)
  message = str(e.value)
  assert '\n' not in message and path in message and '--overwrite' in message


def test_reading_another_runs_damaged_final_checkpoint_is_one_line_error(run, data):
  """An attack or defense loading a run's final model takes no earlier one instead."""
  config, workdir, _ = run
  _truncate_data_file(os.path.join(workdir, 'checkpoints', '3'))
  with pytest.raises(CheckpointError) as e:
    load_run_variables(workdir, data, fallback=config)
  assert '\n' not in str(e.value) and os.path.join(workdir, 'checkpoints', '3') in str(e.value)
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', '3'))  # read only: nothing moved


def test_final_train_metrics_come_from_the_checkpoint(run, data, caplog):
  config, workdir, reference = run
  os.remove(os.path.join(workdir, 'metrics.jsonl'))
  os.remove(os.path.join(workdir, 'results.json'))
  with caplog.at_level(logging.WARNING):
    results = loop.train_and_evaluate(config, data, workdir)
  assert results == reference
  assert not warnings_of(caplog)


# ----------------------------------------------------------------------- metrics.jsonl


def test_unreadable_metrics_lines_are_dropped_with_one_warning(run, data, caplog):
  config, workdir, reference = run
  path = os.path.join(workdir, 'metrics.jsonl')
  with open(path, 'rb') as f:
    lines = f.read().splitlines(keepends=True)
  assert len(lines) == EPOCHS
  # garbage, binary, a JSON non-object, then the last line cut in mid-write
  damaged = [lines[0], b'{"epoch": 1, garbage\n', b'\xff\xfe\x00\x81binary\x00\n', b'[1, 2]\n',
             lines[1], lines[2][:len(lines[2]) // 2]]
  with open(path, 'wb') as f:
    f.writelines(damaged)
  with caplog.at_level(logging.WARNING):
    records = JsonlWriter(path).read()
  assert [r['epoch'] for r in records] == [1, 2]
  (warning,) = warnings_of(caplog)
  assert path in warning and 'dropped 4' in warning

  caplog.clear()
  with caplog.at_level(logging.WARNING):
    results = loop.train_and_evaluate(config, data, workdir)
  assert results == reference
  assert len(warnings_of(caplog)) == 1  # read once at the resume, which rewrites the file
  with open(path) as f:
    assert [json.loads(line)['epoch'] for line in f] == [1, 2]


def test_resume_after_a_garbage_tail_appends_clean_lines(run, data, caplog):
  """A kill in mid-write leaves half a line: the resumed run writes whole lines after it."""
  config, workdir, reference = run
  path = os.path.join(workdir, 'metrics.jsonl')
  expected = metrics_without_speed(path)
  shutil.rmtree(os.path.join(workdir, 'checkpoints', '3'))
  with open(path, 'rb') as f:
    lines = f.read().splitlines(keepends=True)
  with open(path, 'wb') as f:
    f.writelines(lines[:2] + [lines[2][:10]])
  with caplog.at_level(logging.WARNING):
    assert loop.train_and_evaluate(config, data, workdir) == reference
  assert metrics_without_speed(path) == expected


# --------------------------------------------------------------------------- sub-runs


@pytest.mark.parametrize('content', [b'{"clean_acc": 0.9', b'', b'[0.5]', b'\x00\xff\xfe', b'{}'])
def test_damaged_subrun_results_are_recomputed(run, data, caplog, content):
  config, workdir, reference = run
  path = os.path.join(workdir, 'results.json')
  with open(path, 'wb') as f:
    f.write(content)
  with caplog.at_level(logging.WARNING):
    results = run_once(config, workdir, _train(config, data), 'test run')
  assert results == reference
  with open(path) as f:
    assert json.load(f) == reference
  (warning,) = warnings_of(caplog)
  assert path in warning


def test_subrun_with_damaged_final_checkpoint_runs_again(run, data, caplog):
  config, workdir, reference = run
  _remove_manifest(os.path.join(workdir, 'checkpoints', '3'))
  with caplog.at_level(logging.WARNING):
    results = run_once(config, workdir, _train(config, data), 'test run')
  assert results == reference
  (warning,) = warnings_of(caplog)
  assert 'epoch 2' in warning
  load_run_variables(workdir, data, fallback=config)  # what the caller does next


def test_subrun_without_checkpoints_is_trained_again(run, data, caplog):
  config, workdir, reference = run
  shutil.rmtree(os.path.join(workdir, 'checkpoints'))
  with caplog.at_level(logging.WARNING):
    assert run_once(config, workdir, _train(config, data), 'test run') == reference
  (warning,) = warnings_of(caplog)
  assert 'checkpoints' in warning


def test_damaged_subrun_config_is_one_line_error(run, data):
  config, workdir, _ = run
  path = os.path.join(workdir, 'config.json')
  with open(path, 'w') as f:
    f.write('{"seed": ')
  with pytest.raises(WorkdirError) as e:
    run_once(config, workdir, _train(config, data), 'test run')
  message = str(e.value)
  assert '\n' not in message and path in message and '--overwrite' in message


# ------------------------------------------------------------------- detection files


@pytest.fixture(scope='module')
def defended(tmp_path_factory, data):
  """(config, workdir, results) of a finished pgd_steps run (detection.json/.npz)."""
  config = tiny_config()
  config.defense.update(name='pgd_steps', max_steps=4, step_size=0.05)
  workdir = str(tmp_path_factory.mktemp('defended') / 'run')
  os.makedirs(workdir)
  poisoned = np.zeros(len(data.y_train), bool)
  poisoned[::10] = True
  results = runner.train_with_defense(config, data, workdir, None, poisoned)
  with np.load(os.path.join(workdir, 'detection.npz')) as saved:
    arrays = {k: saved[k] for k in saved}
  return config, workdir, results, poisoned, arrays


def _damage_json(workdir):
  with open(os.path.join(workdir, 'detection.json'), 'wb') as f:
    f.write(b'{"removed_total": 1')


def _delete_npz(workdir):
  os.remove(os.path.join(workdir, 'detection.npz'))


def _truncate_npz(workdir):
  path = os.path.join(workdir, 'detection.npz')
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)


@pytest.mark.parametrize('damage', [_damage_json, _delete_npz, _truncate_npz])
def test_damaged_detection_files_are_computed_again(defended, data, tmp_path, caplog, damage):
  config, original, reference, poisoned, arrays = defended
  workdir = str(tmp_path / 'run')
  shutil.copytree(original, workdir)
  damage(workdir)
  with caplog.at_level(logging.WARNING):
    results = runner.train_with_defense(config, data, workdir, None, poisoned)
  assert results == reference
  (warning,) = warnings_of(caplog)
  assert 'detection.' in warning and workdir in warning
  with np.load(os.path.join(workdir, 'detection.npz')) as saved:
    assert sorted(saved) == sorted(arrays)
    for k in arrays:
      np.testing.assert_array_equal(saved[k], arrays[k])
  with open(os.path.join(workdir, 'detection.json')) as f, \
       open(os.path.join(original, 'detection.json')) as g:
    assert json.load(f) == json.load(g)


# ---------------------------------------------------------------------- stacked runs


def test_stacked_points_keep_their_train_metrics_in_their_own_checkpoint(data, tmp_path):
  """Each point of a vmapped group gets its own final checkpoint with its train metrics:
  a point resumed alone after its last epoch reports them without its metrics.jsonl."""
  runs = []
  for seed in (0, 1):
    c = tiny_config()
    c.seed = seed
    (tmp_path / f'p{seed}').mkdir()
    runs.append(loop.StackedRun(c, str(tmp_path / f'p{seed}'), data.y_train,
                                np.zeros(0, np.int64), data.x_train[:0]))
  stacked = loop.train_and_evaluate_stacked(runs, data, str(tmp_path / 'group'))
  assert stacked[0]['train_loss'] != stacked[1]['train_loss']
  for run, result in zip(runs, stacked):
    assert os.listdir(os.path.join(run.workdir, 'checkpoints')) == [str(EPOCHS)]
    os.remove(os.path.join(run.workdir, 'metrics.jsonl'))
    alone = loop.train_and_evaluate(run.config, data, run.workdir)
    assert {k: alone[k] for k in loop.TRAIN_KEYS} == {k: result[k] for k in loop.TRAIN_KEYS}
    load_run_variables(run.workdir, data, fallback=run.config)
