"""What the command-line tools share: flag parsing with one-line errors, config loading,
quiet storage logs, and the errors shown without a traceback."""

from __future__ import annotations

import ast
import sys
from typing import Callable, TypeVar

from absl import flags, logging

from abd_jax.data import DatasetError
from abd_jax.errors import ConfigError
from abd_jax.train import CheckpointError, TrainingDivergedError
from abd_jax.workdir import WorkdirError

# Errors whose message tells the user what to do; a traceback would only hide it.
USER_ERRORS = (ConfigError, DatasetError, WorkdirError, CheckpointError, TrainingDivergedError)
T = TypeVar('T')


def fail(message: str, code: int) -> None:
  print(f'error: {message}', file=sys.stderr)
  sys.exit(code)


def parse_flags(argv):
  """absl's parser, with a one-line message for a bad config file, preset or override."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:  # raised by the locked ConfigDict
    text = str(e.args[0] if e.args else e)
    try:  # the message arrives as the repr of a KeyError's message
      text = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      pass
    fail('a --config override names a field that does not exist: '
         f'{" ".join(str(text).split())} The README lists every field.', 2)
  except flags.IllegalFlagValueError as e:  # the config file failed to load: keep its last line
    lines = [line for line in str(e).splitlines() if line.strip()]
    fail(f'{lines[0]} {lines[-1].strip() if len(lines) > 1 else ""}', 2)


def quiet_storage_logs() -> None:
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # storage libraries log every file at INFO


def load_config(config_flag):
  """The config of a `DEFINE_config_file` flag, or a one-line error and exit 2."""
  try:
    config = config_flag.value
    config.seed  # a config file that failed to load raises only when first read
  except (ValueError, OSError) as e:
    fail(' '.join(str(e).split()), 2)
  return config


def run_or_exit(fn: Callable[[], T], extra: tuple[type[Exception], ...] = ()) -> T:
  """fn(), with the user errors (and `extra` ones) printed as one line (exit 1)."""
  try:
    return fn()
  except USER_ERRORS + extra as e:
    fail(str(e), 1)
