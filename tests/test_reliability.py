"""What a user can get wrong, run as a user would (subprocesses): every mistake is one line
on stderr with a non-zero exit code and leaves the workdir as it was; one run per workdir
at a time; interruptions say how to resume; --overwrite restarts; progress without a
terminal is plain lines."""

import os
import signal
import subprocess
import sys
import time

import pytest

from cli import FAST, REPO, cli_command, cli_env, read_json, read_jsonl, run_cli

from abd_jax import workdir as workdir_lib

pytestmark = pytest.mark.slow

SHORT = ('--config.train.epochs=1', '--config.perturb.steps=1', '--config.eval.steps=1',
         '--config.log.progress=false')


def assert_one_line_error(proc, *needles, code=None):
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert proc.returncode != 0 and (code is None or proc.returncode == code), proc.stderr[-3000:]
  assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  assert len(lines) == 1, proc.stderr[-3000:]
  assert lines[0].startswith('error: '), lines
  for needle in needles:
    assert needle in lines[0], lines[0]


def write_config(tmp_path, name, text):
  path = tmp_path / name
  path.write_text(text)
  return str(path)


def config_file_cases(tmp_path):
  syntax = write_config(tmp_path, 'syntax.py', 'def get_config(:\n  pass\n')
  raises = write_config(tmp_path, 'raises.py', 'def get_config(arg=None):\n  raise ValueError("no such preset here")\n')
  not_dict = write_config(tmp_path, 'not_dict.py', 'def get_config(arg=None):\n  return {"seed": 0}\n')
  no_get = write_config(tmp_path, 'no_get.py', 'CONFIG = 1\n')
  missing = str(tmp_path / 'missing.py')
  return [
      ([f'--config={syntax}'], ['syntax.py', 'syntax error on line 1']),
      ([f'--config={raises}'], ['raises.py', 'ValueError: no such preset here']),
      ([f'--config={not_dict}:digits'], ['not_dict.py', "get_config('digits')", 'dict', 'ConfigDict']),
      ([f'--config={no_get}'], ['no_get.py', 'defines no get_config()']),
      ([f'--config={missing}'], ['missing.py', 'no config file']),
      ([f'--config={missing}', '--config.seed=1'], ['missing.py', 'no config file']),
      (['--config=configs/quickstart.py:digits', '--foo'], ['unknown flag --foo', '--workdir']),
      (['--config=configs/quickstart.py:digits', '--config.sed=1'], ['does not exist', 'seed']),
      (['--config=configs/quickstart.py:nopreset'], ["get_config('nopreset')", 'digits']),
  ]


