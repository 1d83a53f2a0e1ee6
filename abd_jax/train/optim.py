"""Optimizers: SGD with momentum + coupled weight decay and a piecewise-constant learning
rate (the CIFAR AT recipe), or Adam (A-ABL stage 1); optionally behind DP-SGD's
per-example clipping and noise (Abadi et al. 2016)."""

from __future__ import annotations

import dataclasses

import jax
import ml_collections
import optax
from optax import contrib

from abd_jax.train.critic import CRITIC


@dataclasses.dataclass(frozen=True)
class DPSettings:
  """DP-SGD: clip each example's gradient to L2 norm `clip`, add N(0, (noise·clip)²) to
  their sum, divide by the batch size."""
  clip: float
  noise: float
  seed: int


def dp_settings(config: ml_collections.ConfigDict) -> DPSettings | None:
  """The DP-SGD settings of a run (`defense.name = 'dpsgd'`), else None."""
  if config.get('defense') is None or config.defense.get('name') != 'dpsgd':
    return None
  return DPSettings(float(config.defense.dp_clip), float(config.defense.dp_noise),
                    int(config.seed))


def learning_rate_schedule(cfg: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
  """lr multiplied by `lr_decay` at each epoch in `milestones` (e.g. 0.1 at 60 and 90)."""
  boundaries = {int(m) * steps_per_epoch: cfg.lr_decay for m in cfg.milestones}
  return optax.piecewise_constant_schedule(cfg.lr, boundaries)


def _plain_key_state(tx: optax.GradientTransformation) -> optax.GradientTransformation:
  """`tx` with its state's typed PRNG key stored as raw key data (uint32), which the
  checkpoints hold like any other array."""

  def init(params):
    state = tx.init(params)
    return state._replace(rng_key=jax.random.key_data(state.rng_key))

  def update(updates, state, params=None):
    updates, state = tx.update(updates, state._replace(
        rng_key=jax.random.wrap_key_data(state.rng_key)), params)
    return updates, state._replace(rng_key=jax.random.key_data(state.rng_key))

  return optax.GradientTransformation(init, update)


def make_optimizer(cfg: ml_collections.ConfigDict, steps_per_epoch: int,
                   dp: DPSettings | None = None) -> optax.GradientTransformation:
  """`cfg` is the `train` config block. With `dp`, the updates the optimizer takes are
  per-example gradients (leading batch axis), aggregated by optax's DP-SGD transform."""
  lr = learning_rate_schedule(cfg, steps_per_epoch)
  if cfg.optimizer == 'sgd':
    # Decay added to the gradient before momentum, as torch.optim.SGD does.
    tx = optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                     optax.sgd(lr, momentum=cfg.momentum or None))
  elif cfg.optimizer == 'adam':
    tx = optax.chain(optax.add_decayed_weights(cfg.weight_decay), optax.adam(lr))
  else:
    raise ValueError(f'train.optimizer = {cfg.optimizer!r} is not allowed: must be sgd or adam')
  if dp is None:
    return tx
  aggregate = contrib.differentially_private_aggregate(
      dp.clip, dp.noise, jax.random.fold_in(jax.random.key(dp.seed), 0xD5))
  return optax.chain(_plain_key_state(aggregate), tx)


def with_critic(tx: optax.GradientTransformation, critic_lr: float,
                steps_per_epoch: int) -> optax.GradientTransformation:
  """`tx` for the model's parameters and Adam for params['critic'] (CBD's critic): lr
  `critic_lr`, ÷ 10 every 20 epochs from epoch 19 on (the original's StepLR(20, 0.1),
  stepped at the start of each epoch)."""
  boundaries = {(19 + 20 * i) * steps_per_epoch: 0.1 for i in range(50)}
  critic_tx = optax.adam(optax.piecewise_constant_schedule(critic_lr, boundaries))
  labels = lambda params: {k: jax.tree.map(lambda _: CRITIC if k == CRITIC else 'model', v)
                           for k, v in params.items()}
  return optax.multi_transform({'model': tx, CRITIC: critic_tx}, labels)
