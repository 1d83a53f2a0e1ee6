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

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'
RUNS_AXIS = 'runs'


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
