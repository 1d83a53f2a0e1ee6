"""Times one PGD-10 L-inf adversarial-training step of abd_jax (and, with --torch, the
same step in PyTorch eager on the same device, in the same process).

The step: gather batch `index` of a synthetic on-device uint8 dataset (4 batches), PGD-K
(eps 8/255, step 2/255, K = --attack_steps = 10, uniform random start, BatchNorm with
running statistics), then one SGD update (momentum 0.9, weight decay 5e-4, lr 0.1) on the
adversarial batch with BatchNorm in train mode. The JAX side is exactly
`abd_jax.train.step.make_train_step` under `jax.jit(..., donate_argnums=(0, 1))`.

Printed per run:
  compile_s      JAX: lower + compile + first call, minus one steady-state step
  img/s          batch_size / median of the --timed step times after warm-up
  ratio          JAX img/s / PyTorch img/s
  GFLOP/step     XLA's count (`compiled.cost_analysis()['flops']`) and the analytic
                 (2K+3)·F·B, F = forward FLOPs per image from the cost analysis of a
                 forward pass
  ceiling        achieved FLOP/s (XLA count / median step time) / peak FLOP/s
  --breakdown    the parts of the step timed alone in each framework: forward, one attack
                 step's input gradient, the train-mode parameter gradient
  --profile=N    the N XLA op kinds that took longest in one traced JAX step

JAX runs first (compile, warm-up, timed steps), then PyTorch; both frameworks see the
same batch size, shapes, dataset layout and step.

Examples:
  python benchmarks/train_step.py --model=resnet18 --batch_size=128 --torch
  python benchmarks/train_step.py --model=cnn --batch_size=128 --torch   # 8x8x1 digits shapes
  python benchmarks/train_step.py --all                                  # the standard CPU set
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import importlib.metadata
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import optax

from abd_jax.config import base_config
from abd_jax.models import MODEL_NAMES, create_model
from abd_jax.perturb import make_perturbation
from abd_jax.perturb.base import input_grad, resolve_unroll
from abd_jax.train.optim import make_optimizer
from abd_jax.train.state import create_train_state
from abd_jax.train.step import make_train_step, zero_metrics

EPS, STEP_SIZE = 8 / 255, 2 / 255
NUM_BATCHES = 4  # synthetic dataset = NUM_BATCHES * batch_size images

# Default input shapes per model: CIFAR-10 for the ResNets/VGG, 8x8x1 digits for the CNN.
DEFAULT_SHAPES = {'cnn': (8, 1)}
CIFAR_SHAPE = (32, 3)

# Dense (no structured sparsity) tensor-core peaks from NVIDIA's H100 / H200 datasheets,
# TFLOP/s. float32 runs are compared with the TF32 peak: JAX's default matmul/conv
# precision on these GPUs uses TF32 tensor cores for float32 inputs.
GPU_PEAK_TFLOPS = [  # (substring of device_kind, bfloat16, tf32), first match wins
    ('H200 NVL', 835.5, 417.5),
    ('H100 PCIe', 756.5, 378.0),
    ('H200', 989.4, 494.7),  # H200 SXM
    ('H100', 989.4, 494.7),  # H100 SXM
]

# The standard CPU set run by --all: (model, batch, steps, timed). One ResNet-18 PGD-10
# step at batch 128 is tens of seconds on a 2-core CPU, hence the few timed steps.
STANDARD_CPU_SET = [('cnn', 128, 10, 5), ('resnet18', 128, 3, 2)]


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--model', default='resnet18', choices=MODEL_NAMES)
  p.add_argument('--batch_size', type=int, default=128)
  p.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  p.add_argument('--steps', type=int, default=10,
                 help='steps run per framework, the first (JAX: incl. compile) included')
  p.add_argument('--timed', type=int, default=5,
                 help='the last --timed of the --steps steps are timed (median)')
  p.add_argument('--torch', action='store_true', help='also time the PyTorch eager step')
  p.add_argument('--torch_channels_last', action='store_true',
                 help='PyTorch: channels-last memory format (default: contiguous NCHW)')
  p.add_argument('--image_size', type=int, default=None,
                 help='default: 8 for --model=cnn (digits), 32 otherwise (CIFAR)')
  p.add_argument('--channels', type=int, default=None,
                 help='default: 1 for --model=cnn (digits), 3 otherwise (CIFAR)')
  p.add_argument('--num_classes', type=int, default=10)
  p.add_argument('--attack_steps', type=int, default=10, help='K of PGD-K')
  p.add_argument('--unroll', default='auto', choices=('auto', 'full', 'none'),
                 help="attack loop: 'auto' (full on CPU, rolled elsewhere), 'full', 'none'")
  p.add_argument('--peak_tflops', type=float, default=None,
                 help='peak FLOP/s of the device in TFLOP/s (default: H100/H200 datasheet '
                 'on GPU, a measured matmul on CPU)')
  p.add_argument('--all', action='store_true',
                 help=f'run the standard CPU set {STANDARD_CPU_SET} (model, batch, steps, '
                 'timed) with the other flags; implies --torch unless --no_torch')
  p.add_argument('--no_torch', action='store_true', help='with --all: JAX only')
  p.add_argument('--breakdown', action='store_true',
                 help='also time the parts of the step (forward, one attack input gradient, '
                 'train-mode parameter gradient) in each framework')
  p.add_argument('--profile', type=int, default=0, metavar='N',
                 help='also trace one JAX step with jax.profiler and print the N op kinds '
                 'that took longest')
  p.add_argument('--json', default=None, help='append one JSON line per run to this file')
  args = p.parse_args(argv)
  if args.steps < args.timed + 1 or args.timed < 1:
    p.error('need --timed >= 1 and --steps >= --timed + 1 (the first step compiles)')
  return args


def input_shape(args) -> tuple[int, int]:
  size, channels = DEFAULT_SHAPES.get(args.model, CIFAR_SHAPE)
  return (args.image_size or size, args.channels or channels)


# ----------------------------------------------------------------------------- peak FLOP/s


def measure_matmul_tflops(dtype: str, n: int = 2048, reps: int = 10) -> float:
  """Best-of-`reps` TFLOP/s of an n x n x n XLA matmul in `dtype` on the default device."""
  dt = jnp.dtype(dtype)
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dt)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32).astype(dt)
  f = jax.jit(lambda a, b: a @ b)
  jax.block_until_ready(f(a, b))
  best = float('inf')
  for _ in range(reps):
    t = time.perf_counter()
    jax.block_until_ready(f(a, b))
    best = min(best, time.perf_counter() - t)
  return 2 * n**3 / best / 1e12


def peak_tflops(args) -> tuple[float | None, str]:
  """(peak TFLOP/s, where the number comes from)."""
  if args.peak_tflops:
    return args.peak_tflops, '--peak_tflops'
  backend = jax.default_backend()
  kind = jax.devices()[0].device_kind
  if backend == 'gpu':
    for key, bf16, tf32 in GPU_PEAK_TFLOPS:
      if key in kind:
        if args.dtype == 'bfloat16':
          return bf16, f'{kind}: NVIDIA datasheet dense BF16 tensor core'
        return tf32, f'{kind}: NVIDIA datasheet dense TF32 tensor core'
    return None, f'unknown GPU {kind!r}: pass --peak_tflops'
  if backend == 'cpu':
    return (measure_matmul_tflops(args.dtype),
            f'measured: best of 10 jitted 2048x2048 {args.dtype} XLA matmuls')
  return None, f'no default for backend {backend!r}: pass --peak_tflops'


# ----------------------------------------------------------------------------- JAX side


def cost_flops(cost) -> float:
  """The 'flops' entry of a cost analysis (a dict, or a list of per-program dicts)."""
  if isinstance(cost, (list, tuple)):
    return float(sum(c.get('flops', 0.0) for c in cost))
  return float(cost['flops'])


# Profiler events of the runtime around the ops (executors, waits, dispatch), not ops.
_RUNTIME_EVENT = re.compile(r'Thunk|Execute|PjRt|Pjit|PjitFunction|Await|ThreadPool|'
                            r'ParseArguments|Handle input|end: ')


class JaxPGDStep:
  """abd_jax's jitted training step on a synthetic on-device uint8 dataset."""

  def __init__(self, args, unroll: str | None = None):
    self.args = args
    self.unroll = unroll or args.unroll
    b = args.batch_size
    size, channels = input_shape(args)
    self.image_shape = (size, size, channels)
    cfg = base_config().train  # sgd, lr 0.1, momentum 0.9, weight_decay 5e-4
    self.model = create_model(args.model, args.num_classes, dtype=args.dtype)
    tx = make_optimizer(cfg, steps_per_epoch=NUM_BATCHES)
    self.state = create_train_state(self.model, tx, jax.random.key(0), self.image_shape)
    self.metrics = zero_metrics()
    n = NUM_BATCHES * b
    k_img, k_lab, k_ord = jax.random.split(jax.random.key(1), 3)
    self.images = jax.random.randint(k_img, (n, *self.image_shape), 0, 256).astype(jnp.uint8)
    self.labels = jax.random.randint(k_lab, (n,), 0, args.num_classes, jnp.int32)
    self.order = jax.random.permutation(k_ord, n).astype(jnp.int32)
    self.key = jax.random.key(2)
    self.hp = {'eps': jnp.float32(EPS), 'step_size': jnp.float32(STEP_SIZE)}
    self.fn = self._step_fn(self.unroll)
    self.jitted = jax.jit(self.fn, donate_argnums=(0, 1))
    self.compiled = None

  def _step_fn(self, unroll: str):
    perturbation = make_perturbation('linf', steps=self.args.attack_steps, random_start=True,
                                     unroll=unroll)
    return make_train_step(self.model, perturbation, batch_size=self.args.batch_size,
                           crop_padding=0, flip=False, bn_mode='eval')

  def _args(self, index: int):
    return (self.state, self.metrics, self.images, self.labels, self.order,
            jnp.int32(index % NUM_BATCHES), self.key, self.hp)

  def compile(self):
    """AOT lower + compile; the program lands in jit's cache, so `step` reuses it."""
    self.compiled = self.jitted.lower(*self._args(0)).compile()

  def step(self, index: int) -> None:
    self.state, self.metrics = self.jitted(*self._args(index))

  def sync(self) -> None:
    jax.block_until_ready((self.state, self.metrics))

  def step_flops(self) -> tuple[float, str]:
    """XLA's FLOP count of one step, and how it was obtained.

    XLA's cost analysis counts a while loop's body once, not once per trip, so for a
    rolled attack loop the count comes from the (uncompiled) lowering of the fully
    unrolled step instead.
    """
    compiled = cost_flops(self.compiled.cost_analysis())
    if resolve_unroll(self.unroll) is True:
      return compiled, 'compiled step'
    full = jax.jit(self._step_fn('full')).lower(*self._args(0))
    return (cost_flops(full.cost_analysis()),
            f'lowered unrolled step; the compiled rolled step reports {compiled / 1e9:.1f}')

  def component_fns(self) -> dict:
    """Zero-argument callables for the parts of the step, on batch 0 (for --breakdown):
    'forward' (eval mode), 'input_grad' (one attack step's gradient, eval mode) and
    'train_grad' (train-mode forward + backward to the parameters). A PGD-K step costs
    about K * input_grad + train_grad."""
    b, model = self.args.batch_size, self.model
    x = self.images[:b].astype(jnp.float32) / 255.0
    y = self.labels[:b]
    variables = self.state.variables

    def train_grad(params, batch_stats, x, y):
      def loss_fn(p):
        logits, _ = model.apply({'params': p, 'batch_stats': batch_stats}, x, train=True,
                                mutable=['batch_stats'])
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      return jax.grad(loss_fn)(params)

    fwd = jax.jit(lambda v, x: model.apply(v, x, train=False))
    grad = jax.jit(lambda v, x, y: input_grad(lambda z: model.apply(v, z, train=False), x, y))
    train = jax.jit(train_grad)
    return {
        'forward': lambda: jax.block_until_ready(fwd(variables, x)),
        'input_grad': lambda: jax.block_until_ready(grad(variables, x, y)),
        'train_grad': lambda: jax.block_until_ready(
            train(variables['params'], variables['batch_stats'], x, y)),
    }

  def profile_ops(self, index: int, top: int) -> list[tuple[str, float]]:
    """Run one step under jax.profiler and sum the traced time per XLA op (numbered
    suffixes merged, e.g. all `ynn_fusion.N`), largest first: [(name, ms)]."""
    with tempfile.TemporaryDirectory() as d:
      with jax.profiler.trace(d, create_perfetto_trace=True):
        self.step(index)
        self.sync()
      traces = glob.glob(os.path.join(d, '**', '*.trace.json.gz'), recursive=True)
      if not traces:
        return []
      with gzip.open(traces[0]) as f:
        trace = json.load(f)
    events = trace['traceEvents'] if isinstance(trace, dict) else trace
    total = collections.Counter()
    for e in events:
      name = e.get('name', '')
      if e.get('ph') != 'X' or not name or name.startswith('$') or _RUNTIME_EVENT.search(name):
        continue
      total[re.sub(r'\.\d+$', '', name)] += e.get('dur', 0) / 1e3
    return total.most_common(top)

  def forward_flops_per_image(self) -> float:
    b = self.args.batch_size
    fwd = jax.jit(lambda v, x: self.model.apply(v, x, train=False))
    x = jnp.zeros((b, *self.image_shape), jnp.float32)
    return cost_flops(fwd.lower(self.state.variables, x).compile().cost_analysis()) / b


