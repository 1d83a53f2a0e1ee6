"""Data parallelism with `jax.sharding`: one mesh axis 'data' over every device of every
process. Train state and datasets are replicated; each batch is split along 'data'.

BatchNorm statistics are therefore *global*: under jit the batch mean and variance are
reduced over the whole sharded batch, so N devices compute what one device would for the
same global batch (up to float reduction order).

A vmapped sweep group adds a 'runs' axis in front: the mesh is (runs, data), the stacked
train states and every per-run array are split over 'runs', so each device (or group of
devices along 'data') steps its own runs, data parallel inside a run.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'
RUNS_AXIS = 'runs'


# Fewest images per CPU device when a host is split: below this one device per core stopped
# paying (ResNet-18, batch 32 on 2 cores: 6.9 s per PGD-10 step on one device, 7.5 s on two).
MIN_IMAGES_PER_CPU_DEVICE = 32


def cpu_device_count(batch_sizes: Sequence[int], cores: int) -> int:
  """The largest d <= `cores` that divides every batch size and leaves each device at least
  MIN_IMAGES_PER_CPU_DEVICE images of the smallest one (1 when none does better)."""
  smallest = min(batch_sizes)
  return max(d for d in range(1, max(cores, 1) + 1)
             if all(b % d == 0 for b in batch_sizes)
             and (d == 1 or smallest // d >= MIN_IMAGES_PER_CPU_DEVICE))


def usable_cores() -> int:
  if hasattr(os, 'sched_getaffinity'):  # Linux: the cores this process may run on
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1


def split_cpu(batch_sizes: Sequence[int]) -> int:
  """Splits the host CPU into `cpu_device_count(batch_sizes, usable cores)` JAX devices, so
  that the data-parallel mesh runs each batch on every core. XLA:CPU keeps one program on
  about 1.1 (digits CNN) to 1.5 (ResNet-18) of 2 cores; split over two devices the same step
  used 1.8 cores and ran 1.6-2.3x (CNN) and 1.3-1.4x (ResNet-18, batch 128) as fast
  (benchmarks/README.md). Only the CPU backend is affected.

  Returns the device count set, or 0 where it was left alone: the user chose one
  (JAX_NUM_CPU_DEVICES, jax_num_cpu_devices, or XLA_FLAGS'
  --xla_force_host_platform_device_count), one device is best, or JAX has already started
  its backends (call this before any JAX computation)."""
  if (jax.config.jax_num_cpu_devices >= 0
      or 'xla_force_host_platform_device_count' in os.environ.get('XLA_FLAGS', '')):
    return 0
  n = cpu_device_count(batch_sizes, usable_cores())
  if n == 1:
    return 0
  try:
    jax.config.update('jax_num_cpu_devices', n)
  except RuntimeError:  # the backends are up: too late, and harmless
    return 0
  return n


_initialized = False


def maybe_initialize_distributed(enabled: bool) -> None:
  """Multi-host runs: connect the processes (coordinator from the environment / cluster),
  once per process (a sweep runs many experiments in one)."""
  global _initialized
  if enabled and not _initialized:
    jax.distributed.initialize()
    _initialized = True


def make_mesh() -> Mesh:
  # Auto axis types: the compiler propagates the batch sharding from one constraint.
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def make_runs_mesh(runs: int) -> Mesh:
  """A (runs, data) mesh over every device; `runs` must divide the device count."""
  n = jax.device_count()
  if n % runs:
    raise ValueError(f'{runs} runs lanes do not divide the {n} devices')
  return jax.make_mesh((runs, n // runs), (RUNS_AXIS, DATA_AXIS),
                       axis_types=(AxisType.Auto, AxisType.Auto))


def runs_lanes(num_runs: int, num_devices: int) -> int:
  """How many devices (lanes of the 'runs' axis) a group of `num_runs` runs is split over:
  every device when there are at least as many runs, else the largest divisor of the
  device count that is at most `num_runs` (the rest of the devices go to 'data')."""
  if num_runs >= num_devices:
    return num_devices
  return max(d for d in range(1, num_runs + 1) if num_devices % d == 0)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def per_run(mesh: Mesh) -> NamedSharding:
  """Leading axis split over 'runs' (replicated over 'data')."""
  return NamedSharding(mesh, P(RUNS_AXIS))


def put(tree: Any, sharding: NamedSharding) -> Any:
  """Host arrays (identical on every process) -> global arrays with `sharding`; each
  process reads only the slices its devices hold."""
  return jax.tree.map(lambda a: jax.make_array_from_callback(np.shape(a), sharding,
                                                             lambda idx: np.asarray(a)[idx]), tree)


def put_per_run(tree: Any, mesh: Mesh) -> Any:
  """Host arrays [G, ...] -> global arrays split over 'runs'."""
  return put(tree, per_run(mesh))


def put_replicated(tree: Any, mesh: Mesh) -> Any:
  """Host arrays -> global arrays replicated on every device."""
  return put(tree, replicated(mesh))
