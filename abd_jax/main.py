"""Command line: `python -m abd_jax.main --config=configs/X.py[:preset] --workdir=DIR`.

Any config field can be overridden, e.g. `--config.perturb.eps=0.0313`; the config is
locked, so a misspelled field is an error.
"""

from absl import app, flags
from ml_collections import config_flags

from abd_jax import cli, experiment
from abd_jax import config as config_lib

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file, e.g. configs/quickstart.py:digits.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (created; resumed if it holds this run).')
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Delete a workdir that holds a different run.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  cli.quiet_storage_logs()
  # A sweep config runs here as its base point (the sweep's point commands add the values).
  config, _ = config_lib.split_sweep(cli.load_config(_CONFIG))
  cli.run_or_exit(lambda: experiment.run(config, _WORKDIR.value, overwrite=_OVERWRITE.value))
  experiment.write_timing(_WORKDIR.value)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
