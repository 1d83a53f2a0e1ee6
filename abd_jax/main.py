"""Command line: `python -m abd_jax.main --config=configs/X.py[:preset] --workdir=DIR`.

Any config field can be overridden, e.g. `--config.perturb.eps=0.0313`; the config is
locked, so a misspelled field is an error.
"""

import ast
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from abd_jax import experiment
from abd_jax.config import ConfigError
from abd_jax.data import DatasetError
from abd_jax.train import CheckpointError, TrainingDivergedError
from abd_jax.workdir import WorkdirError

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file, e.g. configs/quickstart.py:digits.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (created; resumed if it holds this run).')
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Delete a workdir that holds a different run.')
flags.mark_flags_as_required(['config', 'workdir'])

# Errors whose message tells the user what to do; a traceback would only hide it.
USER_ERRORS = (ConfigError, DatasetError, WorkdirError, CheckpointError, TrainingDivergedError)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # storage libraries log every file at INFO
  try:
    config = _CONFIG.value
    config.seed  # a config file that failed to load raises only when first read
  except (ValueError, OSError) as e:
    print('error: ' + ' '.join(str(e).split()), file=sys.stderr)
    sys.exit(2)
  try:
    experiment.run(config, _WORKDIR.value, overwrite=_OVERWRITE.value)
  except USER_ERRORS as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)


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
    text = ' '.join(str(text).split())
    print(f'error: a --config override names a field that does not exist: {text} '
          'The README lists every field.', file=sys.stderr)
  except flags.IllegalFlagValueError as e:  # the config file failed to load: keep its last line
    lines = [line for line in str(e).splitlines() if line.strip()]
    print(f'error: {lines[0]} {lines[-1].strip() if len(lines) > 1 else ""}', file=sys.stderr)
  sys.exit(2)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
