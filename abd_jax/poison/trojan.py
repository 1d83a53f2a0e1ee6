"""Trojan attack (Liu et al. 2018, "Trojaning Attack on Neural Networks").

Liu et al. generate the trigger from a trained model instead of fixing it: they pick
internal neurons, then optimize the pixels inside a trigger mask so that those neurons
fire strongly, and poison with the result. Here:

1. Surrogate: a standard-trained model (trained or loaded by `abd_jax.surrogate`).
2. Neurons: the penultimate layer is the pooled feature vector [F] that every model of
   this library sows. Following the authors' released selection script
   (PurduePAML/TrojanNN, code/get_neuron_idx_from_weight.py: an fc6 neuron is ranked by
   the summed |weight| of its connections into fc7), unit j is ranked by
   s_j = sum_k |W_head[j, k]|, the weights connecting it to the logits, and the
   `trojan_neurons` largest are chosen: units the classifier listens to most.
3. Trigger: a k x k x C pattern p in the square mask m, maximizing the mean selected
   activation over a batch of training images stamped with it,

       max_{p in [0,1]^{k x k x C}}  mean_{i, j in S} phi_j((1 - m) * x_i + m * p),

   by `trojan_steps` signed-gradient steps p <- clip(p + step_size * sign(grad), 0, 1).
   (Liu et al. drive the activations to a chosen target value; with the pattern boxed
   in [0,1] plain maximization reaches the same saturated trigger without that extra
   hyperparameter.)
4. Poison: the BadNets stamp with that pattern, x~ = (1 - m) * x + m * ((1 - a) x + a p)
   (ICLR'22 seed, Eq. 3), relabelled as `label_mode` says (dirty by default).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from abd_jax.data import Dataset
from abd_jax.errors import ConfigError
from abd_jax.poison import triggers
from abd_jax.poison.base import Attack, AttackContext, check_patch_fits

Array = jax.Array

TRIGGER_BATCH = 256  # training images the trigger is optimized over


def select_neurons(head_kernel: Array, count: int) -> np.ndarray:
  """The `count` feature units with the largest summed |outgoing weight|.

  head_kernel: the final Dense kernel [F, K] (features x classes). Returns int indices
  [count] into the feature vector, strongest first (ties: lower index first).
  """
  strength = np.abs(np.asarray(head_kernel, np.float32)).sum(axis=1)
  return np.argsort(-strength, kind='stable')[:count]


def feature_fn(model, variables: dict) -> Callable[[Array], Array]:
  """x [B,H,W,C] in [0,1] -> the pooled penultimate features [B,F], BatchNorm in eval mode."""
  def features(x: Array) -> Array:
    _, state = model.apply(variables, x, train=False, mutable=['intermediates'])
    return state['intermediates']['features'][0]
  return features


def optimize_pattern(features: Callable[[Array], Array], images: Array, init: Array,
                     neurons: Array, mask: Array, corner: tuple[int, int], *, steps: int,
                     step_size: float) -> tuple[Array, Array, Array]:
  """Signed-gradient ascent of the mean selected activation over the pattern.

  images [B,H,W,C] in [0,1]; init [k,k,C] in [0,1]; neurons int [n]; mask [H,W,1] the
  k x k square at `corner` (y0, x0). Returns (pattern [k,k,C] in [0,1], mean activation
  with `init`, mean activation with the pattern). One fused loop: jit it.
  """
  hw = images.shape[1:3]

  def activation(p: Array) -> Array:
    stamped = triggers.apply_patch(images, triggers.place_pattern(p, hw, *corner), mask, 1.0)
    return features(stamped)[:, neurons].mean()

  def step(_, p: Array) -> Array:
    return jnp.clip(p + step_size * jnp.sign(jax.grad(activation)(p)), 0.0, 1.0)

  pattern = jax.lax.fori_loop(0, steps, step, init)
  return pattern, activation(init), activation(pattern)


def sample_images(key: Array, images: np.ndarray, count: int) -> Array:
  """`count` (at most all) distinct uint8 images [N,H,W,C] -> float32 [count,H,W,C] in [0,1]."""
  idx = np.asarray(jax.random.permutation(key, len(images)))[:count]
  return jnp.asarray(images[np.sort(idx)], jnp.float32) / 255.0


def build(cfg: ml_collections.ConfigDict, data: Dataset, key: Array,
          ctx: AttackContext) -> Attack:
  check_patch_fits(cfg, data)
  model, variables = ctx.require_surrogate('trojan')
  kernel = variables['params']['head']['kernel']
  if cfg.trojan_neurons > kernel.shape[0]:
    raise ConfigError('attack.trojan_neurons', cfg.trojan_neurons,
                      f'the surrogate has {kernel.shape[0]} penultimate feature units')
  neurons = select_neurons(kernel, cfg.trojan_neurons)

  h, w, c = data.image_shape
  mask, corner = triggers.patch_mask((h, w), cfg.patch_size, cfg.position)
  init_key, batch_key = jax.random.split(key)
  # A seeded random start, like BadNets' random pattern: each seed gets its own trigger.
  init = jax.random.uniform(init_key, (cfg.patch_size, cfg.patch_size, c), jnp.float32)
  optimize = jax.jit(lambda x, p0: optimize_pattern(
      feature_fn(model, variables), x, p0, jnp.asarray(neurons), mask, corner,
      steps=cfg.trojan_steps, step_size=cfg.trojan_step_size))
  pattern, before, after = optimize(sample_images(batch_key, data.x_train, TRIGGER_BATCH), init)

  full = triggers.place_pattern(pattern, (h, w), *corner)
  trigger = lambda x, alpha: triggers.apply_patch(x, full, mask, alpha)
  return Attack(
      poison=lambda x, k: trigger(x, cfg.alpha), trigger=trigger, strength=cfg.alpha,
      params=dict(patch_size=cfg.patch_size, position=cfg.position, alpha=cfg.alpha,
                  corner=tuple(int(v) for v in corner), neurons=[int(j) for j in neurons],
                  steps=cfg.trojan_steps, step_size=cfg.trojan_step_size,
                  activation_before=float(before), activation_after=float(after),
                  pattern=np.round(np.asarray(pattern), 4).tolist(),
                  surrogate=ctx.surrogate_source))
