"""Data parallelism with `jax.sharding`: one mesh axis 'data' over every device of every
process. Train state and datasets are replicated; each batch is split along 'data'.

BatchNorm statistics are therefore *global*: under jit the batch mean and variance are
reduced over the whole sharded batch, so N devices compute what one device would for the
same global batch (up to float reduction order).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'


def maybe_initialize_distributed(enabled: bool) -> None:
  """Multi-host runs: connect the processes (coordinator from the environment / cluster)."""
  if enabled:
    jax.distributed.initialize()


def make_mesh() -> Mesh:
  # Auto axis types: the compiler propagates the batch sharding from one constraint.
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def put_replicated(tree: Any, mesh: Mesh) -> Any:
  """Host arrays (identical on every process) -> global arrays replicated on every device."""
  sharding = replicated(mesh)
  return jax.tree.map(lambda a: jax.make_array_from_callback(np.shape(a), sharding,
                                                             lambda idx: np.asarray(a)[idx]), tree)
