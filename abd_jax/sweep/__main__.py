"""Command line: `python -m abd_jax.sweep --config=configs/sweeps/X.py[:preset] --workdir=DIR`.

Any field of the experiment or of its `sweep` block can be overridden, e.g.
`--config.train.epochs=5` or `--config.sweep.axes.alpha.values="(0.2, 1.0)"`.
`--report` rebuilds results.csv, results.jsonl and the figures of DIR without running.
"""

from absl import app, flags
from ml_collections import config_flags

from abd_jax import cli
from abd_jax import config as config_lib
from abd_jax.sweep import engine, grid
from abd_jax.sweep.grid import SweepError

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Sweep config file, e.g. configs/sweeps/eps_alpha.py:digits.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Sweep directory (created; resumed if it holds '
                               'this sweep).')
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Delete what the workdir holds (another sweep, '
                               'or this one) and start again.')
_REPORT = flags.DEFINE_bool('report', False, 'Only rebuild the table, CSV and figures of --workdir.')
flags.mark_flags_as_required(['workdir'])


def main(argv):
  if len(argv) > 1:
    cli.fail(f'unexpected arguments: {" ".join(argv[1:])}; every option is a --flag=VALUE', 2)
  cli.quiet_storage_logs()
  workdir = cli.check_workdir(_WORKDIR.value)
  if _REPORT.value:
    _fail_on_missing(cli.run_or_exit(lambda: engine.report_only(workdir), extra=(SweepError,)),
                     workdir)
    return
  if _CONFIG.value is None:
    cli.fail('--config is required (a sweep config, e.g. configs/sweeps/eps_alpha.py:digits), '
             'unless --report only rebuilds the report of --workdir', 2)
  config = cli.load_config(_CONFIG)
  spec = config_flags.get_config_filename(flags.FLAGS['config'])
  file_config = cli.run_or_exit(lambda: config_lib.load_file(spec), extra=(SweepError,))
  points = cli.run_or_exit(lambda: grid.expand(config), extra=(SweepError,))
  cli.start_jax(p.config for p in points)
  with cli.interruptible(f'the sweep in {workdir}'):
    rows = cli.run_or_exit(lambda: engine.run(config, workdir, overwrite=_OVERWRITE.value,
                                              config_spec=spec, file_config=file_config),
                           extra=(SweepError,))
  _fail_on_missing(rows, workdir)


def _fail_on_missing(rows, workdir: str) -> None:
  """Exit 1 with one line when a row has no results (a failed point, one not finished, one
  whose folder holds another run): the table was written, but it is not the whole sweep."""
  failed = [row['point'] for row in rows if row.get('error')]
  if failed:
    cli.fail(f'{len(failed)} of {len(rows)} points failed or have no results '
             f'({", ".join(failed[:5])}{", ..." if len(failed) > 5 else ""}): the `error` column '
             f'of the table and of {workdir}/results.csv says why; the other points are there '
             'too', 1)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
