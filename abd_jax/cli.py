"""What the command-line tools share: flag parsing with one-line errors, config loading,
workdir checks, interruption, quiet storage logs, and the errors shown without a traceback.

A user's mistake (a bad flag, a config file that does not load, a workdir that cannot be
used) and an interruption end in one line on stderr and a non-zero exit code; a traceback
is kept for the library's own bugs.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import os
import signal
import sys
import time
from typing import Callable, Iterator, TypeVar

import ml_collections
from absl import flags, logging

from abd_jax import interrupt
from abd_jax.workdir import WorkdirError, check_path

T = TypeVar('T')


def user_errors() -> tuple[type[Exception], ...]:
  """Errors whose message tells the user what to do; a traceback would only hide it.
  (Imported here, not at the top: a mistake on the command line is reported before the
  numerical libraries load.)"""
  from abd_jax.data import DatasetError
  from abd_jax.errors import ConfigError
  from abd_jax.train import CheckpointError, TrainingDivergedError
  return (ConfigError, DatasetError, WorkdirError, CheckpointError, TrainingDivergedError)


def fail(message: str, code: int, teardown: bool = True) -> None:
  """Prints one line and exits with `code`; without `teardown`, skips the interpreter's
  teardown (see `interruptible`)."""
  print(f'error: {message}', file=sys.stderr)
  if not teardown:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
  if _in_job():
    # One process of several: JAX's exit handler would wait at a shutdown barrier for
    # processes that may be gone, then abort with a page of its own logs. Process 0 hosts
    # JAX's coordination service and leaves last: the others, which usually fail at the
    # same point, would otherwise lose the service before they print their own line.
    sys.stdout.flush()
    sys.stderr.flush()
    if _process_index() == 0:
      time.sleep(_LAST_TO_LEAVE_S)
    os._exit(code)
  sys.exit(code)


_LAST_TO_LEAVE_S = 3.0


def _process_index() -> int:
  import jax
  return jax.process_index()


def _in_job() -> bool:
  """True in one process of a multi-process job (jax.distributed is up)."""
  if 'jax' not in sys.modules:
    return False
  from abd_jax import parallel
  return parallel.in_job()


def _one_line(text: str, limit: int = 300) -> str:
  return ' '.join(str(text).split())[:limit]


def _flag_value(argv: list[str], name: str) -> str | None:
  """The value of `--name=V` / `--name V` in argv (the last one given), or None."""
  value = None
  for i, arg in enumerate(argv[1:], 1):
    if arg.startswith(f'--{name}='):
      value = arg.split('=', 1)[1]
    elif arg == f'--{name}' and i + 1 < len(argv):
      value = argv[i + 1]
  return value


def use_cpu_cores(configs) -> None:
  """Before JAX starts: split a CPU host into one JAX device per usable core (as far as the
  runs' batch sizes allow: `config.device_batches`, `parallel.split_cpu`), so the
  data-parallel mesh uses every core. JAX_NUM_CPU_DEVICES=1 keeps one device. Left alone
  for multi-host runs. Says so on stdout: stderr holds only the one line of an error."""
  configs = list(configs)
  if any(c.distributed.initialize for c in configs):
    return
  from abd_jax import config as config_lib, parallel
  sizes = [b for c in configs for _, b in config_lib.device_batches(c)]
  n = parallel.split_cpu(sizes)
  if n:
    print(f'abd_jax: the CPU runs as {n} JAX devices, data parallel (one per core; '
          'JAX_NUM_CPU_DEVICES=1 keeps one)', flush=True)


def start_jax(configs) -> None:
  """Before JAX starts: the CPU split (`use_cpu_cores`) and the persistent compilation
  cache (`abd_jax.compile_cache`)."""
  use_cpu_cores(configs)
  from abd_jax import compile_cache
  compile_cache.enable()


def check_config_file(spec: str) -> ml_collections.ConfigDict:
  """Loads `'path[:preset]'` as ml_collections' config flag will, so that every way a
  config file can fail gives one line naming the file (exit 2)."""
  path, _, preset = spec.partition(':')
  if not os.path.isfile(path):
    fail(f'--config: there is no config file at {path!r} (the configs are in configs/, '
         'e.g. --config=configs/quickstart.py:digits)', 2)
  module_spec = importlib.util.spec_from_file_location('abd_jax_checked_config', path)
  if module_spec is None:
    fail(f'--config: {path} is not a Python file', 2)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except SyntaxError as e:
    fail(f'--config: {path} has a syntax error on line {e.lineno}: {e.msg}', 2)
  except Exception as e:  # anything the file's own code raises
    fail(f'--config: {path} failed to load: {type(e).__name__}: {_one_line(e)}', 2)
  get_config = getattr(module, 'get_config', None)
  if not callable(get_config):
    fail(f'--config: {path} defines no get_config(); a config file defines '
         'get_config(preset=None) returning an ml_collections.ConfigDict', 2)
  call = f'get_config({preset!r})' if preset else 'get_config()'
  try:
    config = get_config(preset) if preset else get_config()
  except Exception as e:
    fail(f'--config: {path}: {call} raised {type(e).__name__}: {_one_line(e)}', 2)
  if not isinstance(config, ml_collections.ConfigDict):
    fail(f'--config: {path}: {call} returned a {type(config).__name__}, not an '
         'ml_collections.ConfigDict', 2)
  return config


def _known_flags() -> str:
  own = flags.FLAGS.flags_by_module_dict().get(sys.argv[0], [])
  names = sorted({f'--{f.name}' for f in own})
  return ', '.join(names) + ' and --config.FIELD=VALUE overrides' if names else '--help'


def parse_flags(argv):
  """absl's parser, with one line for a bad flag, config file, preset or override."""
  spec = _flag_value(argv, 'config')
  if spec is not None:
    check_config_file(spec)
  try:
    return flags.FLAGS(argv)
  except flags.UnrecognizedFlagError as e:
    fail(f'unknown flag --{e.flagname}; this command takes {_known_flags()} (see --help)', 2)
  except (AttributeError, KeyError) as e:  # raised by the locked ConfigDict
    text = str(e.args[0] if e.args else e)
    try:  # the message arrives as the repr of a KeyError's message
      text = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      pass
    fail(f'a --config override names a field that does not exist: {_one_line(text)} '
         'The README lists every field.', 2)
  except flags.Error as e:  # a bad flag value; the config file failed to load: keep its last line
    lines = [line for line in str(e).splitlines() if line.strip()]
    fail(f'{lines[0]} {lines[-1].strip() if len(lines) > 1 else ""}'.strip(), 2)


def quiet_storage_logs() -> None:
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # storage libraries log every file at INFO


def load_config(config_flag):
  """The config of a `DEFINE_config_file` flag, or a one-line error and exit 2."""
  try:
    config = config_flag.value
    config.seed  # a config file that failed to load raises only when first read
  except (ValueError, OSError, AttributeError) as e:
    fail(_one_line(e), 2)
  return config


def check_workdir(workdir: str | None, flag: str = '--workdir') -> str:
  """`workdir`, or one line (exit 2) when it cannot be a run directory."""
  try:
    check_path(workdir or '', flag)
  except WorkdirError as e:
    fail(str(e), 2)
  return workdir


@contextlib.contextmanager
def interruptible(what: str) -> Iterator[None]:
  """SIGTERM behaves as Ctrl-C; either ends the block with one line saying that the same
  command resumes `what` (exit 128 + the signal's number, as a shell reports it). The
  run's `finally` blocks run first, so a checkpoint being written is completed. The exit
  then skips the interpreter's teardown: computations the interrupted step had queued may
  still be running on XLA's threads, and freeing the runtime under them can crash the
  process after its line (the workdir's lock is a flock, which the kernel releases)."""
  name = None
  with interrupt.handled():
    try:
      yield
    except KeyboardInterrupt as e:
      name = e.args[0] if e.args and e.args[0] in signal.Signals.__members__ else 'SIGINT'
    name = name or interrupt.received()
  if name is not None:
    fail(f'interrupted ({name}); {what} is kept: run the same command again to resume it',
         128 + signal.Signals[name].value, teardown=False)


def run_or_exit(fn: Callable[[], T], extra: tuple[type[Exception], ...] = ()) -> T:
  """fn(), with the user errors (and `extra` ones) printed as one line (exit 1)."""
  try:
    return fn()
  except user_errors() + extra as e:
    fail(str(e), 1)
  except Exception as e:  # noqa: BLE001 - anything else is a bug, unless a peer is gone
    from abd_jax import parallel
    lost = parallel.lost_peer(e)
    if lost is None:
      raise
    fail(lost, 1)
