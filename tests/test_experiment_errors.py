"""The reproduction scripts' refusals, run as a user would (subprocesses): every usage or
library mistake is one `error:` line on stderr with a non-zero exit (2 for the command
line, 1 for the run), found before anything trains or is written; an interruption says
that the same command resumes. Nothing here trains."""

import os
import signal
import subprocess
import sys

import pytest

from cli import REPO, cli_env

from abd_jax.reproduce import runner
from abd_jax.reproduce.spec import Arm, Reproduction, ReproductionError, load

SCRIPT = os.path.join(REPO, 'experiments', 'iclr22_fig3a.py')
RUN_ALL = os.path.join(REPO, 'experiments', 'run_all.py')


def error_lines(proc, code):
  """The non-empty stderr lines of a refusal that exited with `code`, without a traceback."""
  assert proc.returncode == code, (proc.returncode, proc.stderr[-3000:])
  assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert lines and lines[0].startswith('error: '), proc.stderr[-3000:]
  return lines


def assert_one_line_error(proc, *needles, code):
  lines = error_lines(proc, code)
  assert len(lines) == 1, proc.stderr[-3000:]
  for needle in needles:
    assert needle in lines[0], lines[0]


def run(script, *args, env=None):
  return subprocess.run([sys.executable, script, *args], cwd=REPO, env=env or cli_env(),
                        capture_output=True, text=True, timeout=300)


@pytest.fixture
def paths(tmp_path):
  """(workdir, out, a file) of one invocation; the workdir and out do not exist yet."""
  a_file = tmp_path / 'notes.txt'
  a_file.write_text('precious')
  return tmp_path / 'runs', tmp_path / 'out', a_file


def assert_untouched(paths):
  workdir, out, a_file = paths
  assert not workdir.exists() and not out.exists()
  assert a_file.read_text() == 'precious'


@pytest.mark.parametrize('script, args, needles', [
    (SCRIPT, ['--foo'], ['unrecognized arguments: --foo', 'iclr22_fig3a.py --help']),
    (SCRIPT, ['--data=mnist'], ["--data='mnist' is not allowed", 'digits, cifar10']),
    (RUN_ALL, ['no_such_table'], ['unknown experiment(s) no_such_table', 'gao_table1']),
    (RUN_ALL, ['--data=gtsrb', 'gao_table1'], ['gao_table1 runs on', 'not --data=gtsrb']),
], ids=['flag', 'data', 'run_all-name', 'run_all-unsupported'])
def test_usage_mistakes_are_one_line(paths, script, args, needles):
  workdir, out, _ = paths
  proc = run(script, '--tiny', f'--workdir={workdir}', f'--out={out}', *args)
  assert_one_line_error(proc, *needles, code=2)
  assert_untouched(paths)


@pytest.mark.parametrize('script', [SCRIPT, RUN_ALL], ids=os.path.basename)
@pytest.mark.parametrize('flag, place, needle', [
    ('--workdir', 'under', 'lies under the file'),
    ('--out', 'at', 'is a file, not a directory'),
])
def test_unusable_workdir_and_out_are_one_line_before_training(paths, script, flag, place,
                                                               needle):
  workdir, out, a_file = paths
  bad = str(a_file / 'x') if place == 'under' else str(a_file)
  args = {'--workdir': str(workdir), '--out': str(out), flag: bad}
  proc = run(script, '--tiny', *(f'{k}={v}' for k, v in args.items()))
  assert_one_line_error(proc, f'{flag}={bad}', needle, code=2)
  assert_untouched(paths)


def test_a_dataset_not_prepared_is_refused_before_anything_is_written(paths, tmp_path):
  # TFDS looks in an empty folder: the copy is missing whatever this machine holds.
  workdir, out, _ = paths
  env = cli_env(TFDS_DATA_DIR=str(tmp_path / 'tfds'))
  for script in (SCRIPT, RUN_ALL):
    proc = run(script, '--tiny', '--data=cifar10', f'--workdir={workdir}', f'--out={out}', env=env)
    # The dataset's message goes on with how to prepare it, as `python -m abd_jax.main`'s.
    lines = error_lines(proc, 1)
    assert "dataset 'cifar10'" in lines[0] and len([l for l in lines if 'error' in l]) == 1
  assert_untouched(paths)


def test_damaged_results_are_named_before_training(paths):
  workdir, out, _ = paths
  out.mkdir()
  (out / 'iclr22_fig3a.json').write_text('{"digits": ')
  proc = run(SCRIPT, '--tiny', f'--workdir={workdir}', f'--out={out}')
  assert_one_line_error(proc, 'iclr22_fig3a.json', 'damaged', 'restore it', code=1)
  assert not workdir.exists() and os.listdir(out) == ['iclr22_fig3a.json']


@pytest.mark.parametrize('damage, needle', [
    (lambda out: (out / 'x.json').write_text('[]'), 'x.json is damaged'),
    (lambda out: (out / 'x.json').write_text('{"digits": {"command": "c"}}'), 'x.json is damaged'),
    (lambda out: (out / 'x.csv').write_bytes(b'\xff\xfe\x00'), 'x.csv is damaged'),
    (lambda out: (out / 'x.md').mkdir(), 'x.md is a directory'),
    (lambda out: (out / 'x.png').mkdir(), 'x.png is a directory'),
], ids=['json-list', 'json-record', 'csv-binary', 'md-directory', 'png-directory'])
def test_every_output_that_cannot_be_kept_is_named(tmp_path, damage, needle):
  damage(tmp_path)
  with pytest.raises(ReproductionError, match=needle):
    runner.read_outputs(str(tmp_path), 'x')


def test_an_arm_directory_under_a_file_is_one_line_before_training(paths):
  workdir, out, _ = paths
  workdir.mkdir()
  (workdir / 'digits').write_text('in the way')
  proc = run(SCRIPT, '--tiny', f'--workdir={workdir}', f'--out={out}')
  assert_one_line_error(proc, 'iclr22_fig3a, arm grid', 'lies under the file', code=1)
  assert os.listdir(workdir) == ['digits'] and not out.exists()


def test_a_point_refused_by_the_data_stops_the_experiment_before_its_first_arm(tmp_path):
  # The second arm's target class does not exist on digits: found before the first trains.
  def arms(data):
    return [Arm('fine', keys={}, config=load('configs/badnets.py', data)),
            Arm('bad', keys={}, config=load('configs/badnets.py', data, attack__target=10))]

  experiment = Reproduction('iclr22_fig3a', papers=('iclr22_fig3a',), arms=arms)
  with pytest.raises(ReproductionError, match='iclr22_fig3a, arm bad, point base: .*attack.target'):
    runner.run(experiment, 'digits', str(tmp_path / 'runs'), str(tmp_path / 'out'), verbose=False)
  assert not (tmp_path / 'runs').exists() and not (tmp_path / 'out').exists()


def test_an_interrupted_script_says_the_same_command_resumes(paths):
  workdir, out, _ = paths
  proc = subprocess.Popen([sys.executable, SCRIPT, '--tiny', f'--workdir={workdir}', f'--out={out}'],
                          cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  line = proc.stdout.readline()  # printed after every check, as the first arm starts
  assert 'arm grid' in line, (line, proc.stderr.read()[-3000:] if proc.poll() is not None else '')
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=300)
  proc.stderr = stderr
  assert_one_line_error(proc, 'interrupted (SIGTERM)', f'the work in {workdir}',
                        'run the same command again to resume', code=128 + signal.SIGTERM)
  assert not out.exists()
