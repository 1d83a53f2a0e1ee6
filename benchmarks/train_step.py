"""Times one PGD-10 L-inf adversarial-training step of abd_jax (and, with --torch, the
same step in PyTorch eager on the same device, in the same process; with --torch_compile
also under torch.compile).

The step: gather batch `index` of a synthetic on-device uint8 dataset (4 batches), PGD-K
(eps 8/255, step 2/255, K = --attack_steps = 10, uniform random start, BatchNorm with
running statistics), then one SGD update (momentum 0.9, weight decay 5e-4, lr 0.1) on the
adversarial batch with BatchNorm in train mode. The JAX side is exactly
`abd_jax.train.step.make_train_step` under `jax.jit(..., donate_argnums=(0, 1))`.

Printed per run:
  compile_s      JAX: lower + compile + first call, minus one steady-state step
  img/s          batch_size / median of the --timed step times after warm-up
  ratio          JAX img/s / PyTorch img/s (eager; and compiled with --torch_compile)
  GFLOP/step     the analytic (2K+3)·F·B, F = forward FLOPs per image counted from the
                 model's operation shapes (abd_jax.models.flops, the same on every
                 backend), and XLA's own count (`cost_analysis()['flops']`) where the
                 backend gives one (XLA:GPU leaves out cuDNN convolutions)
  ceiling        achieved FLOP/s (analytic count / median step time) / peak FLOP/s
  --breakdown    the parts of the step timed alone in each framework: forward, one attack
                 step's input gradient, the train-mode parameter gradient
  --profile=N    the N XLA op kinds that took longest in one traced JAX step

Every JAX setting is compiled first; then the JAX and PyTorch steps take turns, step by
step (warm-up, then the timed steps), so that drifting machine load hits all of them
alike. Both frameworks see the same batch size, shapes, dataset layout and step.

Examples:
  python benchmarks/train_step.py --model=resnet18 --batch_size=128 --torch
  python benchmarks/train_step.py --model=cnn --batch_size=128 --torch   # 8x8x1 digits shapes
  python benchmarks/train_step.py --all                                  # the standard CPU set
  python benchmarks/train_step.py --model=cnn --unroll=full,none         # both attack loops
  python benchmarks/train_step.py --model=resnet18 --dtype=bfloat16 --torch_compile
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

from abd_jax import parallel
from abd_jax.config import base_config
from abd_jax.models import MODEL_NAMES, create_model
from abd_jax.models.flops import adversarial_training_flops, forward_flops
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

# Dense (no structured sparsity) peaks per chip from the vendors' datasheets, TFLOP/s:
# (substring of device_kind, vendor, bfloat16, float32 inputs), first match wins.
# float32 runs on these GPUs are compared with the TF32 tensor-core peak, and on TPUs with
# the bf16 peak: JAX's default matmul/conv precision runs float32 inputs on TF32 tensor
# cores (GPU) or in one bf16 pass (TPU).
DATASHEET_PEAK_TFLOPS = [
    ('H200 NVL', 'NVIDIA', 835.5, 417.5),
    ('H100 PCIe', 'NVIDIA', 756.5, 378.0),
    ('H200', 'NVIDIA', 989.4, 494.7),  # H200 SXM
    ('H100', 'NVIDIA', 989.4, 494.7),  # H100 SXM
    ('TPU v6 lite', 'Google', 918.0, 918.0),  # v6e (Trillium)
    ('TPU v5 lite', 'Google', 197.0, 197.0),  # v5e
    ('TPU v5', 'Google', 459.0, 459.0),  # v5p
    ('TPU v4', 'Google', 275.0, 275.0),
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
  p.add_argument('--torch_compile', action='store_true',
                 help='also time the PyTorch step with the model under torch.compile '
                 '(default mode); implies --torch')
  p.add_argument('--torch_channels_last', action='store_true',
                 help='PyTorch: channels-last memory format (default: contiguous NCHW)')
  p.add_argument('--image_size', type=int, default=None,
                 help='default: 8 for --model=cnn (digits), 32 otherwise (CIFAR)')
  p.add_argument('--channels', type=int, default=None,
                 help='default: 1 for --model=cnn (digits), 3 otherwise (CIFAR)')
  p.add_argument('--num_classes', type=int, default=10)
  p.add_argument('--attack_steps', type=int, default=10, help='K of PGD-K')
  p.add_argument('--unroll', default='auto', type=unroll_list,
                 help="attack loop: 'auto' (full on CPU, rolled elsewhere), 'full', 'none', "
                 "or a comma-separated list of them, each timed in turn (e.g. full,none)")
  p.add_argument('--peak_tflops', type=float, default=None,
                 help='peak FLOP/s of the device in TFLOP/s (default: the datasheet of a '
                 'known GPU/TPU, else a measured matmul)')
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
  p.add_argument('--cpu_devices', type=int, default=None,
                 help='split the CPU into this many JAX devices (jax_num_cpu_devices) and run '
                 'the step data parallel over them (default: as the training command lines '
                 'do, one device per core as far as the batch size allows; '
                 'JAX_NUM_CPU_DEVICES=1 or --cpu_devices=1 keeps one)')
  args = p.parse_args(argv)
  args.torch = args.torch or args.torch_compile
  if args.cpu_devices is not None and args.cpu_devices < 1:
    p.error(f'--cpu_devices: must be >= 1, got {args.cpu_devices}')
  if args.steps < args.timed + 1 or args.timed < 1:
    p.error('need --timed >= 1 and --steps >= --timed + 1 (the first step compiles)')
  return args


UNROLLS = ('auto', 'full', 'none')


def unroll_list(value: str) -> list[str]:
  """'full,none' -> ['full', 'none']; argparse reports the ValueError as a usage error."""
  names = [v.strip() for v in value.split(',') if v.strip()]
  bad = [v for v in names if v not in UNROLLS]
  if bad or not names:
    raise argparse.ArgumentTypeError(
        f'--unroll: {value!r} is not a comma-separated list of {", ".join(UNROLLS)}')
  return names


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


def peak_tflops(dtype: str, override: float | None = None) -> tuple[float, str]:
  """(peak TFLOP/s of the default device for `dtype`, where the number comes from):
  `override`, else the datasheet for a known GPU/TPU, else a measured XLA matmul."""
  if override:
    return override, '--peak_tflops'
  kind = jax.devices()[0].device_kind
  if jax.default_backend() != 'cpu':
    for key, vendor, bf16, f32 in DATASHEET_PEAK_TFLOPS:
      if key in kind:
        if dtype == 'bfloat16':
          return bf16, f'{kind}: {vendor} datasheet dense bf16'
        return f32, f'{kind}: {vendor} datasheet dense peak for float32 inputs (default precision)'
  return (measure_matmul_tflops(dtype),
          f'measured: best of 10 jitted 2048x2048 {dtype} XLA matmuls on {kind}')


# ----------------------------------------------------------------------------- JAX side


def cost_flops(cost) -> float | None:
  """The 'flops' entry of a cost analysis (a dict, or a list of per-program dicts), or None
  where the backend gives none (XLA:GPU may return None for a program with loops)."""
  if isinstance(cost, (list, tuple)):
    counts = [c['flops'] for c in cost if c and 'flops' in c]
    return float(sum(counts)) if counts else None
  if not cost or 'flops' not in cost:
    return None
  return float(cost['flops'])


# Profiler events of the runtime around the ops (executors, waits, dispatch), not ops.
_RUNTIME_EVENT = re.compile(r'Thunk|Execute|PjRt|Pjit|PjitFunction|Await|ThreadPool|'
                            r'ParseArguments|Handle input|end: ')


class JaxPGDStep:
  """abd_jax's jitted training step on a synthetic on-device uint8 dataset, data parallel
  over every device as the training loop runs it (state and dataset replicated, each
  batch split along the mesh's 'data' axis)."""

  def __init__(self, args):
    """args: parse_args()'s namespace; a list of --unroll settings uses the first."""
    self.args = args
    self.unroll = args.unroll[0] if isinstance(args.unroll, list) else args.unroll
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
    self.mesh = parallel.make_mesh()
    if b % self.mesh.size:
      raise SystemExit(f'--batch_size: {b} is not a multiple of the {self.mesh.size} devices')
    (self.state, self.metrics, self.images, self.labels, self.order) = jax.device_put(
        (self.state, self.metrics, self.images, self.labels, self.order),
        parallel.replicated(self.mesh))
    self.fn = self._step_fn(self.unroll)
    self.jitted = jax.jit(self.fn, donate_argnums=(0, 1))
    self.compiled = None

  def _step_fn(self, unroll: str):
    perturbation = make_perturbation('linf', steps=self.args.attack_steps, random_start=True,
                                     unroll=unroll)
    return make_train_step(self.model, perturbation, batch_size=self.args.batch_size,
                           crop_padding=0, flip=False, bn_mode='eval',
                           batch_sharding=parallel.batch_sharded(self.mesh))

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

  def xla_step_flops(self) -> tuple[float | None, str]:
    """XLA's own FLOP count of one step (None where the backend gives none), and how it
    was obtained.

    XLA's cost analysis counts a while loop's body once, not once per trip, so for a
    rolled attack loop the count comes from the (uncompiled) lowering of the fully
    unrolled step instead.
    """
    compiled = cost_flops(self.compiled.cost_analysis())
    if resolve_unroll(self.unroll) is True:
      return compiled, 'compiled step'
    full = cost_flops(jax.jit(self._step_fn('full')).lower(*self._args(0)).cost_analysis())
    reported = 'none' if compiled is None else f'{compiled / 1e9:.1f}'
    return full, f'lowered unrolled step; the compiled rolled step reports {reported}'

  def analytic_step_flops(self) -> tuple[float, float]:
    """(forward FLOPs per image F, (2K+3)·F·B for the step), from the model's shapes."""
    forward = forward_flops(self.model, self.image_shape)
    step = adversarial_training_flops(forward, self.args.attack_steps) * self.args.batch_size
    return forward, step

  def component_fns(self) -> dict:
    """Zero-argument callables for the parts of the step, on batch 0 (for --breakdown):
    'forward' (eval mode), 'input_grad' (one attack step's gradient, eval mode) and
    'train_grad' (train-mode forward + backward to the parameters). A PGD-K step costs
    about K * input_grad + train_grad."""
    b, model = self.args.batch_size, self.model
    x, y = jax.device_put((self.images[:b].astype(jnp.float32) / 255.0, self.labels[:b]),
                          parallel.batch_sharded(self.mesh))  # split as the step splits it
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


def time_interleaved(runners: dict, steps: int, timed: int
                     ) -> tuple[dict[str, float], dict[str, list[float]], float | None]:
  """Runs `steps` steps of every runner, the runners taking turns step by step, so that a
  change in machine load (or GPU clocks) hits all of them alike. Returns each runner's
  first step (s), its last `timed` step times (s), and the share of the CPU that other
  processes used while the timed steps ran."""
  first = {name: timed_call(r, 0) for name, r in runners.items()}
  for i in range(1, steps - timed):
    for r in runners.values():
      timed_call(r, i)
  contention = Contention()
  times = {name: [] for name in runners}
  for i in range(steps - timed, steps):
    for name, r in runners.items():
      times[name].append(timed_call(r, i))
  return first, times, contention.stop()


def torch_runner(args, compiled: bool):
  import torch_reference as tr  # noqa: PLC0415 (imports torch: only when asked)
  size, channels = input_shape(args)
  return tr.TorchPGDStep(args.model, batch_size=args.batch_size, image_size=size,
                         channels=channels, num_classes=args.num_classes, dtype=args.dtype,
                         steps=args.attack_steps, eps=EPS, step_size=STEP_SIZE,
                         num_batches=NUM_BATCHES, channels_last=args.torch_channels_last,
                         compile=compiled)


def jax_result(args, jx: JaxPGDStep, compile_s: float, first: float, times: list[float],
               peak: tuple[float | None, str]) -> dict:
  step = statistics.median(times)
  res = {'unroll': unroll_label(jx.unroll),
         'jax_params': sum(x.size for x in jax.tree.leaves(jx.state.params)),
         'jax_step_times': times, 'jax_step_s': step, 'jax_img_s': args.batch_size / step,
         'compile_s': compile_s + first - step}
  if args.breakdown:
    res['jax_breakdown_ms'] = time_components(jx.component_fns(), args.timed)
  if args.profile:
    res['jax_profile_ms'] = jx.profile_ops(args.steps, args.profile)
  xla, xla_source = jx.xla_step_flops()
  if jx.mesh.size > 1:  # SPMD: XLA analyses the program one device runs
    xla_source += f'; one device\'s share of {jx.mesh.size}'
  forward, analytic = jx.analytic_step_flops()
  res.update(xla_gflop_step=None if xla is None else xla / 1e9, xla_flops_source=xla_source,
             fwd_gflop_image=forward / 1e9, analytic_gflop_step=analytic / 1e9,
             achieved_tflops=analytic / step / 1e12, peak_tflops=peak[0], peak_source=peak[1])
  if peak[0]:
    res['ceiling_fraction'] = res['achieved_tflops'] / peak[0]
  return res


def run_one(args, model: str, batch_size: int, steps: int, timed: int, use_torch: bool,
            peak: tuple[float | None, str]) -> list[dict]:
  """One result per `args.unroll` setting. Every JAX setting is compiled first, then the
  PyTorch steps are built (eager and, with --torch_compile, compiled); then all of them
  take turns step by step (`time_interleaved`), in the same process. The PyTorch numbers
  are shared by every setting."""
  args = argparse.Namespace(**{**vars(args), 'model': model, 'batch_size': batch_size,
                               'steps': steps, 'timed': timed})
  size, channels = input_shape(args)
  common = {'model': model, 'batch_size': batch_size, 'image_shape': [size, size, channels],
            'dtype': args.dtype, 'attack_steps': args.attack_steps, 'steps': steps,
            'timed': timed, 'backend': jax.default_backend(),
            'device_kind': jax.devices()[0].device_kind}
  runners, compile_s = {}, {}
  for u in args.unroll:
    jx = JaxPGDStep(argparse.Namespace(**{**vars(args), 'unroll': u}))
    t = time.perf_counter()
    jx.compile()
    runners[u], compile_s[u] = jx, time.perf_counter() - t
  torch_names = []
  if use_torch:
    torch_names = ['torch_'] + (['torch_compile_'] if args.torch_compile else [])
    for pre in torch_names:
      runners[pre] = torch_runner(args, compiled=pre == 'torch_compile_')
  first, times, other = time_interleaved(runners, steps, timed)
  common['other_cpu'] = other

  torch_res = {}
  for pre in torch_names:
    import torch_reference as tr  # noqa: PLC0415
    step = statistics.median(times[pre])
    torch_res.update({**tr.versions(), 'torch_params': tr.num_params(runners[pre].model),
                      'torch_channels_last': args.torch_channels_last,
                      f'{pre}step_times': times[pre], f'{pre}step_s': step,
                      f'{pre}img_s': batch_size / step,
                      f'{pre}first_minus_step_s': first[pre] - step})
  if use_torch and args.breakdown:
    torch_res['torch_breakdown_ms'] = time_components(runners['torch_'].component_fns(), timed)
  results = []
  for u in args.unroll:
    res = {**common, **jax_result(args, runners[u], compile_s[u], first[u], times[u], peak),
           **torch_res}
    for pre, key in (('torch_', 'ratio'), ('torch_compile_', 'ratio_compile')):
      if f'{pre}img_s' in res:
        res[key] = res['jax_img_s'] / res[f'{pre}img_s']
    results.append(res)
  return results


# ----------------------------------------------------------------------------- report


def torch_line(r: dict, pre: str, label: str) -> str:
  return (f"{label} step {r[pre + 'step_s'] * 1e3:.1f} ms (median of {r['timed']}: "
          f"{', '.join(f'{t * 1e3:.1f}' for t in r[pre + 'step_times'])})  "
          f"{r[pre + 'img_s']:.1f} img/s  first step overhead "
          f"{r[pre + 'first_minus_step_s']:.2f} s")


def print_run(r: dict) -> None:
  print(f"\n== {r['model']} batch {r['batch_size']} {'x'.join(map(str, r['image_shape']))} "
        f"{r['dtype']} unroll={r['unroll']} PGD-{r['attack_steps']} on {r['backend']} "
        f"({r['device_kind']}) x{r['devices']} device{'s' if r['devices'] > 1 else ''}")
  print(f"JAX     params {r['jax_params']:,}  compile {r['compile_s']:.2f} s  "
        f"step {r['jax_step_s'] * 1e3:.1f} ms (median of {r['timed']}: "
        f"{', '.join(f'{t * 1e3:.1f}' for t in r['jax_step_times'])})  "
        f"{r['jax_img_s']:.1f} img/s")
  if 'torch_img_s' in r:
    print(f"PyTorch params {r['torch_params']:,}  torch {r['torch']} "
          f"({r['torch_threads']} threads, {r['torch_device']})")
    print(torch_line(r, 'torch_', '        eager   '))
    if 'torch_compile_img_s' in r:
      print(torch_line(r, 'torch_compile_', '        compiled'))
    compiled = (f", compiled {r['ratio_compile']:.2f}" if 'ratio_compile' in r else '')
    print(f"ratio JAX/PyTorch eager {r['ratio']:.2f}{compiled} (steps taken in turns)")
  if r.get('other_cpu') is not None:
    print(f"load    other processes used {r['other_cpu']:.0%} of the CPU during the timed steps")
  xla = ('n/a (the backend gave no cost analysis)' if r['xla_gflop_step'] is None
         else f"{r['xla_gflop_step']:.1f} GFLOP/step")
  print(f"FLOPs   analytic (2K+3)F·B {r['analytic_gflop_step']:.1f} GFLOP/step with F = "
        f"{r['fwd_gflop_image']:.4f} GFLOP/image forward; XLA's count {xla} "
        f"({r['xla_flops_source']})")
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
  print(f"ceiling achieved {r['achieved_tflops'] * 1e3:.1f} GFLOP/s (analytic count) / peak "
        f"{peak} ({r['peak_source']}) = {frac}")


def fmt(value, spec: str) -> str:
  return '-' if value is None else format(value, spec)


def print_table(results: list[dict]) -> None:
  head = ('model', 'batch', 'shape', 'dtype', 'unroll', 'JAX img/s', 'eager img/s', 'ratio',
          'compiled img/s', 'ratio', 'compile s', 'GFLOP/step', 'ceiling')
  rows = []
  for r in results:
    rows.append((r['model'], str(r['batch_size']), 'x'.join(map(str, r['image_shape'])),
                 r['dtype'], r['unroll'], fmt(r['jax_img_s'], '.1f'),
                 fmt(r.get('torch_img_s'), '.1f'), fmt(r.get('ratio'), '.2f'),
                 fmt(r.get('torch_compile_img_s'), '.1f'), fmt(r.get('ratio_compile'), '.2f'),
                 fmt(r['compile_s'], '.1f'), fmt(r['analytic_gflop_step'], '.1f'),
                 fmt(r.get('ceiling_fraction'), '.1%')))
  widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
  print('\n' + ' | '.join(h.ljust(w) for h, w in zip(head, widths)))
  print('-+-'.join('-' * w for w in widths))
  for row in rows:
    print(' | '.join(c.ljust(w) for c, w in zip(row, widths)))


def main(argv=None) -> list[dict]:
  args = parse_args(argv)
  if args.all:
    runs = [(m, b, s, t, not args.no_torch) for m, b, s, t in STANDARD_CPU_SET]
  else:
    runs = [(args.model, args.batch_size, args.steps, args.timed, args.torch)]
  if args.cpu_devices:
    jax.config.update('jax_num_cpu_devices', args.cpu_devices)  # before the backend starts
  else:
    parallel.split_cpu([b for _, b, _, _, _ in runs])
  versions = {'python': platform.python_version(), 'jax': jax.__version__,
              'jaxlib': importlib.metadata.version('jaxlib'),
              'cpus': os.cpu_count(), 'XLA_FLAGS': os.environ.get('XLA_FLAGS', ''),
              'devices': jax.device_count()}
  print('versions: ' + ', '.join(f'{k} {v}' for k, v in versions.items()))
  peak = peak_tflops(args.dtype, args.peak_tflops)
  results = []
  for model, batch, steps, timed, use_torch in runs:
    for r in run_one(args, model, batch, steps, timed, use_torch, peak):
      r.update(versions)
      print_run(r)
      results.append(r)
      if args.json:
        with open(args.json, 'a') as f:
          f.write(json.dumps(r) + '\n')
  print_table(results)
  return results


if __name__ == '__main__':
  # torch_reference.py sits next to this file.
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  main()
