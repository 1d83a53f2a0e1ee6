"""Runs every reproduction script (or the ones named) on one dataset, one after another in
one process (compiled programs and loaded data are reused across scripts), and prints the
wall time of each.

    python experiments/run_all.py                        # every script on digits
    python experiments/run_all.py --data=digits32 gao_image_size   # name them: every Gao
                                          # script accepts digits32 (20+ min each)
    python experiments/run_all.py --tiny --out=/tmp/x    # all at test size

A script that does not support the dataset is skipped (named, it is an error). Each writes
experiments/results/NAME.* as if run alone; rerun after an interruption, finished points
are kept.
"""

import glob
import os
import runpy
import time

from abd_jax import cli
from abd_jax.reproduce import runner
from abd_jax.reproduce.spec import DATA

HERE = os.path.dirname(os.path.abspath(__file__))


def scripts(names):
  paths = sorted(p for p in glob.glob(os.path.join(HERE, '*.py'))
                 if os.path.basename(p) != os.path.basename(__file__))
  known = {os.path.splitext(os.path.basename(p))[0]: p for p in paths}
  unknown = [n for n in names if n not in known]
  if unknown:
    cli.fail(f'unknown experiment(s) {", ".join(unknown)}: one of {", ".join(known)}', 2)
  return [known[n] for n in names] if names else paths


def run_all(experiments, args):
  """Checks every experiment (paths, configs, data) before the first one trains, then runs
  them one after another."""
  cli.start_jax(c for e in experiments for c in runner.point_configs(e, args.data, args.tiny))
  plans = [runner.plan(e, args.data, args.workdir, args.out, args.tiny) for e in experiments]
  runner.preflight(plans)
  times = []
  for plan in plans:
    start = time.time()
    runner.execute(plan, command=f'python experiments/{plan.experiment.name}.py --data={args.data}'
                   + (' --tiny' if args.tiny else ''), verbose=False)
    times.append(time.time() - start)
    print(f'{plan.experiment.name}: {times[-1] / 60:.1f} min', flush=True)
  print(f'all: {sum(times) / 60:.1f} min')


def main():
  parser = runner.Parser(description=__doc__.split('\n')[0])
  parser.add_argument('names', nargs='*', help='experiment names (default: all)')
  parser.add_argument('--data', default='digits')
  parser.add_argument('--workdir', default='runs/experiments')
  parser.add_argument('--out', default=runner.RESULTS_DIR)
  parser.add_argument('--tiny', action='store_true')
  args = parser.parse_args()
  if args.data not in DATA:
    parser.error(f'--data={args.data!r} is not allowed: one of {", ".join(DATA)}')
  paths = scripts(args.names)
  runner.check_paths(args.workdir, args.out)
  experiments = supporting([runpy.run_path(path)['EXPERIMENT'] for path in paths], args)
  runner.guarded(args.workdir, lambda: run_all(experiments, args))


def supporting(experiments, args):
  """The experiments that run on --data; one named that does not is a usage error."""
  kept = []
  for experiment in experiments:
    if args.data in experiment.datasets:
      kept.append(experiment)
    elif args.names:
      cli.fail(f'{experiment.name} runs on {", ".join(experiment.datasets)}, not '
               f'--data={args.data}', 2)
    else:
      print(f'{experiment.name}: skipped (runs on {", ".join(experiment.datasets)})')
  return kept


if __name__ == '__main__':
  main()
