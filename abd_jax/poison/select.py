"""Which training samples are poisoned, and how their labels change.

dirty-label: samples are drawn from the non-target classes and relabelled to the target
             (all-to-all: from every class, relabelled y -> (y + 1) mod K).
clean-label: samples are drawn from the target class only; labels are unchanged.

The count is `poison_rate` · N for a fraction of the whole training set, or, for clean-label
runs that give `target_class_rate`, that fraction of the target class (the ICLR'22 basic
setting: 5% of class 2 = 250 of 5,000). Counts round down.
"""

from __future__ import annotations

import numpy as np

from abd_jax.errors import ConfigError


def poison_pool(labels: np.ndarray, target: int, label_mode: str, all_to_all: bool) -> np.ndarray:
  """Sorted indices of the samples poisons may be drawn from: the target class (clean-label),
  every sample (all-to-all) or the samples outside the target class (dirty-label)."""
  if label_mode == 'clean':
    return np.flatnonzero(labels == target)
  if all_to_all:
    return np.arange(len(labels))
  return np.flatnonzero(labels != target)


def poison_count(labels: np.ndarray, target: int, label_mode: str, poison_rate: float,
                 target_class_rate: float, all_to_all: bool = False) -> int:
  """Number of samples to poison; raises ConfigError when the pool (`poison_pool`) is too
  small."""
  n_target = int(np.sum(labels == target))
  if target_class_rate > 0:
    if label_mode != 'clean':
      raise ConfigError('attack.target_class_rate', target_class_rate,
                        "is a fraction of the target class: use it with attack.label_mode='clean' "
                        '(dirty-label runs give attack.poison_rate)')
    return int(np.floor(target_class_rate * n_target))
  count = int(np.floor(poison_rate * len(labels)))
  pool = len(poison_pool(labels, target, label_mode, all_to_all))
  if count > pool:
    field = 'attack.poison_rate'
    if label_mode == 'clean':
      what = f'the {pool} images of target class {target}'
    elif all_to_all:
      what = f'the {pool} images it may draw from (all-to-all: every image)'
    else:
      what = f'the {pool} images outside target class {target}'
    raise ConfigError(field, poison_rate,
                      f'asks for {count} of {len(labels)} training images, more than {what}')
  return count


def choose_indices(rng: np.random.Generator, labels: np.ndarray, target: int, label_mode: str,
                   count: int, all_to_all: bool) -> np.ndarray:
  """Sorted int64 indices of the poisoned samples, drawn without replacement from
  `poison_pool`."""
  pool = poison_pool(labels, target, label_mode, all_to_all)
  return np.sort(rng.choice(pool, size=count, replace=False))


def poisoned_labels(labels: np.ndarray, target: int, label_mode: str, all_to_all: bool,
                    num_classes: int) -> np.ndarray:
  """The label a poisoned sample with true label `labels` is trained (and tested) with."""
  if label_mode == 'clean':
    return labels.astype(np.int32)
  if all_to_all:
    return ((labels + 1) % num_classes).astype(np.int32)
  return np.full_like(labels, target, dtype=np.int32)