def test_config_file_and_flag_mistakes_are_one_line(tmp_path):
  for args, needles in config_file_cases(tmp_path):
    workdir = tmp_path / 'run'
    proc = subprocess.run([sys.executable, '-m', 'abd_jax.main', *args, f'--workdir={workdir}'],
                          cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert_one_line_error(proc, *needles, code=2)
    assert not workdir.exists(), args


def test_unusable_workdirs_are_one_line(tmp_path):
  a_file = tmp_path / 'notes.txt'
  a_file.write_text('precious')
  cases = [('', 'is empty'), (str(a_file), 'is a file'), (str(a_file / 'run'), 'lies under the file'),
           ('/proc/abd_jax_cannot_exist/run', 'cannot be created')]
  for workdir, needle in cases:
    proc = subprocess.run(cli_command(workdir, *SHORT), cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=300)
    assert_one_line_error(proc, needle, code=2)
  assert a_file.read_text() == 'precious'


@pytest.mark.parametrize('overrides, needles', [
    (('--config.model.name=vgg16',), ['model.name', '8']),
    (('--config.attack.name=badnets', '--config.attack.patch_size=9'), ['attack.patch_size']),
    (('--config.train.batch_size=4096',), ['train.batch_size', '1437']),
    (('--config.attack.target=10',), ['attack.target']),
])
def test_refusals_that_need_the_data_leave_the_workdir_untouched(tmp_path, overrides, needles):
  workdir = tmp_path / 'run'
  proc = run_cli(workdir, *SHORT, *overrides, check=False)
  assert_one_line_error(proc, *needles)
  assert not workdir.exists()
  workdir.mkdir()  # an existing empty workdir stays empty
  proc = run_cli(workdir, *SHORT, *overrides, check=False)
  assert proc.returncode != 0 and os.listdir(workdir) == []


def test_corrected_command_after_a_late_refusal_needs_no_overwrite(tmp_path):
  # A clean-label rate larger than the class is found with the data; the corrected
  # command then runs in the same workdir without --overwrite.
  workdir = tmp_path / 'run'
  bad = run_cli(workdir, *SHORT, '--config.attack.name=badnets', '--config.attack.label_mode=clean',
                '--config.attack.poison_rate=0.5', check=False)
  assert_one_line_error(bad, 'attack.poison_rate')
  assert not workdir.exists()
  run_cli(workdir, *SHORT, '--config.attack.name=badnets', '--config.attack.label_mode=clean',
          '--config.attack.poison_rate=0.05')
  assert (workdir / 'results.json').exists()


def test_lock_refuses_a_second_holder_in_the_same_process(tmp_path):
  with workdir_lib.locked(str(tmp_path / 'run')):
    with pytest.raises(workdir_lib.WorkdirError, match=f'process {os.getpid()} on'):
      with workdir_lib.locked(str(tmp_path / 'run')):
        pass
  with workdir_lib.locked(str(tmp_path / 'run')):  # released at the end of the block
    pass


def wait_for(path, proc, timeout=120):
  deadline = time.time() + timeout
  while not os.path.exists(path):
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    assert time.time() < deadline, f'{path} never appeared'
    time.sleep(0.1)


def start(workdir, *overrides):
  return subprocess.Popen(cli_command(workdir, *overrides), cwd=REPO, env=cli_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_second_process_on_a_workdir_is_refused_and_the_first_finishes(tmp_path):
  workdir = tmp_path / 'run'
  args = (*FAST, '--config.train.epochs=4')
  first = start(workdir, *args)
  wait_for(workdir / 'config.json', first)
  second = run_cli(workdir, *args, check=False)
  assert_one_line_error(second, str(workdir), f'process {first.pid} on', 'in use')
  _, err = first.communicate(timeout=600)
  assert first.returncode == 0, err[-3000:]
  epochs = [r['epoch'] for r in read_jsonl(workdir / 'metrics.jsonl')]
  assert epochs == [1, 2, 3, 4]


def interrupt(workdir, args, sig, wait_on):
  proc = start(workdir, *args)
  wait_for(workdir / wait_on, proc)
  proc.send_signal(sig)
  _, proc.stderr = proc.communicate(timeout=300)
  assert_one_line_error(proc, 'interrupted', signal.Signals(sig).name, str(workdir),
                        'same command', code=128 + sig)


def test_interrupt_says_how_to_resume_and_the_same_command_does(tmp_path):
  workdir = tmp_path / 'run'
  args = (*FAST, '--config.train.epochs=2', '--config.perturb.steps=1')
  interrupt(workdir, args, signal.SIGINT, 'config.json')  # compiling, or in the first epoch
  interrupt(workdir, args, signal.SIGTERM, 'checkpoints/1')  # a cluster's preemption
  assert not (workdir / 'results.json').exists()
  run_cli(workdir, *args)
  assert [r['epoch'] for r in read_jsonl(workdir / 'metrics.jsonl')] == [1, 2]


def test_damaged_results_are_recomputed_overwrite_restarts_damaged_config_is_one_line(tmp_path):
  workdir = tmp_path / 'run'
  run_cli(workdir, *SHORT, '--config.perturb.name=none')
  results = read_json(workdir / 'results.json')
  # A truncated results.json of a finished run is recomputed from its final checkpoint.
  (workdir / 'results.json').write_text('{"clean_acc": 0.9')
  proc = run_cli(workdir, *SHORT, '--config.perturb.name=none')
  assert 'results.json' in proc.stderr and 'recomputing' in proc.stderr
  assert read_json(workdir / 'results.json') == results
  # --overwrite on the finished run of the same config starts it over.
  (workdir / 'marker.txt').write_text('from the first run')
  again = run_cli(workdir, *SHORT, '--config.perturb.name=none', '--overwrite')
  assert 'already holds the finished run' not in again.stdout
  assert not (workdir / 'marker.txt').exists()
  assert read_json(workdir / 'results.json') == results  # started over, deterministically
  assert len(read_jsonl(workdir / 'metrics.jsonl')) == 1
  # A damaged config.json: which run the workdir holds is unknown; one line.
  config = (workdir / 'config.json').read_text()
  for damaged in ('', '[1, 2]', config[:len(config) // 2]):
    (workdir / 'config.json').write_text(damaged)
    proc = run_cli(workdir, *SHORT, '--config.perturb.name=none', check=False)
    assert_one_line_error(proc, 'config.json', 'damaged', '--overwrite')


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(tmp_path):
  (tmp_path / 'thesis.tex').write_text('precious')
  proc = run_cli(tmp_path, *SHORT, '--overwrite', check=False)
  assert_one_line_error(proc, 'holds no config.json', 'only workdirs of this library')
  assert (tmp_path / 'thesis.tex').read_text() == 'precious'


def test_progress_without_a_terminal_is_plain_lines(tmp_path):
  proc = subprocess.run(cli_command(tmp_path / 'run', '--config.train.epochs=2',
                                    '--config.perturb.steps=1', '--config.eval.steps=1'),
                        cwd=REPO, env=cli_env(ABD_JAX_PROGRESS_INTERVAL='0'),
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = [line for line in proc.stderr.splitlines() if line.startswith('train:')]
  assert '\r' not in proc.stderr and len(lines) >= 2, proc.stderr[-3000:]
  assert lines[-1].startswith('train: 100%') and 'img/s' in lines[-1]