# ----------------------------------------------------------------------------- timing


class Contention:
  """Share of the machine's CPU time used by *other* processes between start and stop
  (Linux /proc/stat minus this process's own CPU time); None where unavailable. Other
  work on a small CPU slows PyTorch's OpenMP team far more than XLA's thread pool."""

  def __init__(self):
    self.start = self._sample()

  @staticmethod
  def _sample():
    try:
      with open('/proc/stat') as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
      return None
    hz = os.sysconf('SC_CLK_TCK')
    own = os.times()
    return sum(ticks) / hz, (ticks[3] + ticks[4]) / hz, own.user + own.system

  def stop(self) -> float | None:
    end = self._sample()
    if self.start is None or end is None or end[0] <= self.start[0]:
      return None
    total, idle, own = (e - s for e, s in zip(end, self.start))
    return max(0.0, (total - idle - own) / total)


def timed_call(runner, index: int) -> float:
  t = time.perf_counter()
  runner.step(index)
  runner.sync()
  return time.perf_counter() - t


def time_components(fns: dict, reps: int) -> dict:
  """Median milliseconds of each zero-argument callable after one warm-up call."""
  out = {}
  for name, fn in fns.items():
    fn()
    times = []
    for _ in range(reps):
      t = time.perf_counter()
      fn()
      times.append(time.perf_counter() - t)
    out[name] = statistics.median(times) * 1e3
  return out


