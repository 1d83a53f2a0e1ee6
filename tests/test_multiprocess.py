"""Several processes of one job (a multi-host launch rehearsed on this machine: 2 local
processes on 127.0.0.1, one CPU device each, gloo collectives): a run, a vmapped sweep
whose 'runs' axis spans the processes, a sequential sweep and a detection defense compute
what one process with 2 devices computes; every process prints the same table; only
process 0 writes; a killed process stops the other with one line, and the rerun job
resumes."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cli import REPO, read_json, read_jsonl
from multiprocess import Job, run_job

pytestmark = pytest.mark.slow

SMOKE = ('--config.log.progress=false',)
SWEEP = ('--config=configs/sweeps/eps_alpha.py:digits,smoke',
         '--config.sweep.axes.eps.values=((0.0, 0.0), (0.1, 0.025))',
         '--config.sweep.axes.alpha.values=(0.2, 1.0)', '--config.log.progress=false')


def _table(stdout: str) -> str:
  """What a process printed, without the line gloo prints when it connects."""
  table = [line for line in stdout.splitlines() if not line.startswith('[Gloo]')]
  assert table
  return '\n'.join(table)


def _one_process(module, args):
  """The same command in one process with 2 CPU devices (the job's 2 devices)."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', JAX_NUM_CPU_DEVICES='2')
  env.pop('XLA_FLAGS', None)
  proc = subprocess.run([sys.executable, '-m', module, *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return proc


# The run of the first test and of the interruption test (the latter needs epochs to kill).
RUN = ('--config=configs/quickstart.py:digits', '--config.train.epochs=4',
       '--config.perturb.steps=2', '--config.eval.steps=2', *SMOKE)


@pytest.fixture(scope='module')
def one_process_run(tmp_path_factory):
  """RUN in one process with 2 devices: what the jobs below must reproduce."""
  workdir = tmp_path_factory.mktemp('one') / 'run'
  _one_process('abd_jax.main', [*RUN, f'--workdir={workdir}'])
  return workdir


def test_a_run_in_two_processes_equals_one_process_with_two_devices(tmp_path, one_process_run):
  job_dir = tmp_path / 'job'
  outs = run_job('abd_jax.main', [*RUN, f'--workdir={job_dir}'])
  assert read_json(job_dir / 'results.json') == read_json(one_process_run / 'results.json')
  # Every process prints the same table; only process 0 writes (one metrics line per epoch).
  assert _table(outs[0][1]) == _table(outs[1][1])
  assert [r['epoch'] for r in read_jsonl(job_dir / 'metrics.jsonl')] == [1, 2, 3, 4]
  assert sorted(os.listdir(job_dir)) == sorted(os.listdir(one_process_run))
  assert (sorted(os.listdir(job_dir / 'checkpoints'))
          == sorted(os.listdir(one_process_run / 'checkpoints')))


@pytest.mark.parametrize('execution', ['vmap', 'sequential'])
def test_a_sweep_in_two_processes_equals_one_process(tmp_path, execution):
  """vmap: the group's 'runs' axis is split over the two processes' devices."""
  args = [*SWEEP, f'--config.sweep.execution={execution}']
  job_dir, one_dir = tmp_path / 'job', tmp_path / 'one'
  outs = run_job('abd_jax.sweep', [*args, f'--workdir={job_dir}'])
  _one_process('abd_jax.sweep', [*args, f'--workdir={one_dir}'])
  assert (job_dir / 'results.csv').read_text() == (one_dir / 'results.csv').read_text()
  assert _table(outs[0][1]) == _table(outs[1][1])
  record = read_json(job_dir / 'sweep.json')
  assert (record['processes'], record['devices']) == (2, 2)
  assert {g['execution'] for g in record['groups']} == {execution}


def test_a_detection_defense_in_two_processes_equals_one_process(tmp_path):
  """A-ABL: its detector sub-run, the per-sample scoring of every training image (gathered
  from both processes) and the final training on the kept samples."""
  config = '--config=configs/aabl.py:digits,smoke'
  job_dir, one_dir = tmp_path / 'job', tmp_path / 'one'
  outs = run_job('abd_jax.main', [config, f'--workdir={job_dir}', *SMOKE])
  _one_process('abd_jax.main', [config, f'--workdir={one_dir}', *SMOKE])
  job, one = read_json(job_dir / 'results.json'), read_json(one_dir / 'results.json')
  assert job == one
  assert _table(outs[0][1]) == _table(outs[1][1])
  with np.load(job_dir / 'detection.npz') as a, np.load(one_dir / 'detection.npz') as b:
    np.testing.assert_array_equal(a['removed'], b['removed'])
    np.testing.assert_allclose(a['score'], b['score'], rtol=1e-6)


def test_a_killed_process_stops_the_other_with_one_line_and_the_job_resumes(tmp_path,
                                                                            one_process_run):
  """Process 1 is killed (SIGKILL) during training: process 0 notices at its next
  collective (the step's gradient all-reduce) and stops within seconds, with one line.
  The same job run again resumes from the last checkpoint and ends with the results of an
  uninterrupted run (the first test shows that a job computes what one process with 2
  devices computes)."""
  workdir = tmp_path / 'job'
  args = [*RUN, f'--workdir={workdir}']
  job = Job('abd_jax.main', args)
  deadline = time.monotonic() + 600
  while not (workdir / 'checkpoints' / '2').is_dir():  # killed once two epochs are saved
    assert time.monotonic() < deadline and job.procs[0].poll() is None, job.wait(5)
    time.sleep(0.2)
  job.procs[1].send_signal(signal.SIGKILL)
  killed_at = time.monotonic()
  code = job.procs[0].wait(timeout=120)
  stderr = job.procs[0].stderr.read()
  stopped_after = time.monotonic() - killed_at
  job.kill()
  assert code == 1, stderr[-3000:]
  lines = [line for line in stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith('error: process 0 of 2: another process of '
                                                 'this job stopped'), stderr[-3000:]
  assert stopped_after < 60
  run_job('abd_jax.main', args)
  assert read_json(workdir / 'results.json') == read_json(one_process_run / 'results.json')
  assert [r['epoch'] for r in read_jsonl(workdir / 'metrics.jsonl')] == [1, 2, 3, 4]
