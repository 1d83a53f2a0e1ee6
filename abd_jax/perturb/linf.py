"""L-inf attacks: PGD (Madry et al. 2018), FGSM with random start (Wong et al. 2020),
iterative FGSM (Kurakin et al. 2017) and least-likely-class targeted FGSM (Kurakin et al. 2017).

All are projected signed-gradient steps

    x_{t+1} = Clip_[0,1]( Proj_{||x' - x||_inf <= eps}( x_t + s * step_size * sign(grad_x CE(f(x_t), y_t)) ) )

differing in the start point, the number of steps, and whether they ascend the loss of
the true label (s = +1) or descend the loss of a target label (s = -1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from abd_jax.perturb.base import Array, Hparams, LogitsFn, clip01, input_grad, iterate


def signed_gradient_steps(logits_fn: LogitsFn, x: Array, x_start: Array, labels: Array,
                          hp: Hparams, *, steps: int, unroll: bool | int,
                          descend: bool = False) -> Array:
  """`steps` projected sign-gradient steps from `x_start` inside the eps-ball around `x`."""
  eps, step_size = hp['eps'], hp['step_size']
  direction = -1.0 if descend else 1.0

  def step(x_adv):
    g = input_grad(logits_fn, x_adv, labels)
    x_adv = x_adv + direction * step_size * jnp.sign(g)
    return clip01(jnp.clip(x_adv, x - eps, x + eps))

  return iterate(steps, step, x_start, unroll)


def uniform_start(key: Array, x: Array, eps: Array) -> Array:
  """x + U(-eps, eps)^d, clipped to [0, 1]."""
  return clip01(x + jax.random.uniform(key, x.shape, x.dtype, -eps, eps))


def pgd(logits_fn: LogitsFn, x: Array, y: Array, key: Array, hp: Hparams, *,
        steps: int, random_start: bool = True, unroll: bool | int = 1) -> Array:
  """L-inf PGD-K: uniform random start (optional), K steps of size `step_size`."""
  start = uniform_start(key, x, hp['eps']) if random_start else x
  return signed_gradient_steps(logits_fn, x, start, y, hp, steps=steps, unroll=unroll)


def fgsm(logits_fn: LogitsFn, x: Array, y: Array, key: Array, hp: Hparams, *,
         steps: int = 1, random_start: bool = True, unroll: bool | int = 1) -> Array:
  """FGSM with random start ("fast AT"): one step of `step_size` from a uniform start,
  projected back to the eps-ball. `steps` is ignored (always 1). Wong et al. (2020) step
  1.25·eps, the default of an unset `perturb.step_size` (config.resolved_step_size)."""
  del steps
  return pgd(logits_fn, x, y, key, hp, steps=1, random_start=random_start, unroll=unroll)


def ifgsm(logits_fn: LogitsFn, x: Array, y: Array, key: Array, hp: Hparams, *,
          steps: int, random_start: bool = False, unroll: bool | int = 1) -> Array:
  """Iterative FGSM (BIM): PGD without random start, so it is deterministic — the A-ABL
  stage-2 probe. `random_start` and `key` are ignored."""
  del random_start, key
  return signed_gradient_steps(logits_fn, x, x, y, hp, steps=steps, unroll=unroll)


def fgsm_targeted(logits_fn: LogitsFn, x: Array, y: Array, key: Array, hp: Hparams, *,
                  steps: int = 1, random_start: bool = False, unroll: bool | int = 1) -> Array:
  """Targeted FGSM towards the least-likely class ("step l.l.", Kurakin et al. 2017):

      x_adv = Clip_[0,1](x - step_size · sign(grad_x CE(f(x), argmin_k f(x)_k))),

  projected to the eps-ball. Used by Weng et al. for FGSM-AT because it avoids label
  leaking. `y`, `key`, `steps` and `random_start` are ignored (always one step from x).
  """
  del y, key, steps, random_start
  least_likely = jnp.argmin(jax.lax.stop_gradient(logits_fn(x)), axis=-1)
  return signed_gradient_steps(logits_fn, x, x, least_likely, hp, steps=1, unroll=unroll,
                               descend=True)
