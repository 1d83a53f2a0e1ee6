"""How many images a defense's phases train on, checked before anything trains.

Each count below depends only on the sizes (training images n, poisoned images, devices),
never on a score, so a reserve, a split or a phase batch that leaves a phase too few
images is one line naming the defense field that decides it, before the workdir is
touched (`experiment.check_data`). The splits that depend on scores (A-ABL's Otsu split,
activation clustering) are checked once made (`runner`); pipeline's and spectral's
removal before their detector trains (`runner.check_removal_keeps_a_batch`).
"""

from __future__ import annotations

import math

import ml_collections

from abd_jax.defenses import abl, dst
from abd_jax.defenses.phases import check_batch
from abd_jax.errors import ConfigError


def check_sizes(config: ml_collections.ConfigDict, num_train: int, num_poisoned: int,
                num_devices: int) -> None:
  """Raises ConfigError when a phase of `config.defense.name` would get fewer images than
  it needs: fewer than one batch (train.batch_size), or than the devices its batch is
  split over, or a batch larger than the training set."""
  check = _CHECKS.get(config.defense.name)
  if check is not None:
    check(config, num_train, num_poisoned, num_devices)


def _least(n: int, count: int) -> str:
  """The smallest ratio r (4 decimals) with floor(r·n) >= count."""
  return f'{math.ceil(count / n * 1e4) / 1e4:g}'


def _most(n: int, count: int) -> str:
  """The largest ratio r (4 decimals) with floor(r·n) <= count."""
  return f'{math.floor(count / n * 1e4) / 1e4:g}'


def _batch(config) -> str:
  return f'one batch (train.batch_size = {config.train.batch_size})'


def _clean_data(config, n: int, num_poisoned: int, devices: int) -> None:
  """fp / nad: the reserve (`finetuning.clean_reserve`), the backdoored model's training
  set (the rest) and the fine-tuning batch (at least one image per device)."""
  d, field = config.defense, 'defense.clean_fraction'
  count = max(1, math.floor(d.clean_fraction * n + 1e-9))
  what = f'reserves floor(clean_fraction · n) = {count} of the n = {n} training images'
  if count < devices:
    raise ConfigError(field, d.clean_fraction,
                      f'{what} for fine-tuning, fewer than the {devices} devices its batch is '
                      f'split over: it must be at least {_least(n, devices)}')
  if count > n - num_poisoned:
    raise ConfigError(field, d.clean_fraction,
                      f'{what} as clean data, but the attack poisons {num_poisoned} of them: '
                      f'it must be at most {_most(n, n - num_poisoned)}')
  if not d.backdoored_workdir and n - count < config.train.batch_size:
    raise ConfigError(field, d.clean_fraction,
                      f'{what}, leaving {n - count} to train the backdoored model on, fewer '
                      f'than {_batch(config)}: it must be at most '
                      f'{_most(n, n - config.train.batch_size)}')


def _anti_backdoor(config, n: int, num_poisoned: int, devices: int) -> None:
  """abl: the isolated samples (unlearned on, one image per device at least) and the
  others (fine-tuned on with the run's batch)."""
  del num_poisoned
  d, field = config.defense, 'defense.abl_isolation_ratio'
  count = abl.isolation_count(d.abl_isolation_ratio, n)
  what = f'isolates floor(abl_isolation_ratio · n) = {count} of the n = {n} training images'
  if count < devices:
    raise ConfigError(field, d.abl_isolation_ratio,
                      f'{what} to unlearn, fewer than the {devices} devices its batch is '
                      f'split over: it must be at least {_least(n, devices)}')
  if d.abl_finetune_epochs > 0 and n - count < config.train.batch_size:
    raise ConfigError(field, d.abl_isolation_ratio,
                      f'{what}, leaving {n - count} to fine-tune on, fewer than '
                      f'{_batch(config)}: it must be at most '
                      f'{_most(n, n - config.train.batch_size)} (or abl_finetune_epochs 0)')


def _decoupling(config, n: int, num_poisoned: int, devices: int) -> None:
  """dbd: the SimCLR batch (its multiple of the devices: `config.validate_for_devices`)."""
  del num_poisoned, devices
  check_batch(config, 'dbd_simclr_batch', n)


def _secure_training(config, n: int, num_poisoned: int, devices: int) -> None:
  """dst: the contrastive batch, and the subsets the final phase trains on."""
  del num_poisoned, devices
  d, batch = config.defense, config.train.batch_size
  if d.dst_train == 'secure':
    check_batch(config, 'dst_contrastive_batch', n)
  count = dst.trained_count(n, d.dst_clean_ratio, d.dst_poison_ratio, d.dst_train)
  if count >= batch:
    return
  how = f"with defense.dst_train = '{d.dst_train}' the final phase trains on"
  few = f'{count} of the n = {n} training images, fewer than {_batch(config)}'
  if d.dst_train == 'at_clean_suspicious':
    raise ConfigError('defense.dst_poison_ratio', d.dst_poison_ratio,
                      f'{how} all but the floor(dst_poison_ratio · n) most sensitive samples, '
                      f'{few}: it must be at most {_most(n, n - batch)}')
  if d.dst_train == 'at_clean':
    raise ConfigError('defense.dst_clean_ratio', d.dst_clean_ratio,
                      f'{how} the floor(dst_clean_ratio · n) least sensitive samples, {few}: '
                      f'it must be at least {_least(n, batch)}')
  _, n_poison = dst.split_sizes(n, 0.0, d.dst_poison_ratio)
  raise ConfigError('defense.dst_clean_ratio', d.dst_clean_ratio,
                    f'{how} the clean and poisoned subsets, floor(dst_clean_ratio · n) + '
                    f'floor(dst_poison_ratio · n) samples, {few}: with dst_poison_ratio = '
                    f'{d.dst_poison_ratio:g} it must be at least {_least(n, batch - n_poison)}')


_CHECKS = {'fp': _clean_data, 'nad': _clean_data, 'abl': _anti_backdoor, 'dbd': _decoupling,
           'dst': _secure_training}
