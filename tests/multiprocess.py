"""Several processes of one job on this machine, as a cluster would start them: every
process runs the same command with its own `distributed.process_id`, the coordinator on
127.0.0.1, one CPU device each, gloo collectives between them."""

import os
import socket
import subprocess
import sys
import time

from cli import REPO


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def job_flags(process_id: int, num_processes: int, port: int, heartbeat: int = 100) -> list[str]:
  return ['--config.distributed.initialize=true',
          f'--config.distributed.coordinator_address=127.0.0.1:{port}',
          f'--config.distributed.num_processes={num_processes}',
          f'--config.distributed.process_id={process_id}',
          f'--config.distributed.heartbeat_timeout={heartbeat}']


def job_env(devices_per_process: int = 1) -> dict:
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONUNBUFFERED='1',
             JAX_NUM_CPU_DEVICES=str(devices_per_process))
  env.pop('XLA_FLAGS', None)
  return env


class Job:
  """`num_processes` processes of `python -m MODULE ARGS` started together."""

  def __init__(self, module: str, args, num_processes: int = 2, heartbeat: int = 100):
    port = free_port()
    self.procs = [subprocess.Popen(
        [sys.executable, '-m', module, *args, *job_flags(i, num_processes, port, heartbeat)],
        cwd=REPO, env=job_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(num_processes)]

  def wait(self, timeout: float = 900) -> list[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of every process, in process order."""
    deadline = time.monotonic() + timeout
    out = []
    try:
      for p in self.procs:
        stdout, stderr = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        out.append((p.returncode, stdout, stderr))
    finally:
      self.kill()
    return out

  def kill(self) -> None:
    for p in self.procs:
      if p.poll() is None:
        p.kill()
        p.communicate()


def _ends(text: str, size: int = 2500) -> str:
  return text if len(text) <= 2 * size else f'{text[:size]}\n[...]\n{text[-size:]}'


def run_job(module: str, args, num_processes: int = 2, timeout: float = 900):
  """Runs a job to its end; asserts every process exits 0. Returns their outputs."""
  outs = Job(module, args, num_processes).wait(timeout)
  assert all(code == 0 for code, _, _ in outs), '\n'.join(
      f'process {i} exited {code}\nstdout:\n{stdout[-2000:]}\nstderr:\n{_ends(stderr)}'
      for i, (code, stdout, stderr) in enumerate(outs))
  return outs
