"""Per-sample passes of a trained model over a whole (training) set, on device.

The defenses score every training sample (steps to flip, loss after iFGSM, penultimate
features). `map_samples` runs one jitted function batch by batch over the set, which is
put on the device once and padded to whole batches, and returns host arrays of length N.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from abd_jax import evaluate, parallel


def map_samples(fn: Callable[..., Any], variables: dict, images: np.ndarray, labels: np.ndarray,
                batch_size: int, mesh, *args, with_rows: bool = False) -> Any:
  """`fn(variables, x, y, valid, *args) -> pytree of [B, ...]` over every sample.

  images: uint8 [N,H,W,C]; x is float32 [B,H,W,C] in [0, 1]; y int32 [B]; valid bool [B]
  marks real samples (False on the padding of the last batch). With `with_rows`, fn is
  called as `fn(variables, x, y, valid, rows, *args)`, rows int32 [B] the samples' indices
  in the set (per-sample randomness by `fold_in(key, row)` then does not depend on the
  batch size). Returns the pytree with leaves [N, ...] as numpy arrays. All batches are
  dispatched before any is fetched, so the device never waits on the host.
  """
  eval_set = evaluate.make_eval_set(images, labels, batch_size, mesh)
  batch_size = eval_set.batch_size  # clamped to the set's size
  sharding = parallel.batch_sharded(mesh)
  variables, args = parallel.put_replicated((variables, args), mesh)

  @jax.jit
  def run(variables, images, labels, valid, index, *args):
    sl = lambda a: jax.lax.with_sharding_constraint(
        jax.lax.dynamic_slice_in_dim(a, index * batch_size, batch_size), sharding)
    x = sl(images).astype(jnp.float32) / 255.0
    if with_rows:
      rows = index * batch_size + jnp.arange(batch_size, dtype=jnp.int32)
      return fn(variables, x, sl(labels), sl(valid), rows, *args)
    return fn(variables, x, sl(labels), sl(valid), *args)

  outs = [run(variables, eval_set.images, eval_set.labels, eval_set.valid, jnp.int32(i), *args)
          for i in range(eval_set.num_batches(batch_size))]
  outs = parallel.fetch(outs)
  return jax.tree.map(lambda *leaves: np.concatenate(leaves)[:eval_set.size], *outs)


def penultimate_features(model, variables: dict, images: np.ndarray, labels: np.ndarray,
                         batch_size: int, mesh) -> np.ndarray:
  """The pooled penultimate representation [N, F] (float32) of every image, BatchNorm in
  inference mode: the input of spectral signatures and activation clustering."""

  def features(variables, x, y, valid):
    del y, valid
    _, state = model.apply(variables, x, train=False, mutable=['intermediates'])
    return state['intermediates']['features'][0].astype(jnp.float32)

  return map_samples(features, variables, images, labels, batch_size, mesh)
