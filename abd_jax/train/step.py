"""The jit-compiled training step: gather batch -> augment -> inner maximization ->
weight update, all in one XLA program; the dataset stays on the device."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from abd_jax.data import augment
from abd_jax.data.overlay import Overlaid, gather
from abd_jax.perturb import Mixing, Perturbation, attack_logits_fn
from abd_jax.train.state import TrainState

Metrics = dict[str, jax.Array]


def zero_metrics() -> Metrics:
  return {'loss_sum': jnp.zeros((), jnp.float32), 'correct': jnp.zeros((), jnp.int32),
          'count': jnp.zeros((), jnp.int32)}


def gather_batch(images: jax.Array | Overlaid, labels: jax.Array, order: jax.Array,
                 index: jax.Array, batch_size: int, batch_sharding) -> tuple[jax.Array, jax.Array]:
  """Batch `index` of the epoch's permutation `order`; uint8 -> float32 in [0, 1]."""
  idx = jax.lax.dynamic_slice_in_dim(order, index * batch_size, batch_size)
  if batch_sharding is not None:
    idx = jax.lax.with_sharding_constraint(idx, batch_sharding)
  return gather(images, idx).astype(jnp.float32) / 255.0, labels[idx]


def make_train_step(model: nn.Module, perturbation: Perturbation, *, batch_size: int,
                    crop_padding: int, flip: bool, bn_mode: str, batch_sharding=None,
                    mixing: Mixing | None = None):
  """Returns `step(state, metrics, images, labels, order, index, key, hp) -> (state, metrics)`.

  images: uint8 [N,H,W,C] on device, or an `Overlaid` set (a sweep's poisoned copy of a
  shared clean set); labels int32 [N]; order: int32 [N] permutation of the
  epoch; index: int32 scalar, batch number within the epoch; key: the run's training key
  (the step folds in `state.step`, so resuming replays the same randomness); hp: traced
  perturbation hyperparameters. `metrics` accumulates sums on device between host reads.
  `mixing` (mixup / CutMix) replaces the single-label loss by the mixed one.
  """

  def step(state: TrainState, metrics: Metrics, images, labels, order, index, key, hp):
    x, y = gather_batch(images, labels, order, index, batch_size, batch_sharding)
    key = jax.random.fold_in(key, state.step)
    k_aug, k_adv, k_mix = jax.random.split(key, 3)
    x = augment(k_aug, x, crop_padding, flip)
    logits_fn = attack_logits_fn(model, state.variables, bn_mode)
    x_adv = jax.lax.stop_gradient(perturbation(logits_fn, x, y, k_adv, hp))
    y_other, lam = y, 1.0
    if mixing is not None:
      x_adv, y_other, lam = mixing(k_mix, x_adv, y, hp)

    def loss_fn(params):
      logits, updates = model.apply({'params': params, 'batch_stats': state.batch_stats},
                                    x_adv, train=True, mutable=['batch_stats'])
      ce = optax.softmax_cross_entropy_with_integer_labels
      loss = (lam * ce(logits, y) + (1.0 - lam) * ce(logits, y_other)).mean()
      return loss, (logits, updates.get('batch_stats', {}))

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    metrics = {
        'loss_sum': metrics['loss_sum'] + loss * batch_size,
        'correct': metrics['correct'] + jnp.sum(jnp.argmax(logits, -1) == y),
        'count': metrics['count'] + batch_size,
    }
    return state, metrics

  return step