def unroll_label(unroll: str) -> str:
  """'full', 'none', or for 'auto' what it resolved to on this backend, e.g. 'auto=full'."""
  if unroll != 'auto':
    return unroll
  return 'auto=' + ('full' if resolve_unroll(unroll) is True else 'none')


def run_one(args, model: str, batch_size: int, steps: int, timed: int, use_torch: bool,
            peak: tuple[float | None, str]) -> dict:
  args = argparse.Namespace(**{**vars(args), 'model': model, 'batch_size': batch_size,
                               'steps': steps, 'timed': timed})
  size, channels = input_shape(args)
  res = {'model': model, 'batch_size': batch_size, 'image_shape': [size, size, channels],
         'dtype': args.dtype, 'unroll': unroll_label(args.unroll),
         'attack_steps': args.attack_steps,
         'steps': steps, 'timed': timed, 'backend': jax.default_backend(),
         'device_kind': jax.devices()[0].device_kind}

  # JAX: compile (+ first call), warm-up, timed steps.
  jx = JaxPGDStep(args)
  t = time.perf_counter()
  jx.compile()
  jx.step(0)
  jx.sync()
  first = time.perf_counter() - t
  for i in range(1, steps - timed):
    timed_call(jx, i)
  contention = Contention()
  jax_times = [timed_call(jx, i) for i in range(steps - timed, steps)]
  res['jax_other_cpu'] = contention.stop()

  # PyTorch afterwards (not interleaved), in the same process.
  th, torch_times = None, []
  if use_torch:
    import torch_reference as tr  # noqa: PLC0415 (imports torch: only when asked)
    th = tr.TorchPGDStep(model, batch_size=batch_size, image_size=size, channels=channels,
                         num_classes=args.num_classes, dtype=args.dtype,
                         steps=args.attack_steps, eps=EPS, step_size=STEP_SIZE,
                         num_batches=NUM_BATCHES, channels_last=args.torch_channels_last)
    res.update(tr.versions(), torch_params=tr.num_params(th.model),
               torch_channels_last=args.torch_channels_last)
    torch_first = timed_call(th, 0)
    for i in range(1, steps - timed):
      timed_call(th, i)
    contention = Contention()
    torch_times = [timed_call(th, i) for i in range(steps - timed, steps)]
    res['torch_other_cpu'] = contention.stop()

  jax_step = statistics.median(jax_times)
  res.update(jax_params=sum(x.size for x in jax.tree.leaves(jx.state.params)),
             jax_step_times=jax_times, jax_step_s=jax_step,
             jax_img_s=batch_size / jax_step, compile_s=first - jax_step)
  if th is not None:
    torch_step = statistics.median(torch_times)
    res.update(torch_step_times=torch_times, torch_step_s=torch_step,
               torch_img_s=batch_size / torch_step,
               torch_first_minus_step_s=torch_first - torch_step,
               ratio=(batch_size / jax_step) / (batch_size / torch_step))

  if args.breakdown:
    res['jax_breakdown_ms'] = time_components(jx.component_fns(), timed)
    if th is not None:
      res['torch_breakdown_ms'] = time_components(th.component_fns(), timed)
  if args.profile:
    res['jax_profile_ms'] = jx.profile_ops(steps, args.profile)

  flops, flops_source = jx.step_flops()
  fwd = jx.forward_flops_per_image()
  k = args.attack_steps
  res.update(xla_gflop_step=flops / 1e9, xla_flops_source=flops_source,
             fwd_gflop_image=fwd / 1e9, analytic_gflop_step=(2 * k + 3) * fwd * batch_size / 1e9,
             achieved_tflops=flops / jax_step / 1e12, peak_tflops=peak[0],
             peak_source=peak[1])
  if peak[0]:
    res['ceiling_fraction'] = res['achieved_tflops'] / peak[0]
  return res


