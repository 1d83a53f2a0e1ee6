"""Train state: parameters, BatchNorm statistics and optimizer state in one pytree."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state


class TrainState(train_state.TrainState):
  """`flax` TrainState plus the BatchNorm running statistics (empty dict if none)."""
  batch_stats: Any = None

  @property
  def variables(self) -> dict:
    return {'params': self.params, 'batch_stats': self.batch_stats}


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, key: jax.Array,
                       image_shape: tuple[int, int, int],
                       extra_params: dict | None = None) -> TrainState:
  """Initializes float32 parameters for inputs of `image_shape` (H, W, C). `extra_params`
  (top-level modules the model does not use, e.g. CBD's critic) join the params, so the
  optimizer and the checkpoints carry them."""
  variables = model.init(key, jnp.zeros((1, *image_shape), jnp.float32), train=False)
  return TrainState.create(apply_fn=model.apply, params={**variables['params'], **(extra_params or {})},
                           tx=tx, batch_stats=variables.get('batch_stats', {}))
