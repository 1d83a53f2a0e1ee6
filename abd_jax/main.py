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
_LEAVE_SWEEP = flags.DEFINE_bool('leave_sweep', False, 'With --overwrite on a point of a sweep '
                                 '(SWEEP/points/NAME): take the point out of its sweep, whose '
                                 'reruns and reports then refuse the folder until it is moved '
                                 'away.')
_SWEEP_POINT = flags.DEFINE_bool('sweep_point', False, 'The config is a sweep config: run its '
                                 'experiment part alone, the point\'s values given as --config '
                                 'overrides (the commands in a sweep\'s sweep.json pass it).')
flags.mark_flags_as_required(['config', 'workdir'])


def _refuse_sweep_config(config) -> None:
  """A sweep config is a grid, not a run: without --sweep_point it would train an arbitrary
  point (the config's defaults) as if it were the sweep."""
  if 'sweep' in config and not _SWEEP_POINT.value:
    spec = config_flags.get_config_filename(flags.FLAGS['config'])
    cli.fail(f'--config={spec} has a `sweep` block: it is a sweep config, run it with python '
             f'-m abd_jax.sweep --config={spec} --workdir=DIR (one point of it alone: its command '
             'in DIR/sweep.json, which passes --sweep_point)', 2)


def _refuse_overwriting_a_point(workdir: str) -> None:
  """--overwrite on a sweep's point would put another run in the sweep's cell (or restart it
  under a running sweep): only with --leave_sweep, which says the point leaves the sweep."""
  if not _OVERWRITE.value or _LEAVE_SWEEP.value:
    return
  from abd_jax.sweep import engine
  sweep_dir = engine.sweep_of_point(workdir)
  if sweep_dir is not None:
    cli.fail(f'--workdir={workdir} is a point of the sweep in {sweep_dir}: --overwrite would '
             f'replace the sweep\'s run; rerun the sweep (python -m abd_jax.sweep '
             f'--workdir={sweep_dir} ...) to retrain it, or add --leave_sweep to take the point '
             'out of its sweep', 2)


def main(argv):
  if len(argv) > 1:
    cli.fail(f'unexpected arguments: {" ".join(argv[1:])}; every option is a --flag=VALUE', 2)
  from abd_jax import config as config_lib, experiment  # after the flags: mistakes fail fast
  cli.quiet_storage_logs()
  workdir = cli.check_workdir(_WORKDIR.value)
  config = cli.load_config(_CONFIG)
  _refuse_sweep_config(config)
  _refuse_overwriting_a_point(workdir)
  # A sweep point's command gives the swept values as overrides of the experiment part.
  config, _ = config_lib.split_sweep(config)
  cli.start_jax([config])
  with cli.interruptible(f'the run in {workdir}'):
    cli.run_or_exit(lambda: experiment.run(config, workdir, overwrite=_OVERWRITE.value))
    experiment.write_timing(workdir)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
