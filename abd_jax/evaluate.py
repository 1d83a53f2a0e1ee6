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
  """A test set padded to whole batches of `batch_size` and kept on device. `valid` masks
  the padding.

  A stacked set (one per run of a vmapped sweep group) has a leading run axis on every
  array and one size per run."""
  images: jax.Array        # uint8 [(G,) num_batches * B, H, W, C]
  labels: jax.Array        # int32 [(G,) num_batches * B]
  valid: jax.Array         # bool  [(G,) num_batches * B]
  size: int | np.ndarray   # number of real examples (int64 [G] when stacked)
  batch_size: int = 0      # B, the batch the set is padded to (0: the evaluator's)

  @property
  def stacked(self) -> bool:
    return self.images.ndim == 5

  def num_batches(self, batch_size: int | None = None, limit: int = 0) -> int:
    """Batches of `batch_size` (default: the set's) that cover the first `limit` examples
    (0 = all)."""
    batch_size = batch_size or self.batch_size
    n = int(np.max(self.size))
    n = n if limit <= 0 else min(limit, n)
    return math.ceil(n / batch_size)


def eval_batch_size(num_examples: int, batch_size: int, mesh) -> int:
  """The batch an evaluation of `num_examples` examples uses: `batch_size`, or, when the set
  is smaller, its size rounded up to a multiple of the mesh's 'data' devices (batches are
  split over them), so a small test set is never padded beyond one batch."""
  devices = int(mesh.shape[parallel.DATA_AXIS])
  return min(batch_size, max(1, math.ceil(num_examples / devices)) * devices)


def make_eval_set(images: np.ndarray, labels: np.ndarray, batch_size: int, mesh) -> EvalSet:
  """The set padded to whole batches of `eval_batch_size(len(labels), batch_size, mesh)`,
  replicated on the mesh."""
  n = len(labels)
  batch_size = eval_batch_size(n, batch_size, mesh)
  valid = np.arange(max(1, math.ceil(n / batch_size)) * batch_size) < n
  arrays = parallel.put_replicated(
      (_pad_to(images, len(valid)), _pad_to(labels.astype(np.int32), len(valid)), valid), mesh)
  return EvalSet(*arrays, size=n, batch_size=batch_size)


def _pad_to(a: np.ndarray, length: int) -> np.ndarray:
  return np.concatenate([a, np.zeros((length - len(a), *a.shape[1:]), a.dtype)])


def put_labels(labels: np.ndarray, batch_size: int, mesh) -> jax.Array:
  """Another labelling of an EvalSet's images (e.g. the backdoor target), padded alike
  (same `batch_size` and mesh as the set's `make_eval_set`)."""
  n = len(labels)
  b = eval_batch_size(n, batch_size, mesh)
  return parallel.put_replicated(_pad_to(labels.astype(np.int32), max(1, math.ceil(n / b)) * b),
                                 mesh)


def _pad_stack(arrays: list[np.ndarray], length: int) -> np.ndarray:
  return np.stack([np.concatenate([a, np.zeros((length - len(a), *a.shape[1:]), a.dtype)])
                   for a in arrays])


def make_stacked_eval_set(images: list[np.ndarray], labels: list[np.ndarray], batch_size: int,
                          mesh) -> EvalSet:
  """One test set per run (e.g. each run's triggered images), padded to the same whole
  number of batches and stacked on a leading run axis, sharded over the 'runs' mesh axis."""
  sizes = np.array([len(y) for y in labels], np.int64)
  batch_size = eval_batch_size(int(sizes.max()), batch_size, mesh)
  length = max(1, math.ceil(int(sizes.max()) / batch_size)) * batch_size
  valid = np.arange(length)[None, :] < sizes[:, None]
  arrays = parallel.put_per_run(
      (_pad_stack(images, length), _pad_stack([y.astype(np.int32) for y in labels], length),
       valid), mesh)
  return EvalSet(*arrays, size=sizes, batch_size=batch_size)