# ----------------------------------------------------------------------------- report


def other_cpu(share: float | None) -> str:
  return '' if share is None else f'  [other processes used {share:.0%} of the CPU meanwhile]'


def print_run(r: dict) -> None:
  print(f"\n== {r['model']} batch {r['batch_size']} {'x'.join(map(str, r['image_shape']))} "
        f"{r['dtype']} unroll={r['unroll']} PGD-{r['attack_steps']} on {r['backend']} "
        f"({r['device_kind']})")
  print(f"JAX     params {r['jax_params']:,}  compile {r['compile_s']:.2f} s  "
        f"step {r['jax_step_s'] * 1e3:.1f} ms (median of {r['timed']}: "
        f"{', '.join(f'{t * 1e3:.1f}' for t in r['jax_step_times'])})  "
        f"{r['jax_img_s']:.1f} img/s{other_cpu(r.get('jax_other_cpu'))}")
  if 'torch_img_s' in r:
    print(f"PyTorch params {r['torch_params']:,}  torch {r['torch']} "
          f"({r['torch_threads']} threads, {r['torch_device']})  "
          f"step {r['torch_step_s'] * 1e3:.1f} ms (median of {r['timed']}: "
          f"{', '.join(f'{t * 1e3:.1f}' for t in r['torch_step_times'])})  "
          f"{r['torch_img_s']:.1f} img/s  first step overhead "
          f"{r['torch_first_minus_step_s']:.2f} s{other_cpu(r.get('torch_other_cpu'))}")
    print(f"ratio JAX/PyTorch {r['ratio']:.2f}")
  print(f"FLOPs   XLA {r['xla_gflop_step']:.1f} GFLOP/step ({r['xla_flops_source']}), "
        f"analytic (2K+3)F·B {r['analytic_gflop_step']:.1f} GFLOP/step with F = "
        f"{r['fwd_gflop_image']:.4f} GFLOP/image forward")
  k = r['attack_steps']
  for who in ('jax', 'torch'):
    parts = r.get(f'{who}_breakdown_ms')
    if parts:
      estimate = k * parts['input_grad'] + parts['train_grad']
      print(f"parts   {'JAX' if who == 'jax' else 'PyTorch'}: forward {parts['forward']:.1f} ms, "
            f"input_grad {parts['input_grad']:.1f} ms, train_grad {parts['train_grad']:.1f} ms; "
            f"K*input_grad + train_grad = {estimate:.1f} ms")
  if r.get('jax_profile_ms'):
    print('profile JAX step, ms summed per op kind (ops may overlap on the thread pool; '
          'tracing adds overhead): ' + ', '.join(f'{n} {t:.1f}' for n, t in r['jax_profile_ms']))
  peak = 'n/a' if r['peak_tflops'] is None else f"{r['peak_tflops']:.3g} TFLOP/s"
  frac = f"{r['ceiling_fraction']:.1%}" if 'ceiling_fraction' in r else 'n/a'
  print(f"ceiling achieved {r['achieved_tflops'] * 1e3:.1f} GFLOP/s / peak {peak} "
        f"({r['peak_source']}) = {frac}")


