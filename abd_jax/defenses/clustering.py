"""Activation clustering (Chen et al. 2018, "Detecting Backdoor Attacks on Deep Neural
Networks by Activation Clustering").

For each class c separately: reduce the class's features to d = min(dims, n_c - 1, F)
dimensions with FastICA (the paper's choice) or PCA, split them with 2-means, and call
the smaller cluster poisonous when its relative size |small| / n_c <= size_threshold
(the paper's relative-size rule; 0.35 is ART's default). Otherwise the class is judged
clean and nothing is removed. Classes with fewer than 4 samples are left alone.

The continuous score, for AUROC, is every sample's signed position between the two
centroids in the reduced space,

    score_i = (||z_i - c_large|| - ||z_i - c_small||) / ||c_large - c_small||,

positive when the sample is closer to the smaller cluster; it lies in [-1, 1].
"""

from __future__ import annotations

import warnings

import numpy as np

REDUCTIONS = ('ica', 'pca')
MIN_CLASS_SIZE = 4


def _reduce(x: np.ndarray, dims: int, reduction: str, seed: int) -> np.ndarray | None:
  """float64 [n, d] reduced features of one class, or None if the class has no spread."""
  # Whitening divides by the singular values, so d never exceeds the class's rank.
  s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
  rank = int(np.sum(s > s[0] * max(x.shape) * np.finfo(np.float64).eps)) if s[0] > 0 else 0
  d = min(dims, len(x) - 1, x.shape[1], rank)
  if d < 1:
    return None
  from sklearn.decomposition import PCA, FastICA  # here: importing sklearn takes ~1 s
  if reduction == 'ica':
    model = FastICA(n_components=d, whiten='unit-variance', random_state=seed, max_iter=1000)
  else:
    model = PCA(n_components=d, random_state=seed)
  return model.fit_transform(x)


def activation_clusters(features: np.ndarray, labels: np.ndarray, dims: int = 10,
                        reduction: str = 'ica', size_threshold: float = 0.35,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """(removed, scores) for features float [N,F] and labels int [N].

  removed: bool [N], the smaller 2-means cluster of each class judged poisoned.
  scores: float64 [N] in [-1, 1], positive = closer to the smaller cluster (0 for classes
  with fewer than 4 samples or with identical features). Deterministic for a fixed seed.
  """
  if reduction not in REDUCTIONS:
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
  if not 0.0 <= size_threshold <= 1.0:
    raise ValueError(f'size_threshold must be in [0, 1], got {size_threshold!r}')
  if dims < 1:
    raise ValueError(f'dims must be >= 1, got {dims!r}')
  features = np.asarray(features, np.float64)
  if features.ndim != 2:
    raise ValueError(f'features must have shape [N, F], got {features.shape}')
  labels = np.asarray(labels)
  if labels.shape != (len(features),):
    raise ValueError(f'labels must have shape ({len(features)},), got {labels.shape}')

  from sklearn.cluster import KMeans  # here: importing sklearn takes ~1 s
  from sklearn.exceptions import ConvergenceWarning

  removed = np.zeros(len(features), bool)
  scores = np.zeros(len(features), np.float64)
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    if len(idx) < MIN_CLASS_SIZE:
      continue
    with warnings.catch_warnings():
      # ICA of near-Gaussian (clean) classes often stops at max_iter; the split still stands.
      warnings.simplefilter('ignore', ConvergenceWarning)
      z = _reduce(features[idx], dims, reduction, seed)
      if z is None:
        continue
      km = KMeans(n_clusters=2, n_init=10, random_state=seed).fit(z)
    sizes = np.bincount(km.labels_, minlength=2)
    small = int(np.argmin(sizes))
    c_small, c_large = km.cluster_centers_[small], km.cluster_centers_[1 - small]
    gap = np.linalg.norm(c_large - c_small)
    if gap > 0:
      d_small = np.linalg.norm(z - c_small, axis=1)
      d_large = np.linalg.norm(z - c_large, axis=1)
      scores[idx] = (d_large - d_small) / gap
    if sizes[small] / len(idx) <= size_threshold:
      removed[idx[km.labels_ == small]] = True
  return removed, scores
