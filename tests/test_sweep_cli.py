"""End-to-end sweeps with `python -m abd_jax.sweep` on digits: a 2×2 ε×α grid whose points
equal the single runs of `abd_jax.main` (sequential) or agree with them within the
README's tolerance (vmapped, and vmapped with the run axis split over 8 fake devices);
kill and resume; the report files; validation before anything runs."""

import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from cli import REPO, cli_env, read_json

pytestmark = pytest.mark.slow

CONFIG = 'configs/sweeps/eps_alpha.py:digits'
# The smallest grid that shows a point per (ε, α) corner; few, cheap steps.
GRID = ('--config.sweep.axes.eps.values=((0.0, 0.0), (0.1, 0.025))',
        '--config.sweep.axes.alpha.values=(0.2, 1.0)',
        '--config.train.epochs=2', '--config.perturb.steps=2', '--config.eval.steps=2',
        '--config.eval.every_epochs=2', '--config.log.progress=false')
POINTS = ('eps=0_alpha=0.2', 'eps=0_alpha=1', 'eps=0.1_alpha=0.2', 'eps=0.1_alpha=1')
# vmapped and sequential runs differ only by float rounding of batched convolutions, which
# training amplifies; the README states these tolerances.
LOSS_RTOL, ACC_ATOL = 0.01, 0.08


def sweep_command(workdir, *args):
  return [sys.executable, '-m', 'abd_jax.sweep', f'--config={CONFIG}', f'--workdir={workdir}',
          *GRID, *args]


def run_sweep(workdir, *args, check=True, devices=None):
  env = cli_env(**({'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'}
                   if devices else {}))
  proc = subprocess.run(sweep_command(workdir, *args), cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=1200)
  if check and proc.returncode != 0:
    raise AssertionError(f'exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}')
  return proc


def results(workdir):
  return {name: read_json(workdir / 'points' / name / 'results.json') for name in POINTS}


def assert_close(a, b, keys=('clean_acc', 'robust_acc', 'asr')):
  for name in POINTS:
    assert abs(a[name]['train_loss'] - b[name]['train_loss']) <= LOSS_RTOL * b[name]['train_loss'], name
    for key in keys:
      assert abs(a[name][key] - b[name][key]) <= ACC_ATOL, (name, key, a[name], b[name])


