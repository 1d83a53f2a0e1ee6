"""Shared pieces of the inner maximizations.

A perturbation is a pure function

    perturb(logits_fn, x, y, key, hp) -> x_adv

with `logits_fn: [B,H,W,C] float32 -> [B,K] float32` (the model with its variables
closed over, BatchNorm in the mode the config chose), `x` images in [0, 1], `y` int
labels [B], and `hp` a dict of traced float32 scalars (`eps`, `step_size`, ...), so a
new budget never recompiles and a grid of budgets can be `vmap`ped. Loop counts are
static and bound when the perturbation is built.
"""

from __future__ import annotations

from typing import Callable, Mapping, Protocol

import jax
import jax.numpy as jnp
import optax

Array = jax.Array
LogitsFn = Callable[[Array], Array]
Hparams = Mapping[str, Array]


class Perturbation(Protocol):

  def __call__(self, logits_fn: LogitsFn, x: Array, y: Array, key: Array,
               hp: Hparams) -> Array:
    ...


def ce_sum(logits: Array, labels: Array) -> Array:
  """Summed (not mean) cross-entropy, so each sample's input gradient is independent of B."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).sum()


def input_grad(logits_fn: LogitsFn, x: Array, labels: Array) -> Array:
  """d CE(f(x), labels) / dx, per sample. [B,H,W,C] -> [B,H,W,C]."""
  return jax.grad(lambda xx: ce_sum(logits_fn(xx), labels))(x)


def clip01(x: Array) -> Array:
  return jnp.clip(x, 0.0, 1.0)


def resolve_unroll(unroll: str) -> bool | int:
  """'auto' fully unrolls on XLA:CPU, where a rolled attack loop measured several times
  slower, and keeps the loop rolled elsewhere (small programs, fast compiles)."""
  if unroll == 'auto':
    return jax.default_backend() == 'cpu'
  return {'full': True, 'none': 1}[unroll]


def iterate(steps: int, body: Callable[[Array], Array], init: Array, unroll: bool | int) -> Array:
  """`steps` applications of `body`, fused into the surrounding program."""
  return jax.lax.fori_loop(0, steps, lambda _, v: body(v), init, unroll=unroll)
