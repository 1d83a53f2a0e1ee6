"""Times a G-point grid run as one sweep (`python -m abd_jax.sweep`) against the same G
points run as G separate `python -m abd_jax.main` processes, one after another — how each
point runs alone, and how a per-config toolbox runs a grid.

Each side runs in fresh processes and fresh workdirs. Printed per side:
  wall s      wall time of all its processes (interpreter start-up included)
  img/s       trained images of all points / wall s
  compile, data, poison, train
              shares of the wall time: XLA compilation (JAX's own compile events), dataset
              loading, poisoning, and training + evaluation (compilation overlaps it), from
              the timing.json every run and sweep writes
  ceiling     achieved training FLOP/s / peak FLOP/s, with (2K+3)·F FLOPs per trained image
              (K attack steps, F = the forward FLOPs per image from XLA's CPU cost analysis)
and the sweep's speed-up over the processes.

Examples:
  python benchmarks/sweep.py                                 # 4 digits points on this machine
  python benchmarks/sweep.py --executions=sequential,vmap --alphas=0.2,0.4,0.6,0.8,1.0,0.3,0.5,0.7
  python benchmarks/sweep.py --json=bench.jsonl --epochs=8
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--config', default='configs/sweeps/eps_alpha.py:digits', help='sweep config')
  p.add_argument('--alphas', default='0.2,0.4,0.6,1.0', help='trigger strengths: one point each')
  p.add_argument('--eps', type=float, default=0.1, help='AT budget of every point (step eps/4)')
  p.add_argument('--epochs', type=int, default=3)
  p.add_argument('--executions', default='auto',
                 help='comma-separated sweep.execution values to time (auto, sequential, vmap)')
  p.add_argument('--no_processes', action='store_true', help='time only the sweep side')
  p.add_argument('--peak_tflops', type=float, default=None,
                 help='peak FLOP/s in TFLOP/s (default: a measured float32 matmul on CPU, the '
                 'datasheet on H100/H200)')
  p.add_argument('--json', default=None, help='append one JSON line per side to this file')
  return p.parse_args(argv)


def grid_overrides(args) -> list[str]:
  return [f'--config.sweep.axes.alpha.values=({args.alphas},)',
          f'--config.sweep.axes.eps.values=(({args.eps!r}, {args.eps / 4!r}),)',
          f'--config.train.epochs={args.epochs}', f'--config.eval.every_epochs={args.epochs}',
          '--config.log.progress=false']


def timed(cmd: list[str]) -> float:
  env = dict(os.environ, PYTHONUNBUFFERED='1')
  start = time.perf_counter()
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
  wall = time.perf_counter() - start
  if proc.returncode != 0:
    sys.exit(f'failed: {shlex.join(cmd)}\n{proc.stderr[-3000:]}')
  return wall


def read_json(path: str):
  with open(path) as f:
    return json.load(f)


def training_flops_per_image(config: dict) -> float:
  """(2K+3)·F: K attack steps, F the forward FLOPs per image counted from the model's
  operation shapes (abd_jax.models.flops; the same on every backend)."""
  from abd_jax.data import load_dataset
  from abd_jax.models import create_model
  from abd_jax.models.flops import adversarial_training_flops, forward_flops
  import ml_collections
  data = load_dataset(ml_collections.ConfigDict(config['dataset']), config['seed'])
  m = config['model']
  model = create_model(m['name'], data.num_classes, m['width'], m['dtype'])
  steps = config['perturb']['steps'] if config['perturb']['name'] != 'none' else 0
  return adversarial_training_flops(forward_flops(model, data.image_shape), steps)


def peak(args) -> tuple[float, str]:
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  from train_step import peak_tflops  # noqa: E402
  return peak_tflops('float32', args.peak_tflops)


def side(name: str, wall: float, timings: list[dict], images: int, flops_per_image: float,
         peak_tflops: float, points: int) -> dict:
  total = {k: sum(t.get(k, 0.0) for t in timings) for k in ('compile', 'data', 'poison', 'train')}
  return {'side': name, 'points': points, 'wall_s': wall, 'images': images,
          'images_per_sec': images / wall,
          **{f'{k}_share': v / wall for k, v in total.items()},
          'ceiling': images * flops_per_image / wall / (peak_tflops * 1e12)}


def main(argv=None) -> None:
  args = parse_args(argv)
  import jax
  peak_tflops, peak_source = peak(args)
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    record = None
    for execution in args.executions.split(','):
      workdir = os.path.join(tmp, f'sweep_{execution}')
      cmd = [sys.executable, '-m', 'abd_jax.sweep', f'--config={args.config}',
             f'--workdir={workdir}', *grid_overrides(args), f'--config.sweep.execution={execution}']
      wall = timed(cmd)
      record = read_json(os.path.join(workdir, 'sweep.json'))
      results = [read_json(os.path.join(workdir, 'points', p['name'], 'results.json'))
                 for p in record['points']]
      config = record['config']
      images = sum(r['steps'] for r in results) * config['train']['batch_size']
      flops = training_flops_per_image(config)
      modes = '+'.join(sorted({g['execution'] for g in record['groups']}))
      rows.append(side(f'one sweep ({execution}: {modes})', wall,
                       [read_json(os.path.join(workdir, 'timing.json'))], images, flops,
                       peak_tflops, len(results)))
    if not args.no_processes:
      wall, timings = 0.0, []
      for p in record['points']:
        run_dir = os.path.join(tmp, 'alone', p['name'])
        cmd = [a if not a.startswith('--workdir=') else f'--workdir={run_dir}'
               for a in shlex.split(p['command'])]
        wall += timed([sys.executable, *cmd[1:], '--config.log.progress=false'])
        timings.append(read_json(os.path.join(run_dir, 'timing.json')))
      rows.append(side(f'{len(record["points"])} abd_jax.main processes', wall, timings, images,
                       flops, peak_tflops, len(record['points'])))

  versions = {m: importlib.metadata.version(m) for m in ('jax', 'flax', 'optax')}
  print(f'backend={jax.default_backend()} device={jax.devices()[0].device_kind} '
        f'devices={jax.device_count()} cpus={os.cpu_count()} {platform.processor() or platform.machine()} '
        + ' '.join(f'{k}={v}' for k, v in versions.items()))
  print(f'grid: {args.config}, {len(rows[0:1]) and rows[0]["points"]} points (alpha in '
        f'{{{args.alphas}}}, eps {args.eps}), {args.epochs} epochs; peak {peak_tflops:.3g} TFLOP/s '
        f'({peak_source})')
  header = f'{"":<34} {"wall s":>8} {"img/s":>8} {"compile":>8} {"data":>6} {"poison":>7} {"train":>6} {"ceiling":>8}'
  print(header)
  for r in rows:
    print(f'{r["side"]:<34} {r["wall_s"]:>8.1f} {r["images_per_sec"]:>8.0f} '
          f'{r["compile_share"]:>8.1%} {r["data_share"]:>6.1%} {r["poison_share"]:>7.1%} '
          f'{r["train_share"]:>6.1%} {r["ceiling"]:>8.2%}')
  if not args.no_processes:
    base = rows[-1]['wall_s']
    for r in rows[:-1]:
      print(f'{r["side"]}: {base / r["wall_s"]:.2f}x the speed of the separate processes')
  if args.json:
    with open(args.json, 'a') as f:
      for r in rows:
        f.write(json.dumps({**r, 'config': args.config, 'alphas': args.alphas, 'eps': args.eps,
                            'epochs': args.epochs, 'backend': jax.default_backend(),
                            'peak_tflops': peak_tflops, **versions}) + '\n')


if __name__ == '__main__':
  main()
