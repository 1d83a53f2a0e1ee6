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
from abd_jax.train.objective import (Objective, attention_distillation, local_gradient_ascent,
                                     prune_head)
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
                    mixing: Mixing | None = None, objective: Objective = Objective(),
                    per_example: bool = False):
  """Returns `step(state, metrics, images, labels, order, index, key, hp) -> (state, metrics)`.

  images: uint8 [N,H,W,C] on device, or an `Overlaid` set (a sweep's poisoned copy of a
  shared clean set); labels int32 [N]; order: int32 [N] permutation of the
  epoch; index: int32 scalar, batch number within the epoch; key: the run's training key
  (the step folds in `state.step`, so resuming replays the same randomness); hp: traced
  perturbation hyperparameters. `metrics` accumulates sums on device between host reads.
  `mixing` (mixup / CutMix) replaces the single-label loss by the mixed one.
  `objective` changes the loss (see `objective`); `per_example` hands the optimizer one
  gradient per example (leading batch axis), as DP-SGD's aggregation needs (a model
  without batch statistics: each example's forward pass is its own).
  """
  if per_example and (objective.loss != 'ce' or mixing is not None):
    # LGA acts on the batch mean and NAD on the batch's attention maps; mixing would let
    # one example's gradient carry another's image, so clipping would bound neither.
    raise ValueError('per-example (DP-SGD) gradients need the plain cross-entropy without '
                     f'mixing, not loss {objective.loss!r} / mixing {mixing!r}')
  ce = optax.softmax_cross_entropy_with_integer_labels
  capture = ['batch_stats'] + (['intermediates'] if objective.loss == 'nad' else [])

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

    teacher_stages = None
    if objective.loss == 'nad':  # the teacher sees the same inputs, in eval mode
      _, teacher = model.apply(hp['teacher'], x_adv, train=False, mutable=['intermediates'])
      teacher_stages = jax.lax.stop_gradient(teacher['intermediates']['stages'])

    def loss_fn(params, x, y, y_other):
      logits, updates = model.apply({'params': params, 'batch_stats': state.batch_stats},
                                    x, train=True, mutable=capture)
      loss = (lam * ce(logits, y) + (1.0 - lam) * ce(logits, y_other)).mean()
      if objective.loss == 'lga':
        loss = local_gradient_ascent(loss, hp['gamma'])
      elif objective.loss == 'ascent':
        loss = -loss
      elif objective.loss == 'nad':
        loss = loss + attention_distillation(updates['intermediates']['stages'], teacher_stages,
                                             hp['nad_betas'], objective.nad_power)
      return loss, (logits, updates.get('batch_stats', {}))

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if per_example:
      one = lambda p, xi, yi, oi: grad_fn(p, xi[None], yi[None], oi[None])
      (losses, (logits, _)), grads = jax.vmap(one, in_axes=(None, 0, 0, 0))(
          state.params, x_adv, y, y_other)
      loss, logits, batch_stats = losses.mean(), logits[:, 0], state.batch_stats
    else:
      (loss, (logits, batch_stats)), grads = grad_fn(state.params, x_adv, y, y_other)
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    if objective.freeze_pruned:  # momentum and decay would regrow the pruned rows
      state = state.replace(params=prune_head(state.params, hp['head_keep']))
    metrics = {
        'loss_sum': metrics['loss_sum'] + loss * batch_size,
        'correct': metrics['correct'] + jnp.sum(jnp.argmax(logits, -1) == y),
        'count': metrics['count'] + batch_size,
    }
    return state, metrics

  return step
