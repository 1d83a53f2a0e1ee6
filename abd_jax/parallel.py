"""Data parallelism with `jax.sharding`: one mesh axis 'data' over every device of every
process. Train state and datasets are replicated; each batch is split along 'data'.

BatchNorm statistics are therefore *global*: under jit the batch mean and variance are
reduced over the whole sharded batch, so N devices compute what one device would for the
same global batch (up to float reduction order).

A vmapped sweep group adds a 'runs' axis in front: the mesh is (runs, data), the stacked
train states and every per-run array are split over 'runs', so each device (or group of
devices along 'data') steps its own runs, data parallel inside a run.

The rules every pipeline follows on several devices and processes:
  put / put_replicated / put_per_run   the one way an array reaches a mesh program
  fetch                                the one way a value is read back (gathered across
                                       processes where it is split over them)
  is_writer, agree, barrier            only process 0 writes; decisions read from files
                                       are process 0's; the others wait for its writes
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
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


def maybe_initialize_distributed(block) -> None:
  """Several processes as one job (the config's `distributed` block): connects them once
  per process (a sweep runs many experiments in one). The coordinator and the ids come
  from the block where it gives them, else from the cluster's environment."""
  global _initialized
  if not block.initialize or _initialized:
    return
  jax.distributed.initialize(
      coordinator_address=block.coordinator_address or None,
      num_processes=block.num_processes or None,
      process_id=block.process_id if block.process_id >= 0 else None,
      local_device_ids=list(block.local_device_ids) or None,
      initialization_timeout=block.initialization_timeout,
      heartbeat_timeout_seconds=block.heartbeat_timeout)
  _initialized = True
  # The processes' first collective sets up their CPU collectives (gloo), which waits only
  # 30 s for every process to arrive: made here, where they all are, and not at a later
  # point that one process may reach much later than another (while compiling, writing).
  barrier('started')


def in_job() -> bool:
  """True in one process of several (`jax.distributed` is up)."""
  return _initialized and jax.process_count() > 1


# What a collective or barrier says when another process of the job is gone: its TCP
# connections reset (gloo on CPU, NCCL on GPU) or the coordination service declared it dead.
_PEER_GONE = ('Connection reset by peer', 'Connection refused', 'Connection closed',
              'heartbeat', 'Gloo', 'NCCL', 'coordination service', 'Barrier', 'UNAVAILABLE',
              'DEADLINE_EXCEEDED', 'Socket closed')


def lost_peer(error: BaseException) -> str | None:
  """One line for an error that means another process of this job stopped (killed,
  preempted, crashed), or None for any other error."""
  if not in_job() or not isinstance(error, (jax.errors.JaxRuntimeError, RuntimeError)):
    return None
  text = ' '.join(str(error).split())
  if not any(marker in text for marker in _PEER_GONE):
    return None
  for noise in ('INTERNAL: ', 'Error dispatching computation: '):
    text = text.replace(noise, '')
  return (f'process {jax.process_index()} of {jax.process_count()}: another process of this '
          f'job stopped ({text[:160]}); this one stops too. Run the job again (every process) '
          'to resume it from its latest checkpoint')


def fitted_batch(wanted: int, num_images: int) -> int:
  """The batch of a phase that trains on `num_images` images (a defense's small clean or
  isolated set): `wanted`, cut to the set's size and then to a multiple of the device
  count (each batch is split evenly over the devices); at least one image per device."""
  n = jax.device_count()
  return max(n, min(wanted, num_images) // n * n)


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
  """Every leaf of `tree` on `sharding`: the one way an array reaches a mesh program.

  Host values (numpy arrays, Python and numpy scalars; identical on every process) become
  global arrays, each process supplying only the slices its devices hold. A device array
  already on `sharding` is kept as it is; one elsewhere (a restored checkpoint on one
  device, a state on another mesh) is moved, whole. Typed PRNG keys keep their type."""
  return jax.tree.map(lambda a: _put_leaf(a, sharding), tree)


def _put_leaf(a: Any, sharding: NamedSharding) -> jax.Array:
  if isinstance(a, jax.Array):
    if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(_put_leaf(jax.random.key_data(a), sharding),
                                      impl=jax.random.key_impl(a))
    if a.sharding == sharding:
      return a
    # An equivalent placement of another type (a fresh array on a 1-device mesh) is
    # re-labelled too: a jitted program is compiled once per input sharding type, so the
    # first step would compile a second program. A copy: the steps donate their inputs.
    if a.sharding.is_equivalent_to(sharding, a.ndim):
      return jax.device_put(a, sharding, may_alias=False)
    if not a.is_fully_addressable:  # spans processes: a collective reshard
      return jax.device_put(a, sharding)
  host = np.asarray(a)
  return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def put_per_run(tree: Any, mesh: Mesh) -> Any:
  """Host arrays [G, ...] -> global arrays split over 'runs'."""
  return put(tree, per_run(mesh))


def put_replicated(tree: Any, mesh: Mesh) -> Any:
  """Host arrays -> global arrays replicated on every device."""
  return put(tree, replicated(mesh))


def is_writer() -> bool:
  """Only process 0 writes files (every process computes the same values)."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Every process waits here until all have arrived: placed after process 0 writes a file
  that the others read next, so that no process decides from a file not yet written. A
  no-op in a single process."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f'abd_jax {name}')


def agree(value: Any) -> Any:
  """Process 0's `value` (a bool, an int, or a list of them) on every process. Every
  decision read from the workdir (is this run finished? this detection saved?) goes through
  it: another process may read the file a moment before process 0 writes it, and processes
  that decide differently stop in different collectives. A no-op in a single process."""
  if jax.process_count() == 1:
    return value
  out = multihost_utils.broadcast_one_to_all(np.asarray(value, np.int64))
  if isinstance(value, (list, tuple)):
    return [type(v)(x) for v, x in zip(value, np.asarray(out).tolist())]
  return type(value)(np.asarray(out).item())


def fetch(tree: Any) -> Any:
  """Host (numpy) copies of device values, the multi-process way: the one way a value is
  read back. An array split over devices of several processes is gathered from all of
  them (a collective: every process calls this for the same arrays in the same order);
  others are read from this process's devices."""

  def one(a):
    if isinstance(a, jax.Array) and not (a.is_fully_addressable or a.is_fully_replicated):
      return np.asarray(multihost_utils.process_allgather(a, tiled=True))
    return np.asarray(jax.device_get(a))

  return jax.tree.map(one, tree)
