"""Largest batch of the PGD-AT training step (`train_step.py`'s step) that fits on the device.

    python benchmarks/memory.py --models=resnet18,resnet34 [--dtype=bfloat16] [--unroll=auto]
    python benchmarks/memory.py --models=cnn --memory_gib=1   # CPU: no device limit, give one

For each model: compile the step at two batch sizes and read XLA's memory analysis of the
compiled program (arguments + outputs - donated aliases + temporaries, the dataset of 4
batches included), fit bytes = a + b·B, and predict the largest batch under the limit
(`memory_stats()['bytes_limit']` of the device, or --memory_gib), rounded down to
--multiple. Then compile that batch and, on a device with a real limit, run one step: if
it does not fit, step down by --multiple until it runs. Prints the fit, the prediction and
the largest batch confirmed.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_step  # noqa: E402

GIB = 2**30


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--models', default='resnet18,resnet34',
                 help=f'comma-separated, of {", ".join(train_step.MODEL_NAMES)}')
  p.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  p.add_argument('--unroll', default='auto', choices=train_step.UNROLLS)
  p.add_argument('--attack_steps', type=int, default=10)
  p.add_argument('--fit_batches', default='128,256',
                 help='the two batch sizes whose compiled memory fixes the linear fit')
  p.add_argument('--multiple', type=int, default=64, help='round the batch down to this')
  p.add_argument('--memory_gib', type=float, default=None,
                 help="memory limit in GiB (default: the device's bytes_limit)")
  args = p.parse_args(argv)
  for name in args.models.split(','):
    if name not in train_step.MODEL_NAMES:
      p.error(f'--models: unknown model {name!r}; allowed: {", ".join(train_step.MODEL_NAMES)}')
  try:
    fit = [int(b) for b in args.fit_batches.split(',')]
  except ValueError:
    fit = []
  if len(fit) != 2 or not 0 < fit[0] < fit[1]:
    p.error(f'--fit_batches: need two increasing positive sizes, got {args.fit_batches!r}')
  if args.multiple < 1:
    p.error(f'--multiple: must be >= 1, got {args.multiple}')
  return args


def step_args(args, model: str, batch: int) -> argparse.Namespace:
  return train_step.parse_args([f'--model={model}', f'--batch_size={batch}',
                                f'--dtype={args.dtype}', f'--unroll={args.unroll}',
                                f'--attack_steps={args.attack_steps}'])


def compiled_bytes(compiled) -> int:
  """Device bytes a call of `compiled` holds at its peak: arguments + outputs - donated
  buffers (aliased to outputs) + temporaries."""
  m = compiled.memory_analysis()
  return (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
          + m.temp_size_in_bytes)


def measure(args, model: str, batch: int, run: bool) -> tuple[int, bool | None]:
  """(compiled bytes, whether one step ran; None when not run) at `batch`."""
  step = train_step.JaxPGDStep(step_args(args, model, batch))
  try:
    step.compile()
    need = compiled_bytes(step.compiled)
    if not run:
      return need, None
    try:
      step.step(0)
      step.sync()
      return need, True
    except jax.errors.JaxRuntimeError as e:
      if 'RESOURCE_EXHAUSTED' not in str(e) and 'out of memory' not in str(e).lower():
        raise
      return need, False
  finally:
    del step
    gc.collect()


def device_limit(args) -> tuple[int, str, bool]:
  """(bytes, where the number comes from, whether steps really run out of it)."""
  if args.memory_gib:
    return int(args.memory_gib * GIB), '--memory_gib', False
  stats = jax.devices()[0].memory_stats() or {}
  if 'bytes_limit' not in stats:
    sys.exit(f'{jax.devices()[0].device_kind} reports no memory limit: pass --memory_gib')
  return int(stats['bytes_limit']), "device memory_stats()['bytes_limit']", True


def largest_batch(args, model: str, limit: int, real: bool) -> dict:
  b0, b1 = (int(b) for b in args.fit_batches.split(','))
  m0, _ = measure(args, model, b0, run=False)
  m1, _ = measure(args, model, b1, run=False)
  per_image = (m1 - m0) / (b1 - b0)
  fixed = m0 - per_image * b0
  predicted = int((limit - fixed) // per_image) // args.multiple * args.multiple
  res = {'model': model, 'dtype': args.dtype, 'unroll': train_step.unroll_label(args.unroll),
         'fixed_mib': fixed / 2**20, 'per_image_mib': per_image / 2**20,
         'predicted_batch': predicted, 'limit_gib': limit / GIB}
  batch = predicted
  while batch >= args.multiple:
    need, ran = measure(args, model, batch, run=real)
    if need <= limit and ran is not False:
      res.update(batch=batch, batch_gib=need / GIB, confirmed='ran one step' if real else
                 'compiled memory within the limit')
      return res
    batch -= args.multiple
  res.update(batch=None, confirmed=f'no multiple of {args.multiple} fits')
  return res


def main(argv=None) -> list[dict]:
  args = parse_args(argv)
  limit, source, real = device_limit(args)
  print(f'{jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}; '
        f'limit {limit / GIB:.2f} GiB ({source}); PGD-{args.attack_steps} {args.dtype}')
  results = []
  for model in args.models.split(','):
    r = largest_batch(args, model, limit, real)
    results.append(r)
    size = '-' if r['batch'] is None else f"{r['batch']} ({r['batch_gib']:.2f} GiB)"
    print(f"{model:<16} unroll={r['unroll']:<9} {r['fixed_mib']:8.1f} MiB + "
          f"{r['per_image_mib']:.3f} MiB/image -> predicted {r['predicted_batch']}; "
          f"largest {size}: {r['confirmed']}", flush=True)
  return results


if __name__ == '__main__':
  main()
