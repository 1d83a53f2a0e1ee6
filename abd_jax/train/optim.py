"""Optimizers: SGD with momentum + coupled weight decay and a piecewise-constant learning
rate (the CIFAR AT recipe), or Adam (A-ABL stage 1)."""

from __future__ import annotations

import ml_collections
import optax


def learning_rate_schedule(cfg: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
  """lr multiplied by `lr_decay` at each epoch in `milestones` (e.g. 0.1 at 60 and 90)."""
  boundaries = {int(m) * steps_per_epoch: cfg.lr_decay for m in cfg.milestones}
  return optax.piecewise_constant_schedule(cfg.lr, boundaries)


def make_optimizer(cfg: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.GradientTransformation:
  """`cfg` is the `train` config block."""
  lr = learning_rate_schedule(cfg, steps_per_epoch)
  if cfg.optimizer == 'sgd':
    # Decay added to the gradient before momentum, as torch.optim.SGD does.
    return optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                       optax.sgd(lr, momentum=cfg.momentum or None))
  if cfg.optimizer == 'adam':
    return optax.chain(optax.add_decayed_weights(cfg.weight_decay), optax.adam(lr))
  raise ValueError(f'train.optimizer = {cfg.optimizer!r} is not allowed: must be sgd or adam')
