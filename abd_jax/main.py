"""Command line: `python -m abd_jax.main --config=configs/X.py[:preset] --workdir=DIR`.

Any config field can be overridden, e.g. `--config.perturb.eps=0.0313`; the config is
locked, so a misspelled field is an error.
"""

from absl import app, flags
from ml_collections import config_flags

from abd_jax import cli

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file, e.g. configs/quickstart.py:digits.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (created; resumed if it holds this run).')
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Delete what the workdir holds (another run, '
                               'or this one finished) and start again.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    cli.fail(f'unexpected arguments: {" ".join(argv[1:])}; every option is a --flag=VALUE', 2)
  from abd_jax import config as config_lib, experiment  # after the flags: mistakes fail fast
  cli.quiet_storage_logs()
  workdir = cli.check_workdir(_WORKDIR.value)
  # A sweep config runs here as its base point (the sweep's point commands add the values).
  config, _ = config_lib.split_sweep(cli.load_config(_CONFIG))
  cli.use_cpu_cores([config])
  with cli.interruptible(f'the run in {workdir}'):
    cli.run_or_exit(lambda: experiment.run(config, workdir, overwrite=_OVERWRITE.value))
    experiment.write_timing(workdir)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