@pytest.fixture(scope='module')
def sequential(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('sweep') / 'sequential'
  proc = run_sweep(workdir)
  return workdir, proc


@pytest.fixture(scope='module')
def vmapped(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('sweep') / 'vmap'
  run_sweep(workdir, '--config.sweep.execution=vmap')
  return workdir


def test_sequential_sweep_writes_the_workdir_contract(sequential):
  workdir, proc = sequential
  record = read_json(workdir / 'sweep.json')
  assert [p['name'] for p in record['points']] == list(POINTS)
  assert [g['execution'] for g in record['groups']] == ['sequential']  # auto on a CPU
  assert record['config']['sweep']['axes']['alpha']['values'] == [0.2, 1.0]
  for name in POINTS:
    for f in ('config.json', 'results.json', 'metrics.jsonl', 'poison_manifest.json', 'checkpoints'):
      assert (workdir / 'points' / name / f).exists(), (name, f)
  lines = (workdir / 'results.csv').read_text().splitlines()
  header = lines[0].split(',')
  assert header[:5] == ['point', 'perturb.eps', 'perturb.step_size', 'attack.alpha', 'seed']
  assert {'asr', 'clean_acc', 'robust_acc'} <= set(header)
  assert [line.split(',')[0] for line in lines[1:]] == list(POINTS)
  assert len((workdir / 'results.jsonl').read_text().splitlines()) == 4
  for metric in ('asr', 'clean_acc', 'robust_acc'):
    assert (workdir / f'heatmap_{metric}.png').stat().st_size > 10_000
  assert 'attack.alpha' in proc.stdout and 'asr' in proc.stdout  # the table
  # the engine's timing, apart from the deterministic results
  assert {'train', 'compile', 'poison'} <= set(read_json(workdir / 'timing.json'))


def test_sequential_points_equal_the_single_runs(sequential, tmp_path):
  """Every point's command line in sweep.json, run alone, gives the same results.json."""
  workdir, _ = sequential
  record = read_json(workdir / 'sweep.json')
  point = next(p for p in record['points'] if p['name'] == 'eps=0.1_alpha=0.2')
  args = shlex.split(point['command'])
  assert args[:3] == ['python', '-m', 'abd_jax.main']
  args = [sys.executable, *args[1:]]
  args = [f'--workdir={tmp_path / "alone"}' if a.startswith('--workdir=') else a for a in args]
  proc = subprocess.run(args + ['--config.log.progress=false'], cwd=REPO, env=cli_env(),
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert read_json(tmp_path / 'alone' / 'results.json') == results(workdir)['eps=0.1_alpha=0.2']


def test_rerunning_a_finished_sweep_only_prints_its_table(sequential):
  workdir, _ = sequential
  before = (workdir / 'results.csv').read_bytes()
  stamp = os.path.getmtime(workdir / 'points' / POINTS[0] / 'results.json')
  proc = run_sweep(workdir)
  assert 'already holds the finished sweep' in proc.stdout and 'asr' in proc.stdout
  assert (workdir / 'results.csv').read_bytes() == before
  assert os.path.getmtime(workdir / 'points' / POINTS[0] / 'results.json') == stamp


def test_report_mode_rebuilds_csv_and_figures(sequential):
  workdir, _ = sequential
  before = (workdir / 'results.csv').read_bytes()
  for name in ('results.csv', 'results.jsonl', 'heatmap_asr.png'):
    os.remove(workdir / name)
  proc = subprocess.run([sys.executable, '-m', 'abd_jax.sweep', f'--workdir={workdir}', '--report'],
                        cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert (workdir / 'results.csv').read_bytes() == before
  assert (workdir / 'heatmap_asr.png').exists() and (workdir / 'results.jsonl').exists()


def test_a_different_sweep_in_the_workdir_is_refused(sequential):
  workdir, _ = sequential
  proc = run_sweep(workdir, '--config.train.lr=0.02', check=False)
  assert proc.returncode == 1 and 'sweep of a different config' in proc.stderr and '--overwrite' in proc.stderr
  assert 'Traceback' not in proc.stderr


def test_vmapped_points_agree_with_sequential_ones(sequential, vmapped):
  record = read_json(vmapped / 'sweep.json')
  assert [g['execution'] for g in record['groups']] == ['vmap']
  assert_close(results(vmapped), results(sequential[0]))
  # every point is a complete run directory: its own final checkpoint, no stacked leftovers
  for name in POINTS:
    assert sorted(os.listdir(vmapped / 'points' / name / 'checkpoints')) == ['2']
  assert not (vmapped / 'groups' / record['groups'][0]['name'] / 'checkpoints').exists()


def test_vmapped_sweep_on_8_fake_devices(tmp_path):
  """The run axis split over a (runs=4, data=2) mesh of 8 CPU devices (vmap asked for: on
  accelerators `auto` chooses it with several devices) agrees with one device running the
  points one after another. One epoch and no robust evaluation: SPMD programs over 8 fake
  devices compile slowly."""
  short = ('--config.train.epochs=1', '--config.eval.every_epochs=1', '--config.eval.robust=false')
  run_sweep(tmp_path / 'one', *short)
  run_sweep(tmp_path / 'sharded', *short, '--config.sweep.execution=vmap', devices=8)
  record = read_json(tmp_path / 'sharded' / 'sweep.json')
  assert record['devices'] == 8 and record['groups'][0]['execution'] == 'vmap'
  assert read_json(tmp_path / 'one' / 'sweep.json')['groups'][0]['execution'] == 'sequential'
  assert_close(results(tmp_path / 'sharded'), results(tmp_path / 'one'), keys=('clean_acc', 'asr'))


def _settled(ready) -> bool:
  """ready(), False while a folder it globs comes and goes: the workdir check probes each
  point's folder by creating and removing it, and a glob that lists a folder being removed
  raises (Python < 3.13)."""
  try:
    return ready()
  except FileNotFoundError:
    return False


def _kill_when(proc, ready, timeout=600):
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    if _settled(ready):
      proc.send_signal(signal.SIGKILL)
      proc.wait()
      return
    time.sleep(0.05)
  raise AssertionError('the sweep finished (or hung) before it could be killed')


@pytest.mark.parametrize('execution', ['sequential', 'vmap'])
def test_killed_sweep_resumes_to_the_same_csv(sequential, vmapped, tmp_path, execution):
  reference = sequential[0] if execution == 'sequential' else vmapped
  workdir = tmp_path / 'killed'
  proc = subprocess.Popen(sweep_command(workdir, f'--config.sweep.execution={execution}'),
                          cwd=REPO, env=cli_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  if execution == 'sequential':  # inside the second point, after its first checkpoint
    ready = lambda: len(list(workdir.glob('points/*/results.json'))) >= 1 and len(
        list(workdir.glob('points/*/checkpoints/1'))) >= 2
  else:  # inside the stacked group, after its first checkpoint
    ready = lambda: bool(list(workdir.glob('groups/*/checkpoints/1')))
  _kill_when(proc, ready)
  assert not (workdir / 'results.csv').exists()
  run_sweep(workdir, f'--config.sweep.execution={execution}')
  assert (workdir / 'results.csv').read_bytes() == (reference / 'results.csv').read_bytes()


@pytest.mark.parametrize('override, message', [
    ('--config.sweep.axes.alpha.values=(0.2, 1.5)',
     'sweep point eps=0_alpha=1.5: config field `attack.alpha` = 1.5'),
    ('--config.sweep.axes.alpha.values=()', 'has no values'),
    ('--config.sweep.axes.alpha.fields=("attack.alpah",)', 'did you mean `attack.alpha`'),
    ('--config.sweep.axes.eps.values=((0.0, 0.0), (0.1,))', 'must be a tuple of 2'),
    ('--config.sweep.execution=pmap', 'sweep.execution'),
])
def test_bad_axis_is_one_line_before_anything_runs(tmp_path, override, message):
  workdir = tmp_path / 'bad'
  # A tuple flag given twice is concatenated by config_flags: drop the grid's own value.
  field = override.split('=')[0]
  grid_args = [a for a in GRID if a.split('=')[0] != field]
  proc = subprocess.run([sys.executable, '-m', 'abd_jax.sweep', f'--config={CONFIG}',
                         f'--workdir={workdir}', *grid_args, override], cwd=REPO, env=cli_env(),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode in (1, 2), proc.stderr[-2000:]
  assert message in proc.stderr, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1
  assert not workdir.exists()
