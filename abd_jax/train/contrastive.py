"""Contrastive pre-training of a backbone, fused in one jitted step: two SimCLR views of
every image of the batch, one forward pass over both (BatchNorm statistics span them), an
MLP projection head, L2-normalized embeddings, and

    'simclr'  DBD's stage 1 (Huang et al., ICLR 2022; model/loss.py): InfoNCE with the
              other view as the positive, anchors the first views only (the original is
              one-directional), temperature hp['temperature'] (0.5)
    'supcon'  D-ST's semi-supervised contrastive learning (Chen et al., NeurIPS 2022;
              ST/losses.py): an anchor the sample flags mark CLEAN takes every same-label
              view of the batch as a positive, any other anchor only its own other view;
              all 2B views are anchors, the loss scaled by τ/τ_base (hp['contrast_scale'])

Labels are not used by 'simclr'. The step's metrics count, as its accuracy, the anchors
whose most similar other view is a positive.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from abd_jax.data.strong_augment import simclr_view
from abd_jax.train.objective import CLEAN, Objective


def contrastive_loss(z: jax.Array, positives: jax.Array, anchors: jax.Array,
                     temperature: jax.Array, scale: jax.Array = 1.0) -> jax.Array:
  """InfoNCE / SupCon (Khosla et al. 2020, Eq. 2) over views z [V,D] (L2-normalized):

      ℓ_a = −scale · mean_{p ∈ P(a)} [ s_ap − log Σ_{b ≠ a} exp(s_ab) ],  s = z·zᵀ / τ,

  averaged over the anchors a (anchors: bool [V]); positives: bool [V,V], P(a) its row
  (never a itself). The positive stays in the denominator, self-similarity does not."""
  v = z.shape[0]
  s = (z @ z.T).astype(jnp.float32) / temperature
  not_self = ~jnp.eye(v, dtype=bool)
  log_norm = jax.nn.logsumexp(jnp.where(not_self, s, -jnp.inf), axis=1, keepdims=True)
  log_prob = s - log_norm
  pos = (positives & not_self).astype(jnp.float32)
  mean_pos = jnp.sum(pos * log_prob, axis=1) / jnp.maximum(jnp.sum(pos, axis=1), 1.0)
  a = anchors.astype(jnp.float32)
  return -scale * jnp.sum(a * mean_pos) / jnp.maximum(jnp.sum(a), 1.0)


def simclr_pairs(batch: int) -> tuple[jax.Array, jax.Array]:
  """(positives [2B,2B], anchors [2B]) for views laid out [first views; second views]:
  i and i ± B are positives; the first B views are the anchors (DBD's one-directional loss)."""
  index = jnp.arange(2 * batch) % batch
  positives = (index[:, None] == index[None, :]) & ~jnp.eye(2 * batch, dtype=bool)
  return positives, jnp.arange(2 * batch) < batch


def supcon_pairs(labels: jax.Array, flags: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(positives [2B,2B], anchors [2B]) of D-ST's loss for the batch's labels and sample
  flags [B] (views laid out [first; second]): a CLEAN anchor's positives are all views with
  its label (whatever their flag), another anchor's only its own other view."""
  b = labels.shape[0]
  labels2, flags2 = jnp.tile(labels, 2), jnp.tile(flags, 2)
  index = jnp.arange(2 * b) % b
  same_label = labels2[:, None] == labels2[None, :]
  same_sample = index[:, None] == index[None, :]
  positives = jnp.where((flags2 == CLEAN)[:, None], same_label, same_sample)
  return positives & ~jnp.eye(2 * b, dtype=bool), jnp.ones(2 * b, bool)


def _top1_positive(z: jax.Array, positives: jax.Array, anchors: jax.Array) -> jax.Array:
  """How many anchors have a positive as their most similar other view."""
  s = jnp.where(jnp.eye(z.shape[0], dtype=bool), -jnp.inf, z @ z.T)
  nearest = jnp.argmax(s, axis=1)
  hit = jnp.take_along_axis(positives, nearest[:, None], axis=1)[:, 0]
  return jnp.sum(hit & anchors)


def make_contrastive_step(model: nn.Module, objective: Objective, *, batch_size: int,
                          flip: bool, crop_scale: tuple[float, float], gather,
                          batch_sharding=None):
  """The train step (same signature as `step.make_train_step`'s) of `objective.loss` in
  CONTRASTIVE; `model` outputs the projection (`objective.projection`). `gather(images,
  labels, order, index)` -> (x float [B,H,W,C], y, rows)."""
  del batch_sharding  # the gather already constrains the batch

  def step(state, metrics, images, labels, order, index, key, hp):
    x, y, rows = gather(images, labels, order, index)
    key = jax.random.fold_in(key, state.step)
    k1, k2 = jax.random.split(key)
    view = lambda k: simclr_view(k, x, crop_scale=crop_scale, flip=flip)
    views = jnp.concatenate([view(k1), view(k2)])
    if objective.loss == 'simclr':
      positives, anchors = simclr_pairs(batch_size)
      scale = 1.0
    else:
      positives, anchors = supcon_pairs(y, hp['sample_flags'][rows])
      scale = hp['contrast_scale']

    def loss_fn(params):
      out, updates = model.apply({'params': params, 'batch_stats': state.batch_stats}, views,
                                 train=True, mutable=['batch_stats'])
      z = out / jnp.maximum(jnp.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
      loss = contrastive_loss(z, positives, anchors, hp['temperature'], scale)
      return loss, (z, updates.get('batch_stats', {}))

    (loss, (z, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    count = jnp.sum(anchors).astype(jnp.int32)
    return state, {'loss_sum': metrics['loss_sum'] + loss * count,
                   'correct': metrics['correct'] + _top1_positive(
                       jax.lax.stop_gradient(z), positives, anchors).astype(jnp.int32),
                   'count': metrics['count'] + count}

  return step
