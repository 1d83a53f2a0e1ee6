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
  """A test set padded to whole batches and kept on device. `valid` masks the padding."""
  images: jax.Array  # uint8 [num_batches * B, H, W, C]
  labels: jax.Array  # int32 [num_batches * B]
  valid: jax.Array   # bool  [num_batches * B]
  size: int          # number of real examples

  def num_batches(self, batch_size: int, limit: int = 0) -> int:
    n = self.size if limit <= 0 else min(limit, self.size)
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


@dataclasses.dataclass(frozen=True)
class BackdoorTestSet:
  """Triggered test images (host arrays): those whose true label is not the target
  (all-to-all: every image), with their true and their target labels."""
  images: np.ndarray   # uint8 [M, H, W, C]
  labels: np.ndarray   # int32 [M] true labels
  targets: np.ndarray  # int32 [M] labels the backdoor should produce


class Evaluator:
  """Compiled counting passes over an `EvalSet`, batch by batch, summed on device."""

  def __init__(self, model: nn.Module, attack: Perturbation, batch_size: int, mesh):
    self.batch_size = batch_size
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

    self._clean = jax.jit(clean_hits)
    self._robust = jax.jit(robust_hits)

  def accuracy(self, variables, s: EvalSet, labels: jax.Array | None = None) -> float:
    """Fraction of `s` classified as `labels` (default: the set's own labels)."""
    labels = s.labels if labels is None else labels
    hits = sum(self._clean(variables, s.images, labels, s.valid, jnp.int32(i))
               for i in range(s.num_batches(self.batch_size)))
    return float(hits) / s.size

  def robust_accuracy(self, variables, s: EvalSet, key: jax.Array, hp: dict, limit: int = 0) -> float:
    """Accuracy under the attack on the first `limit` examples (0 = all)."""
    nb = s.num_batches(self.batch_size, limit)
    hits = sum(self._robust(variables, s.images, s.labels, s.valid, jnp.int32(i), key, hp)
               for i in range(nb))
    counted = min(nb * self.batch_size, s.size)
    return float(hits) / counted
