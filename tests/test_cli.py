"""End-to-end runs of `python -m abd_jax.main` on digits: the workdir contract, resume
after SIGKILL, refusal of foreign workdirs, a corrupted checkpoint."""

import os
import signal
import subprocess
import time

import pytest

from cli import FAST, REPO, cli_command, cli_env, read_json, read_jsonl, run_cli

pytestmark = pytest.mark.slow


def test_standard_training_end_to_end(tmp_path):
  """ST of the small CNN on digits: workdir contract and > 95% clean accuracy."""
  workdir = tmp_path / 'st'
  proc = run_cli(workdir, '--config.perturb.name=none', '--config.train.epochs=6',
                 '--config.eval.every_epochs=2', '--config.eval.steps=3')
  for name in ('config.json', 'metrics.jsonl', 'results.json', 'checkpoints'):
    assert (workdir / name).exists(), name
  config = read_json(workdir / 'config.json')
  assert config['perturb']['name'] == 'none' and config['train']['epochs'] == 6
  results = read_json(workdir / 'results.json')
  assert results['clean_acc'] > 0.95, results
  assert 0.0 <= results['robust_acc'] <= results['clean_acc']
  assert results['epochs'] == 6
  lines = read_jsonl(workdir / 'metrics.jsonl')
  assert [r['epoch'] for r in lines] == [1, 2, 3, 4, 5, 6]
  assert all('clean_acc' in r for r in lines if r['epoch'] % 2 == 0)
  assert all(r['images_per_sec'] > 0 and r['train_loss'] > 0 for r in lines)
  assert 'clean_acc' in proc.stdout and 'robust_acc' in proc.stdout  # the result table
  assert sorted(os.listdir(workdir / 'checkpoints'))[-1] == '6'

  # Rerunning the finished run only reports it.
  again = run_cli(workdir, '--config.perturb.name=none', '--config.train.epochs=6',
                  '--config.eval.every_epochs=2', '--config.eval.steps=3')
  assert 'already holds the finished run' in again.stdout
  assert read_json(workdir / 'results.json') == results


def test_adversarial_training_is_more_robust_than_standard(tmp_path):
  common = ('--config.train.epochs=4', '--config.eval.steps=5', '--config.log.progress=false')
  st = read_json_after(run_cli(tmp_path / 'st', '--config.perturb.name=none', *common), tmp_path / 'st')
  at = read_json_after(run_cli(tmp_path / 'at', '--config.perturb.steps=3', *common), tmp_path / 'at')
  assert at['robust_acc'] > st['robust_acc'] + 0.1, (st, at)


def read_json_after(_, workdir):
  return read_json(workdir / 'results.json')


def test_resume_after_sigkill_gives_identical_results(tmp_path):
  args = ('--config.train.epochs=6', '--config.perturb.steps=2', '--config.eval.steps=3',
          '--config.log.progress=false')
  reference = tmp_path / 'reference'
  run_cli(reference, *args)

  killed = tmp_path / 'killed'
  proc = subprocess.Popen(cli_command(killed, *args), cwd=REPO, env=cli_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  metrics = killed / 'metrics.jsonl'
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:
    if metrics.exists() and len(read_jsonl(metrics)) >= 2:
      break
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  assert proc.wait() == -signal.SIGKILL, 'the run finished before it could be killed'
  assert not (killed / 'results.json').exists()
  assert (killed / '.lock').exists()  # the file stays; the kernel released the lock

  run_cli(killed, *args)  # not refused as 'in use'
  assert read_json(killed / 'results.json') == read_json(reference / 'results.json')
  strip = lambda rows: [{k: v for k, v in r.items() if k != 'images_per_sec'} for r in rows]
  assert strip(read_jsonl(killed / 'metrics.jsonl')) == strip(read_jsonl(reference / 'metrics.jsonl'))


def test_workdir_with_other_config_is_refused_unless_overwrite(tmp_path):
  workdir = tmp_path / 'run'
  run_cli(workdir, *FAST, '--config.perturb.name=none', '--config.train.epochs=1')
  before = read_json(workdir / 'results.json')
  proc = run_cli(workdir, *FAST, '--config.perturb.name=none', '--config.train.epochs=1',
                 '--config.train.lr=0.02', check=False)
  assert proc.returncode == 1
  assert 'train.lr: 0.05 -> 0.02' in proc.stderr and '--overwrite' in proc.stderr
  assert 'Traceback' not in proc.stderr
  assert read_json(workdir / 'results.json') == before  # nothing touched

  run_cli(workdir, *FAST, '--config.perturb.name=none', '--config.train.epochs=1',
          '--config.train.lr=0.02', '--overwrite')
  assert read_json(workdir / 'config.json')['train']['lr'] == 0.02


def test_foreign_nonempty_workdir_is_refused(tmp_path):
  (tmp_path / 'thesis.tex').write_text('precious')
  proc = run_cli(tmp_path, *FAST, check=False)
  assert proc.returncode == 1 and 'holds no config.json' in proc.stderr
  assert (tmp_path / 'thesis.tex').read_text() == 'precious'


def test_corrupted_checkpoint_falls_back_to_the_previous_one(tmp_path):
  workdir = tmp_path / 'run'
  args = (*FAST, '--config.perturb.name=none', '--config.train.epochs=2')
  run_cli(workdir, *args)
  before = read_json(workdir / 'results.json')
  os.remove(workdir / 'results.json')
  latest = workdir / 'checkpoints' / '2'
  for root, _, files in os.walk(latest):
    for name in files:
      with open(os.path.join(root, name), 'wb') as f:
        f.write(b'\x00garbage')
  proc = run_cli(workdir, *args)
  lines = [line for line in proc.stderr.splitlines() if 'damaged' in line]
  assert len(lines) == 1 and str(latest) in lines[0] and 'epoch 1' in lines[0], proc.stderr
  assert 'Traceback' not in proc.stderr and 'Event loop' not in proc.stderr
  assert (workdir / 'checkpoints_damaged' / '2').is_dir()
  assert read_json(workdir / 'results.json') == before


@pytest.mark.parametrize('override, message', [
    ('--config.train.lrr=0.1', 'does not exist'),
    ('--config.dataset.name=imagenet21k', 'dataset.name'),
    ('--config.perturb.eps=-0.1', 'perturb.eps'),
])
def test_bad_command_line_gives_one_line_error(tmp_path, override, message):
  proc = run_cli(tmp_path / 'run', override, check=False)
  assert proc.returncode in (1, 2)
  assert message in proc.stderr and 'Traceback' not in proc.stderr
  assert not (tmp_path / 'run' / 'checkpoints').exists()  # rejected before any compute


def test_cat_digits_end_to_end_writes_metrics_and_the_spatial_figure(tmp_path):
  workdir = tmp_path / 'cat'
  run_cli(workdir, '--config.train.epochs=2', '--config.perturb.steps=2', '--config.eval.steps=2',
          '--config.log.progress=false', config='configs/cat.py:digits')
  results = read_json(workdir / 'results.json')
  for key in ('clean_acc', 'robust_acc', 'asr'):
    assert 0.0 <= results[key] <= 1.0, results
  config = read_json(workdir / 'config.json')
  assert config['perturb']['name'] == 'cat' and config['perturb']['beta'] == 0.8
  assert (workdir / 'spatial_examples.png').stat().st_size > 5_000
  assert read_json(workdir / 'poison_manifest.json')['attack'] == 'badnets'