def put_stacked_labels(labels: list[np.ndarray], batch_size: int, mesh) -> jax.Array:
  """Another labelling of a stacked EvalSet's images, padded alike."""
  n = max(len(y) for y in labels)
  batch_size = eval_batch_size(n, batch_size, mesh)
  length = max(1, math.ceil(n / batch_size)) * batch_size
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

  Batches have the set's own `batch_size` (`make_eval_set` clamps it to the set's size);
  `batch_size` here is used for a set that does not carry one. One program is compiled
  per batch size.

  `stacked=True` evaluates a vmapped sweep group: `variables` (and the attack's key and
  hyperparameters) carry a leading run axis [G, ...], the set is shared by every run or
  stacked per run, and accuracies come back as float64 [G]."""

  def __init__(self, model: nn.Module, attack: Perturbation, batch_size: int, mesh,
               stacked: bool = False):
    self.model, self.attack = model, attack
    self.batch_size, self.stacked = batch_size, stacked
    self._sharding = parallel.batch_sharded(mesh)
    self._variables_sharding = parallel.per_run(mesh) if stacked else parallel.replicated(mesh)
    self._programs: dict[tuple[str, bool, int], object] = {}

  def _program(self, kind: str, per_run: bool, batch_size: int):
    """The jitted counting pass `kind` ('clean' or 'robust') over batches of `batch_size`."""
    cache_key = (kind, per_run, batch_size)
    if cache_key in self._programs:
      return self._programs[cache_key]
    model, attack, sharding = self.model, self.attack, self._sharding

    def batch(images, labels, valid, index):
      sl = lambda a: jax.lax.with_sharding_constraint(
          jax.lax.dynamic_slice_in_dim(a, index * batch_size, batch_size), sharding)
      return sl(images).astype(jnp.float32) / 255.0, sl(labels), sl(valid)

    def clean_hits(variables, images, labels, valid, index):
      x, y, v = batch(images, labels, valid, index)
      pred = jnp.argmax(model.apply(variables, x, train=False), -1)
      return jnp.sum((pred == y) & v)

    def robust_hits(variables, images, labels, valid, index, limit, key, hp):
      # Only the first `limit` examples count: the rest of the last batch is masked.
      x, y, v = batch(images, labels, valid, index)
      v = v & (index * batch_size + jnp.arange(batch_size) < limit)
      logits_fn = attack_logits_fn(model, variables, 'eval')
      x_adv = attack(logits_fn, x, y, jax.random.fold_in(key, index), hp)
      pred = jnp.argmax(logits_fn(x_adv), -1)
      return jnp.sum((pred == y) & v)

    fn = clean_hits if kind == 'clean' else robust_hits
    if not self.stacked:
      program = jax.jit(fn)
    else:
      # Variables, keys and budgets are per run; the set is shared (None) or per run (0).
      a = 0 if per_run else None
      axes = (0, a, a, a, None) if kind == 'clean' else (0, a, a, a, None, None, 0, 0)
      program = jax.jit(jax.vmap(fn, in_axes=axes, spmd_axis_name=parallel.RUNS_AXIS))
    self._programs[cache_key] = program
    return program

  def _set_batch(self, s: EvalSet) -> int:
    return s.batch_size or self.batch_size

  def _result(self, hits, counted) -> float | np.ndarray:
    hits = np.asarray(parallel.fetch(hits), np.float64)
    return hits / counted if self.stacked else float(hits) / counted

  def accuracy(self, variables, s: EvalSet, labels: jax.Array | None = None) -> float | np.ndarray:
    """Fraction of `s` classified as `labels` (default: the set's own labels)."""
    labels = s.labels if labels is None else labels
    variables = parallel.put(variables, self._variables_sharding)
    bs = self._set_batch(s)
    fn = self._program('clean', s.stacked, bs)
    hits = sum(fn(variables, s.images, labels, s.valid, jnp.int32(i))
               for i in range(s.num_batches(bs)))
    return self._result(hits, s.size)

  def robust_accuracy(self, variables, s: EvalSet, key: jax.Array, hp: dict,
                      limit: int = 0) -> float | np.ndarray:
    """Accuracy under the attack on exactly the first `limit` examples (0 = all): the
    batches that cover them are attacked, the examples past `limit` are not counted."""
    variables, key, hp = parallel.put((variables, key, hp), self._variables_sharding)
    bs = self._set_batch(s)
    nb = s.num_batches(bs, limit)
    fn = self._program('robust', s.stacked, bs)
    bound = jnp.int32(limit if limit > 0 else np.iinfo(np.int32).max)
    hits = sum(fn(variables, s.images, s.labels, s.valid, jnp.int32(i), bound, key, hp)
               for i in range(nb))
    counted = np.minimum(limit, s.size) if limit > 0 else s.size
    return self._result(hits, counted)
