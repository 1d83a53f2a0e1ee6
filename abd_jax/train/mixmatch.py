"""MixMatch (Berthelot et al., NeurIPS 2019) as DBD's stage 3 runs it (Huang et al., ICLR
2022; utils/trainer/semi.py), fused in one jitted step.

A batch holds B rows of the training set; hp['labelled'] (bool [N]) says which rows keep
their label. Every row gets K = 2 weak augmentations (the run's crop and flip). A
labelled row's target is its one-hot label; an unlabelled row's is the sharpened mean of
the model's predictions on its two views (no gradient). The 2B views and targets are
mixed with a random permutation of themselves, λ ~ Beta(α, α), λ ← max(λ, 1 − λ), and

    L = L_x + λ_u(t) · L_u,  L_x = soft cross-entropy over the labelled views,
    L_u = squared error of the probabilities over the unlabelled views (mean over classes),
    λ_u(t) = hp['lambda_u'] · min(1, t / hp['rampup_steps']) at step t.

Deviations from the original, for one fixed-shape program: labelled and unlabelled rows
share one batch (the original draws B of each), labelled rows also get two views, and
one forward pass covers the mixed batch (no interleaving over three passes).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from abd_jax.data import augment


def sharpen(p: jax.Array, temperature: jax.Array) -> jax.Array:
  """p^(1/T) normalized over the last axis (MixMatch Eq. 7). p: [B,K] probabilities."""
  q = p ** (1.0 / temperature)
  return q / jnp.sum(q, axis=-1, keepdims=True)


def mixmatch_loss(logits: jax.Array, targets: jax.Array, labelled: jax.Array,
                  lambda_u: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
  """(L_x + λ_u·L_u, (L_x, L_u)) for logits [V,K], soft targets [V,K] and labelled [V]
  (bool): L_x the mean soft cross-entropy over the labelled views, L_u the mean over the
  unlabelled views and the K classes of (softmax − target)² (DBD's model/loss.py)."""
  lab = labelled.astype(jnp.float32)
  unl = 1.0 - lab
  log_p = jax.nn.log_softmax(logits, axis=-1)
  lx = -jnp.sum(lab * jnp.sum(targets * log_p, axis=-1)) / jnp.maximum(jnp.sum(lab), 1.0)
  sq = jnp.mean((jnp.exp(log_p) - targets) ** 2, axis=-1)
  lu = jnp.sum(unl * sq) / jnp.maximum(jnp.sum(unl), 1.0)
  return lx + lambda_u * lu, (lx, lu)


def make_mixmatch_step(model: nn.Module, *, num_classes: int, crop_padding: int, flip: bool,
                       gather):
  """The MixMatch train step (signature of `step.make_train_step`'s). hp: 'labelled' bool
  [N], 'lambda_u', 'rampup_steps', 'sharpen_t', 'mix_alpha'."""

  def step(state, metrics, images, labels, order, index, key, hp):
    x, y, rows = gather(images, labels, order, index)
    key = jax.random.fold_in(key, state.step)
    k1, k2, k_lam, k_perm = jax.random.split(key, 4)
    views = jnp.concatenate([augment(k1, x, crop_padding, flip), augment(k2, x, crop_padding, flip)])
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    guess_logits, _ = model.apply(variables, views, train=True, mutable=['batch_stats'])
    b = x.shape[0]
    p = jax.nn.softmax(jax.lax.stop_gradient(guess_logits), axis=-1)
    guess = sharpen((p[:b] + p[b:]) / 2, hp['sharpen_t'])
    labelled = hp['labelled'][rows]
    targets = jnp.where(labelled[:, None], jax.nn.one_hot(y, num_classes), guess)
    targets, labelled2 = jnp.concatenate([targets, targets]), jnp.tile(labelled, 2)
    lam = jax.random.beta(k_lam, hp['mix_alpha'], hp['mix_alpha'])
    lam = jnp.maximum(lam, 1.0 - lam)
    perm = jax.random.permutation(k_perm, 2 * b)
    mixed = lam * views + (1.0 - lam) * views[perm]
    mixed_targets = lam * targets + (1.0 - lam) * targets[perm]
    ramp = jnp.clip((state.step + 1) / hp['rampup_steps'], 0.0, 1.0)

    def loss_fn(params):
      logits, updates = model.apply({'params': params, 'batch_stats': state.batch_stats}, mixed,
                                    train=True, mutable=['batch_stats'])
      loss, _ = mixmatch_loss(logits, mixed_targets, labelled2, hp['lambda_u'] * ramp)
      return loss, updates['batch_stats']

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    correct = jnp.sum(jnp.argmax(guess_logits[:b], -1) == y).astype(jnp.int32)
    return state, {'loss_sum': metrics['loss_sum'] + loss * b,
                   'correct': metrics['correct'] + correct,
                   'count': metrics['count'] + b}

  return step
