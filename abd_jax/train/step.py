"""The jit-compiled training step: gather batch -> augment -> inner maximization ->
weight update, all in one XLA program; the dataset stays on the device."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from abd_jax.data import augment
from abd_jax.data.overlay import Overlaid, gather
from abd_jax.perturb import Mixing, Perturbation, attack_logits_fn
from abd_jax.train.contrastive import make_contrastive_step
from abd_jax.train.critic import CRITIC, Critic, mutual_information, normalize_critic
from abd_jax.train.mixmatch import make_mixmatch_step
from abd_jax.train.objective import (CONTRASTIVE, Objective, attention_distillation,
                                     cbd_weights, class_center_similarity,
                                     local_gradient_ascent, mixed_cross_entropy, prune_head)
from abd_jax.train.sce import symmetric_cross_entropy
from abd_jax.train.state import TrainState

Metrics = dict[str, jax.Array]
# RandomResizedCrop's area range of the contrastive views (DBD's and D-ST's, both 0.2-1).
CONTRASTIVE_CROP_SCALE = (0.2, 1.0)


def zero_metrics() -> Metrics:
  """Host zeros: the loop places them on the mesh like every other input of the step."""
  return {'loss_sum': np.zeros((), np.float32), 'correct': np.zeros((), np.int32),
          'count': np.zeros((), np.int32)}


def gather_batch(images: jax.Array | Overlaid, labels: jax.Array, order: jax.Array,
                 index: jax.Array, batch_size: int,
                 batch_sharding) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Batch `index` of the epoch's permutation `order`: (images uint8 -> float32 in [0, 1]
  [B,H,W,C], labels [B], their rows in the training set [B])."""
  idx = jax.lax.dynamic_slice_in_dim(order, index * batch_size, batch_size)
  if batch_sharding is not None:
    idx = jax.lax.with_sharding_constraint(idx, batch_sharding)
  return gather(images, idx).astype(jnp.float32) / 255.0, labels[idx], idx


def _frozen_backbone(params: dict) -> dict:
  """`params` with every module but the classifier 'head' cut from the gradient."""
  return {k: v if k == 'head' else jax.lax.stop_gradient(v) for k, v in params.items()}


def _features(updates: dict) -> jax.Array:
  """The pooled penultimate features [B,F] a forward pass sowed."""
  return updates['intermediates']['features'][0]


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
  gather = lambda *a: gather_batch(*a, batch_size, batch_sharding)
  if objective.loss in CONTRASTIVE:
    return make_contrastive_step(model, objective, batch_size=batch_size, flip=flip,
                                 crop_scale=CONTRASTIVE_CROP_SCALE, gather=gather)
  if objective.loss == 'mixmatch':
    return make_mixmatch_step(model, num_classes=model.num_classes, crop_padding=crop_padding,
                              flip=flip, gather=gather)
  ce = optax.softmax_cross_entropy_with_integer_labels
  wants_features = objective.loss in ('nad', 'class_centers', 'weighted_ce')
  capture = ['batch_stats'] + (['intermediates'] if wants_features else [])
  critic = Critic(objective.critic) if objective.critic else None

  def step(state: TrainState, metrics: Metrics, images, labels, order, index, key, hp):
    x, y, rows = gather(images, labels, order, index)
    key = jax.random.fold_in(key, state.step)
    k_aug, k_adv, k_mix, k_critic = jax.random.split(key, 4)
    x = augment(k_aug, x, crop_padding, flip)
    logits_fn = attack_logits_fn(model, state.variables, bn_mode)
    x_adv = jax.lax.stop_gradient(perturbation(logits_fn, x, y, k_adv, hp))
    y_other, lam = y, 1.0
    if mixing is not None:
      x_adv, y_other, lam = mixing(k_mix, x_adv, y, hp)

    teacher = None
    if objective.loss in ('nad', 'weighted_ce'):  # the teacher sees the same inputs, in eval mode
      t_logits, t_state = model.apply(hp['teacher'], x_adv, train=False, mutable=['intermediates'])
      teacher = jax.lax.stop_gradient((t_logits, t_state['intermediates']))

    def loss_fn(params, x, y, y_other):
      train = not objective.head_only  # a frozen backbone keeps its running statistics
      used = _frozen_backbone(params) if objective.head_only else params
      logits, updates = model.apply({'params': used, 'batch_stats': state.batch_stats},
                                    x, train=train, mutable=capture if train else
                                    [c for c in capture if c != 'batch_stats'])
      per_sample = lam * ce(logits, y) + (1.0 - lam) * ce(logits, y_other)
      loss = per_sample.mean()
      reported = None
      if objective.loss == 'lga':
        loss = local_gradient_ascent(loss, hp['gamma'])
      elif objective.loss == 'ascent':
        loss = -loss
      elif objective.loss == 'nad':
        loss = loss + attention_distillation(updates['intermediates']['stages'],
                                             teacher[1]['stages'], hp['nad_betas'],
                                             objective.nad_power)
      elif objective.loss == 'sce':
        loss = symmetric_cross_entropy(logits, y, hp['sce_alpha'], hp['sce_beta'],
                                       hp['sce_clamp']).mean()
      elif objective.loss == 'mixed_ce':
        loss = mixed_cross_entropy(per_sample, hp['sample_flags'][rows], hp['ascent_weight'])
      elif objective.loss == 'class_centers':
        loss = class_center_similarity(_features(updates), y, logits.shape[-1])
      elif objective.loss == 'weighted_ce':
        loss = jnp.mean(cbd_weights(ce(teacher[0], y), per_sample) * per_sample)
        if critic is not None:  # the model descends Î(r; z), the critic ascends it
          r, z = teacher[1]['features'][0], _features(updates)
          k_model, k_own = jax.random.split(k_critic)
          fixed = jax.lax.stop_gradient(params[CRITIC])
          mi = mutual_information(critic, fixed, r, z, k_model, hp['mi_weight'])
          reported = loss + mi
          loss = reported - mutual_information(critic, params[CRITIC], r,
                                                jax.lax.stop_gradient(z), k_own, hp['mi_weight'])
      return loss, (loss if reported is None else reported, logits,
                    updates.get('batch_stats', state.batch_stats))

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if per_example:
      one = lambda p, xi, yi, oi: grad_fn(p, xi[None], yi[None], oi[None])
      (_, (losses, logits, _)), grads = jax.vmap(one, in_axes=(None, 0, 0, 0))(
          state.params, x_adv, y, y_other)
      loss, logits, batch_stats = losses.mean(), logits[:, 0], state.batch_stats
    else:
      (_, (loss, logits, batch_stats)), grads = grad_fn(state.params, x_adv, y, y_other)
    old_params = state.params
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    if objective.head_only:  # weight decay would still shrink the frozen backbone
      state = state.replace(params={**old_params, 'head': state.params['head']})
    if critic is not None:
      state = state.replace(params={**state.params,
                                    CRITIC: normalize_critic(state.params[CRITIC])})
    if objective.freeze_pruned:  # momentum and decay would regrow the pruned rows
      state = state.replace(params=prune_head(state.params, hp['head_keep']))
    metrics = {
        'loss_sum': metrics['loss_sum'] + loss * batch_size,
        'correct': metrics['correct'] + jnp.sum(jnp.argmax(logits, -1) == y),
        'count': metrics['count'] + batch_size,
    }
    return state, metrics

  return step
