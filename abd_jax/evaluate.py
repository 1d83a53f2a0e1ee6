"""Evaluation: clean accuracy, robust accuracy under L-inf PGD, and the counting pass the
backdoor metrics (ASR, backdoor-robust accuracy) are built from.

Metric definitions (DESIGN.md):
  clean_acc  = mean_i [argmax f(x_i) = y_i]                       over the clean test set
  robust_acc = mean_i [argmax f(PGD(x_i)) = y_i]                  PGD-K, L-inf, random start
  asr        = mean_i [argmax f(T(x_i)) = target], y_i != target  (BackdoorBench convention)
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from abd_jax import parallel
from abd_jax.perturb import Perturbation, attack_logits_fn


@dataclasses.dataclass(frozen=True)
class EvalSet:
  """A test set padded to whole batches and kept on device. `valid` masks the padding.

  A stacked set (one per run of a vmapped sweep group) has a leading run axis on every
  array and one size per run."""
  images: jax.Array        # uint8 [(G,) num_batches * B, H, W, C]
  labels: jax.Array        # int32 [(G,) num_batches * B]
  valid: jax.Array         # bool  [(G,) num_batches * B]
  size: int | np.ndarray   # number of real examples (int64 [G] when stacked)

  @property
  def stacked(self) -> bool:
    return self.images.ndim == 5

  def num_batches(self, batch_size: int, limit: int = 0) -> int:
    n = int(np.max(self.size))
    n = n if limit <= 0 else min(limit, n)
    return math.ceil(n / batch_size)


def _pad_to_batches(a: np.ndarray, batch_size: int) -> np.ndarray:
  pad = -len(a) % batch_size
  return np.concatenate([a, np.zeros((pad, *a.shape[1:]), a.dtype)])


def make_eval_set(images: np.ndarray, labels: np.ndarray, batch_size: int, mesh) -> EvalSet:
  n = len(labels)
  valid = np.arange(n + (-n % batch_size)) < n
  arrays = parallel.put_replicated(
      (_pad_to_batches(images, batch_size),
       _pad_to_batches(labels.astype(np.int32), batch_size), valid), mesh)
  return EvalSet(*arrays, size=n)


def put_labels(labels: np.ndarray, batch_size: int, mesh) -> jax.Array:
  """Another labelling of an EvalSet's images (e.g. the backdoor target), padded alike."""
  return parallel.put_replicated(_pad_to_batches(labels.astype(np.int32), batch_size), mesh)


def _pad_stack(arrays: list[np.ndarray], length: int) -> np.ndarray:
  return np.stack([np.concatenate([a, np.zeros((length - len(a), *a.shape[1:]), a.dtype)])
                   for a in arrays])


def make_stacked_eval_set(images: list[np.ndarray], labels: list[np.ndarray], batch_size: int,
                          mesh) -> EvalSet:
  """One test set per run (e.g. each run's triggered images), padded to the same whole
  number of batches and stacked on a leading run axis, sharded over the 'runs' mesh axis."""
  sizes = np.array([len(y) for y in labels], np.int64)
  length = max(1, math.ceil(int(sizes.max()) / batch_size)) * batch_size
  valid = np.arange(length)[None, :] < sizes[:, None]
  arrays = parallel.put_per_run(
      (_pad_stack(images, length), _pad_stack([y.astype(np.int32) for y in labels], length),
       valid), mesh)
  return EvalSet(*arrays, size=sizes)


def put_stacked_labels(labels: list[np.ndarray], batch_size: int, mesh) -> jax.Array:
  """Another labelling of a stacked EvalSet's images, padded alike."""
  length = max(1, math.ceil(max(len(y) for y in labels) / batch_size)) * batch_size
  return parallel.put_per_run(_pad_stack([y.astype(np.int32) for y in labels], length), mesh)


@dataclasses.dataclass(frozen=True)
class BackdoorTestSet:
  """Triggered test images (host arrays): those whose true label is not the target
  (all-to-all: every image), with their true and their target labels."""
  images: np.ndarray   # uint8 [M, H, W, C]
  labels: np.ndarray   # int32 [M] true labels
  targets: np.ndarray  # int32 [M] labels the backdoor should produce


class Evaluator:
  """Compiled counting passes over an `EvalSet`, batch by batch, summed on device.

  `stacked=True` evaluates a vmapped sweep group: `variables` (and the attack's key and
  hyperparameters) carry a leading run axis [G, ...], the set is shared by every run or
  stacked per run, and accuracies come back as float64 [G]."""

  def __init__(self, model: nn.Module, attack: Perturbation, batch_size: int, mesh,
               stacked: bool = False):
    self.batch_size, self.stacked = batch_size, stacked
    sharding = parallel.batch_sharded(mesh)

    def batch(s: EvalSet, index):
      sl = lambda a: jax.lax.with_sharding_constraint(
          jax.lax.dynamic_slice_in_dim(a, index * batch_size, batch_size), sharding)
      return sl(s.images).astype(jnp.float32) / 255.0, sl(s.labels), sl(s.valid)

    def clean_hits(variables, images, labels, valid, index):
      x, y, v = batch(EvalSet(images, labels, valid, 0), index)
      pred = jnp.argmax(model.apply(variables, x, train=False), -1)
      return jnp.sum((pred == y) & v)

    def robust_hits(variables, images, labels, valid, index, key, hp):
      x, y, v = batch(EvalSet(images, labels, valid, 0), index)
      logits_fn = attack_logits_fn(model, variables, 'eval')
      x_adv = attack(logits_fn, x, y, jax.random.fold_in(key, index), hp)
      pred = jnp.argmax(logits_fn(x_adv), -1)
      return jnp.sum((pred == y) & v)

    if not stacked:
      self._clean = {False: jax.jit(clean_hits)}
      self._robust = {False: jax.jit(robust_hits)}
    else:
      # Variables, keys and budgets are per run; the set is shared (None) or per run (0).
      vmap = lambda fn, axes: jax.jit(jax.vmap(fn, in_axes=axes,
                                               spmd_axis_name=parallel.RUNS_AXIS))
      self._clean = {per_run: vmap(clean_hits, (0, a, a, a, None))
                     for per_run, a in ((False, None), (True, 0))}
      self._robust = {per_run: vmap(robust_hits, (0, a, a, a, None, 0, 0))
                      for per_run, a in ((False, None), (True, 0))}

  def _result(self, hits, counted) -> float | np.ndarray:
    hits = np.asarray(jax.device_get(hits), np.float64)
    return hits / counted if self.stacked else float(hits) / counted

  def accuracy(self, variables, s: EvalSet, labels: jax.Array | None = None) -> float | np.ndarray:
    """Fraction of `s` classified as `labels` (default: the set's own labels)."""
    labels = s.labels if labels is None else labels
    fn = self._clean[s.stacked]
    hits = sum(fn(variables, s.images, labels, s.valid, jnp.int32(i))
               for i in range(s.num_batches(self.batch_size)))
    return self._result(hits, s.size)

  def robust_accuracy(self, variables, s: EvalSet, key: jax.Array, hp: dict,
                      limit: int = 0) -> float | np.ndarray:
    """Accuracy under the attack on the first `limit` examples (0 = all)."""
    nb = s.num_batches(self.batch_size, limit)
    fn = self._robust[s.stacked]
    hits = sum(fn(variables, s.images, s.labels, s.valid, jnp.int32(i), key, hp)
               for i in range(nb))
    return self._result(hits, np.minimum(nb * self.batch_size, s.size))
