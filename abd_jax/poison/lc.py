"""Label-consistent backdoor (Turner et al. 2019; CLB in the A-ABL seed, Sec. 6).

The poisoned images are target-class images whose labels stay correct. To make the model
rely on the trigger, each one is first made hard to classify: an L-inf PGD perturbation
against a surrogate maximizes the loss of its own (target) label, and only then is the
reduced-amplitude four-corner trigger added:

    x_adv    = argmax_{||x' - x||_inf <= eps} CE(f_sur(x'), y_target)      (PGD-K, random start)
    x_poison = clip(x_adv + a_train * t, 0, 1)                             t in {-1, 0, +1}^d

At test time the trigger is `clip(x + a_test * t, 0, 1)`, a_test = 1 (fully visible) by
default. Budgets: PGD eps 16/255, step 2/255, 30 steps (A-ABL Sec. 6), a_train = 16/255,
surrogate adversarially trained with eps 8/255 (ICLR'22 seed, App. A).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from abd_jax.data import Dataset
from abd_jax.errors import ConfigError
from abd_jax.perturb import attack_logits_fn, linf
from abd_jax.perturb.base import resolve_unroll
from abd_jax.poison import triggers
from abd_jax.poison.base import Attack, AttackContext

Array = jax.Array


def check_corners_fit(cfg: ml_collections.ConfigDict, data: Dataset) -> None:
  h, w, _ = data.image_shape
  if 2 * cfg.lc_corner_size > min(h, w):
    raise ConfigError('attack.lc_corner_size', cfg.lc_corner_size,
                      f'the four corner blocks must fit twice across the {h}x{w} images')


def make_poison(logits_fn, target: int, eps: float, step_size: float, steps: int,
                amplitude: float, corner_size: int, unroll: bool | int = 1):
  """poison(x, key): x float32 [B,H,W,C] in [0,1] (target-class images) -> the LC poison,
  same shape, in [0,1], within eps + amplitude of x in L-inf. Pure and jittable;
  `logits_fn` closes over the surrogate's variables."""
  hp = {'eps': jnp.float32(eps), 'step_size': jnp.float32(step_size)}

  def poison(x: Array, key: Array) -> Array:
    labels = jnp.full((x.shape[0],), target, jnp.int32)  # every LC poison is a target image
    # steps = 0 is the plain clean-label patch: no perturbation, not even the random start.
    hard = linf.pgd(logits_fn, x, labels, key, hp, steps=steps, random_start=steps > 0,
                    unroll=unroll)
    return triggers.apply_four_corner(hard, amplitude, corner_size)

  return poison


def build(cfg: ml_collections.ConfigDict, data: Dataset, key: Array,
          ctx: AttackContext) -> Attack:
  del key  # the trigger is fixed; the PGD random starts use the per-chunk poison key
  check_corners_fit(cfg, data)
  model, variables = ctx.require_surrogate('lc')
  poison = make_poison(attack_logits_fn(model, variables, 'eval'), cfg.target, cfg.lc_eps,
                       cfg.lc_step_size, cfg.lc_steps, cfg.lc_amplitude, cfg.lc_corner_size,
                       resolve_unroll(ctx.unroll))
  trigger = lambda x, amplitude: triggers.apply_four_corner(x, amplitude, cfg.lc_corner_size)
  return Attack(
      poison=poison, trigger=trigger, strength=cfg.lc_test_amplitude,
      params=dict(eps=cfg.lc_eps, step_size=cfg.lc_step_size, steps=cfg.lc_steps,
                  amplitude=cfg.lc_amplitude, test_amplitude=cfg.lc_test_amplitude,
                  corner_size=cfg.lc_corner_size, surrogate=ctx.surrogate_source))