def print_table(results: list[dict]) -> None:
  head = ('model', 'batch', 'shape', 'dtype', 'unroll', 'JAX img/s', 'torch img/s', 'ratio',
          'compile s', 'GFLOP/step', 'ceiling')
  rows = []
  for r in results:
    rows.append((r['model'], str(r['batch_size']), 'x'.join(map(str, r['image_shape'])),
                 r['dtype'], r['unroll'], f"{r['jax_img_s']:.1f}",
                 f"{r['torch_img_s']:.1f}" if 'torch_img_s' in r else '-',
                 f"{r['ratio']:.2f}" if 'ratio' in r else '-', f"{r['compile_s']:.1f}",
                 f"{r['xla_gflop_step']:.1f}",
                 f"{r['ceiling_fraction']:.1%}" if 'ceiling_fraction' in r else '-'))
  widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
  print('\n' + ' | '.join(h.ljust(w) for h, w in zip(head, widths)))
  print('-+-'.join('-' * w for w in widths))
  for row in rows:
    print(' | '.join(c.ljust(w) for c, w in zip(row, widths)))


def main(argv=None) -> None:
  args = parse_args(argv)
  versions = {'python': platform.python_version(), 'jax': jax.__version__,
              'jaxlib': importlib.metadata.version('jaxlib'),
              'cpus': os.cpu_count(), 'XLA_FLAGS': os.environ.get('XLA_FLAGS', '')}
  print('versions: ' + ', '.join(f'{k} {v}' for k, v in versions.items()))
  if args.all:
    runs = [(m, b, s, t, not args.no_torch) for m, b, s, t in STANDARD_CPU_SET]
  else:
    runs = [(args.model, args.batch_size, args.steps, args.timed, args.torch)]
  peak = peak_tflops(args)
  results = []
  for model, batch, steps, timed, use_torch in runs:
    r = run_one(args, model, batch, steps, timed, use_torch, peak)
    r.update(versions)
    print_run(r)
    results.append(r)
    if args.json:
      with open(args.json, 'a') as f:
        f.write(json.dumps(r) + '\n')
  print_table(results)


if __name__ == '__main__':
  # torch_reference.py sits next to this file.
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  main()
