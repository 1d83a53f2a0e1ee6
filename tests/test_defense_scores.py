"""Per-sample defense scores: Otsu's threshold, symmetric cross-entropy, spectral
signatures and activation clustering, against brute force, hand-computed values and
synthetic features with a planted poisoned sub-cluster."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from abd_jax.defenses.clustering import activation_clusters
from abd_jax.defenses.otsu import otsu_split, otsu_threshold
from abd_jax.train.sce import symmetric_cross_entropy
from abd_jax.defenses.spectral import remove_top_per_class, spectral_scores


def brute_force_otsu(values):
  """Tries every midpoint between consecutive distinct values; first maximizer wins."""
  x = np.sort(np.asarray(values, np.float64))
  best, best_t = -np.inf, None
  for lo, hi in zip(x[:-1], x[1:]):
    if lo == hi:
      continue
    t = (lo + hi) / 2.0
    low, high = x[x <= t], x[x > t]
    w0, w1 = len(low) / len(x), len(high) / len(x)
    between = w0 * w1 * (low.mean() - high.mean()) ** 2
    if between > best:
      best, best_t = between, t
  return best_t


def shifted_class(rng, n_clean, n_poison, dim, shift):
  """float [n_clean + n_poison, dim]: N(0, I) points, the last n_poison moved by `shift`
  along one random unit direction."""
  direction = rng.normal(size=dim)
  direction /= np.linalg.norm(direction)
  x = rng.normal(size=(n_clean + n_poison, dim))
  x[n_clean:] += shift * direction
  return x


# -- Otsu ---------------------------------------------------------------------------------


@pytest.mark.parametrize('seed', range(5))
def test_otsu_matches_brute_force_on_bimodal_samples(seed):
  rng = np.random.default_rng(seed)
  n_low = 40 + 30 * seed
  values = np.concatenate([rng.normal(0.0, 1.0, n_low), rng.normal(3.0 + seed, 0.5 + seed / 4, 25)])
  # Repeated values must not produce a split between equal values.
  values = np.concatenate([values, values[:5]])
  rng.shuffle(values)
  t = otsu_threshold(values)
  assert t == brute_force_otsu(values)
  threshold, high = otsu_split(values)
  assert threshold == t
  np.testing.assert_array_equal(high, values > t)


def test_otsu_separates_well_separated_clusters():
  rng = np.random.default_rng(0)
  low, high = rng.normal(0.0, 0.3, 90), rng.normal(10.0, 0.3, 10)
  values = np.concatenate([high, low])
  t, mask = otsu_split(values)
  assert low.max() < t < high.min()
  np.testing.assert_array_equal(mask, np.r_[np.ones(10, bool), np.zeros(90, bool)])


def test_otsu_two_values_splits_at_midpoint():
  assert otsu_threshold(np.array([3.0, 1.0])) == 2.0


@pytest.mark.parametrize('values', [np.full(7, 2.5), np.array([1.0]), np.array([]),
                                    np.array([0.0, np.nan, 1.0]), np.array([0.0, np.inf])])
def test_otsu_rejects_degenerate_input(values):
  with pytest.raises(ValueError, match='otsu'):
    otsu_threshold(values)


# -- symmetric cross-entropy --------------------------------------------------------------


def test_sce_matches_hand_computation():
  logits = jnp.array([[2.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
  labels = jnp.array([0, 1])
  z = math.exp(2.0) + 2.0
  p = [math.exp(2.0) / z, 1.0 / z]
  ce = [-math.log(p[0]), -math.log(p[1])]
  # RCE = -sum_k p_k log q_k; log q is 0 at the label and log(1e-4) elsewhere.
  rce = [-(1.0 - p[0]) * math.log(1e-4), -(1.0 - p[1]) * math.log(1e-4)]
  expected = [0.1 * c + 1.0 * r for c, r in zip(ce, rce)]
  got = symmetric_cross_entropy(logits, labels, alpha=0.1, beta=1.0, label_clamp=1e-4)
  assert got.shape == (2,)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6)


def test_rce_part_is_scaled_one_minus_p_label():
  logits = jax.random.normal(jax.random.key(0), (16, 10))
  labels = jnp.arange(16) % 10
  p_y = jnp.take_along_axis(jax.nn.softmax(logits), labels[:, None], axis=1)[:, 0]
  rce = symmetric_cross_entropy(logits, labels, alpha=0.0, beta=1.0, label_clamp=1e-4)
  np.testing.assert_allclose(np.asarray(rce), np.asarray(-math.log(1e-4) * (1.0 - p_y)), rtol=1e-5)
  ce = symmetric_cross_entropy(logits, labels, alpha=1.0, beta=0.0)
  np.testing.assert_allclose(np.asarray(ce), np.asarray(-jnp.log(p_y)), rtol=1e-5)


def test_sce_is_finite_and_clamped_for_saturated_logits():
  logits = jnp.array([[1000.0, 0.0, 0.0]])
  got = float(symmetric_cross_entropy(logits, jnp.array([1]))[0])
  # CE = 1000 exactly via log_softmax; p = (1, 1e-7, 1e-7) after clamping.
  expected = 0.1 * 1000.0 - math.log(1e-4) * (1.0 + 1e-7)
  assert math.isfinite(got)
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_sce_jits_with_traced_weights():
  logits = jax.random.normal(jax.random.key(1), (8, 5))
  labels = jnp.arange(8) % 5
  traces = []

  @jax.jit
  def fn(*args):
    traces.append(None)
    return symmetric_cross_entropy(*args)

  for alpha, beta, clamp in [(0.1, 1.0, 1e-4), (0.5, 2.0, math.exp(-4.0))]:
    got = fn(logits, labels, jnp.float32(alpha), jnp.float32(beta), jnp.float32(clamp))
    want = symmetric_cross_entropy(logits, labels, alpha, beta, clamp)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)
  assert len(traces) == 1  # traced, not baked in: one compilation serves both settings


# -- spectral signatures ------------------------------------------------------------------


def spectral_data(seed=0):
  rng = np.random.default_rng(seed)
  x0 = shifted_class(rng, 100, 15, 16, shift=8.0)
  x1 = rng.normal(size=(60, 16))
  features = np.concatenate([x0, x1])
  labels = np.r_[np.zeros(115, int), np.ones(60, int)]
  poisoned = np.r_[np.zeros(100, bool), np.ones(15, bool), np.zeros(60, bool)]
  return features, labels, poisoned


def test_spectral_scores_rank_planted_poison_first():
  features, labels, poisoned = spectral_data()
  scores = spectral_scores(features, labels)
  assert scores.shape == (175,) and scores.dtype == np.float64 and np.all(scores >= 0)
  removed = remove_top_per_class(scores, labels, 1.5 * 15 / 115)
  assert np.all(removed[poisoned])
  # floor(1.5 · 15/115 · n_c): 22 of 115 and 11 of 60.
  assert removed[labels == 0].sum() == 22 and removed[labels == 1].sum() == 11
  assert roc_auc_score(poisoned[labels == 0], scores[labels == 0]) == 1.0


def test_spectral_scores_are_class_local():
  features, labels, _ = spectral_data()
  scores = spectral_scores(features, labels)
  # Moving a whole class does not change any score: each class is centered on its own mean.
  moved = features.copy()
  moved[labels == 1] += 100.0
  np.testing.assert_allclose(spectral_scores(moved, labels), scores, rtol=1e-8, atol=1e-10)


def test_spectral_single_sample_class_scores_zero():
  rng = np.random.default_rng(0)
  features = rng.normal(size=(6, 4))
  labels = np.array([0, 0, 0, 0, 0, 7])
  scores = spectral_scores(features, labels)
  assert scores[5] == 0.0 and np.all(scores[:5] > 0)


@pytest.mark.parametrize('fraction, counts', [(0.0, (0, 0, 0)), (0.25, (2, 0, 5)),
                                               (0.29, (2, 0, 5)), (0.5, (5, 1, 10)),
                                               (1.0, (10, 3, 20))])
def test_remove_top_per_class_counts_and_order(fraction, counts):
  labels = np.r_[np.zeros(10, int), np.full(3, 4), np.full(20, 9)]
  scores = np.random.default_rng(1).permutation(33).astype(float)
  removed = remove_top_per_class(scores, labels, fraction)
  for c, count in zip((0, 4, 9), counts):
    assert removed[labels == c].sum() == count == math.floor(fraction * (labels == c).sum())
    # The removed samples of a class are its highest-scoring ones.
    if 0 < count < (labels == c).sum():
      assert scores[(labels == c) & removed].min() > scores[(labels == c) & ~removed].max()


def test_remove_top_per_class_removes_lower_index_first_on_ties():
  removed = remove_top_per_class(np.ones(6), np.zeros(6, int), 0.5)
  np.testing.assert_array_equal(removed, [True, True, True, False, False, False])


def test_remove_top_per_class_does_not_floor_one_short():
  # 0.29 * 100 = 28.999999999999996 in floating point.
  removed = remove_top_per_class(np.arange(100.0), np.zeros(100, int), 0.29)
  assert removed.sum() == 29


@pytest.mark.parametrize('fraction', [-0.1, 1.5])
def test_remove_top_per_class_rejects_bad_fraction(fraction):
  with pytest.raises(ValueError, match='fraction'):
    remove_top_per_class(np.zeros(3), np.zeros(3, int), fraction)


# -- activation clustering ----------------------------------------------------------------


def clustering_data(seed=0):
  """Class 0: 200 clean + 50 (20%) shifted points; class 1: one Gaussian blob of 250."""
  rng = np.random.default_rng(seed)
  x0 = shifted_class(rng, 200, 50, 32, shift=12.0)
  x1 = rng.normal(size=(250, 32))
  features = np.concatenate([x0, x1])
  labels = np.r_[np.zeros(250, int), np.ones(250, int)]
  poisoned = np.r_[np.zeros(200, bool), np.ones(50, bool), np.zeros(250, bool)]
  return features, labels, poisoned


# ICA whitens every kept component to unit variance, which caps the separation of a 20%
# sub-cluster along its one direction at 1/sqrt(0.2 · 0.8) = 2.5; against 9 unit-variance
# Gaussian components 2-means then often stops in a 50/50 local optimum. With 3 the planted
# split is the one it finds. PCA keeps the shifted direction's large variance.
@pytest.mark.parametrize('reduction, dims', [('ica', 3), ('pca', 10)])
def test_activation_clustering_removes_the_planted_sub_cluster(reduction, dims):
  features, labels, poisoned = clustering_data()
  removed, scores = activation_clusters(features, labels, dims=dims, reduction=reduction)
  assert removed.dtype == bool and scores.shape == (500,)
  # Class 0 loses exactly the sub-cluster; the blob class's 2-means halves are ~50% each,
  # above the 0.35 relative-size rule, so it is judged clean.
  np.testing.assert_array_equal(removed, poisoned)
  assert roc_auc_score(poisoned[labels == 0], scores[labels == 0]) > 0.99
  assert np.all(scores >= -1.0 - 1e-9) and np.all(scores <= 1.0 + 1e-9)
  assert np.all(scores[poisoned] > 0)


def test_activation_clustering_keeps_a_single_blob():
  rng = np.random.default_rng(3)
  features = rng.normal(size=(200, 32))
  labels = np.zeros(200, int)
  for reduction in ('ica', 'pca'):
    removed, scores = activation_clusters(features, labels, reduction=reduction)
    assert not removed.any()
    assert np.any(scores != 0)  # scores are still reported for a clean class
    # A threshold above the smaller half's relative size flags it.
    removed, _ = activation_clusters(features, labels, reduction=reduction, size_threshold=0.5)
    assert 0.2 * 200 < removed.sum() <= 100


def test_activation_clustering_is_deterministic_for_a_seed():
  features, labels, _ = clustering_data(seed=1)
  a = activation_clusters(features, labels, dims=3, seed=5)
  b = activation_clusters(features, labels, dims=3, seed=5)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])


def test_activation_clustering_leaves_small_classes_alone():
  rng = np.random.default_rng(0)
  features = np.concatenate([rng.normal(size=(3, 8)), rng.normal(size=(5, 8))])
  labels = np.r_[np.zeros(3, int), np.ones(5, int)]
  removed, scores = activation_clusters(features, labels, reduction='pca')
  assert not removed[:3].any() and np.all(scores[:3] == 0)
  assert np.any(scores[3:] != 0)


@pytest.mark.parametrize('kwargs, name', [({'reduction': 'foo'}, 'reduction'),
                                          ({'size_threshold': 1.2}, 'size_threshold'),
                                          ({'dims': 0}, 'dims')])
def test_activation_clustering_rejects_bad_arguments(kwargs, name):
  with pytest.raises(ValueError, match=name):
    activation_clusters(np.zeros((8, 4)), np.zeros(8, int), **kwargs)
