"""Fine-pruning's pruning step (Liu, Dolan-Gavitt & Garg, RAID 2018).

The last convolutional stage's channels are ranked by their mean activation on clean
data and pruned in increasing order: channels that clean inputs leave dormant are the
ones a backdoor can occupy. Every model here ends in global average pooling + Dense, so
the mean activation of channel c over H×W and the clean images is the mean of pooled
feature c, and pruning channel c is zeroing row c of the classifier's kernel
(`objective.prune_head`): the output equals that of the network with the channel's
activation masked.
"""

from __future__ import annotations

import math

import numpy as np

from abd_jax.defenses.scoring import penultimate_features


def channel_activations(model, variables: dict, images: np.ndarray, labels: np.ndarray,
                        batch_size: int, mesh) -> np.ndarray:
  """float64 [C]: each last-stage channel's mean activation over `images` (uint8
  [N,H,W,C]), BatchNorm in inference mode."""
  features = penultimate_features(model, variables, images, labels, batch_size, mesh)
  return features.astype(np.float64).mean(axis=0)


def prune_order(activations: np.ndarray) -> np.ndarray:
  """int [C]: channel indices by increasing mean activation (ties: lower index first)."""
  return np.argsort(np.asarray(activations, np.float64), kind='stable')


def pruned_count(ratio: float, channels: int) -> int:
  """floor(ratio·C) channels, never all of them (a model needs one channel to classify)."""
  return min(channels - 1, max(0, math.floor(ratio * channels + 1e-9)))


def keep_mask(order: np.ndarray, ratio: float) -> np.ndarray:
  """float32 [C]: 0 for the first `pruned_count(ratio, C)` channels of `order`, else 1."""
  keep = np.ones(len(order), np.float32)
  keep[order[:pruned_count(ratio, len(order))]] = 0.0
  return keep


def closest_ratio(results: dict[float, float], target: float) -> float:
  """The ratio whose clean accuracy is closest to `target` (Gao et al.'s choice); ties go
  to the smaller ratio."""
  return min(sorted(results), key=lambda r: abs(results[r] - target))
