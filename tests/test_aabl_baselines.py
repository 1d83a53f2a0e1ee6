"""A-ABL's comparison defenses, unit by unit: the contrastive losses (SimCLR / SupCon) and
their pair masks, D-ST's mixed cross-entropy, class-centre loss and sensitivity split, CBD's
sample weights and mutual-information critic, MixMatch, DBD's labelled split and the
head-only step, A-ABL's split methods on a constructed case, and the new config fields.
Every value is checked against a numpy computation. No training runs."""

import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from abd_jax import config as config_lib
from abd_jax import parallel
from abd_jax.data.strong_augment import POLICIES
from abd_jax.defenses import aabl, abl, dbd, dst, phases
from abd_jax.errors import ConfigError
from abd_jax.models import create_model
from abd_jax.perturb import make_perturbation
from abd_jax.train import contrastive, critic, mixmatch, objective
from abd_jax.train.loop import _start_from
from abd_jax.train.objective import CLEAN, POISONED, SUSPICIOUS, Objective
from abd_jax.train.state import TrainState
from abd_jax.train.step import make_train_step, zero_metrics
from cli import REPO


@functools.lru_cache(maxsize=None)
def tiny_model():
  """(model, variables) of the digits CNN (width 0.25) on 8x8x1 inputs, key 0. A jitted,
  unoptimized init: run eagerly, each initializer compiles alone (~20 s on 2 cores)."""
  model = create_model('cnn', 10, width=0.25)
  init = fast_jit(lambda key: model.init(key, jnp.zeros((1, 8, 8, 1)), train=False))
  return model, init(jax.random.key(0))


def fast_jit(fn, **kwargs):
  """jax.jit without XLA's backend optimizations: compiles in a fraction of the time."""
  return jax.jit(fn, compiler_options={'xla_backend_optimization_level': 0}, **kwargs)


def random_images(n, seed=0):
  """(uint8 images [n,8,8,1], int32 labels [n])."""
  rng = np.random.default_rng(seed)
  return (rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8),
          rng.integers(0, 10, n).astype(np.int32))


def unit_rows(shape, seed):
  z = np.random.default_rng(seed).normal(size=shape)
  return (z / np.linalg.norm(z, axis=-1, keepdims=True)).astype(np.float32)


def numpy_softmax(logits):
  z = np.asarray(logits, np.float64)
  e = np.exp(z - z.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def numpy_sce(logits, labels, alpha, beta, clamp):
  """Symmetric cross-entropy per sample, float64."""
  p = numpy_softmax(logits)
  rows = np.arange(len(labels))
  ce = -np.log(p[rows, labels])
  others = np.clip(p, 1e-7, 1.0)
  others[rows, labels] = 0.0
  return alpha * ce - beta * np.log(clamp) * others.sum(axis=-1)


# ------------------------------------------------------------------------ contrastive


def numpy_contrastive(z, positives, anchors, temperature, scale=1.0):
  """ℓ averaged over the anchors: −scale·mean_p [s_ap − log Σ_{b≠a} exp(s_ab)], by loops."""
  z = np.asarray(z, np.float64)
  v = len(z)
  s = z @ z.T / temperature
  losses = []
  for a in range(v):
    if not anchors[a]:
      continue
    log_norm = np.log(sum(np.exp(s[a, b]) for b in range(v) if b != a))
    pos = [p for p in range(v) if positives[a][p]]
    assert pos and a not in pos
    losses.append(-scale * np.mean([s[a, p] - log_norm for p in pos]))
  return np.mean(losses)


# Views [s0, s1, s2, s0', s1', s2'] of labels (1, 2, 1), flags (CLEAN, POISONED, SUSPICIOUS).
PAIR_LABELS = np.array([1, 2, 1], np.int32)
PAIR_FLAGS = np.array([CLEAN, POISONED, SUSPICIOUS], np.int8)
SIMCLR_POSITIVES = [[0, 0, 0, 1, 0, 0],
                    [0, 0, 0, 0, 1, 0],
                    [0, 0, 0, 0, 0, 1],
                    [1, 0, 0, 0, 0, 0],
                    [0, 1, 0, 0, 0, 0],
                    [0, 0, 1, 0, 0, 0]]
SUPCON_POSITIVES = [[0, 0, 1, 1, 0, 1],   # clean, label 1: every other label-1 view
                    [0, 0, 0, 0, 1, 0],   # poisoned: its own other view only
                    [0, 0, 0, 0, 0, 1],   # suspicious: its own other view, not view 0
                    [1, 0, 1, 0, 0, 1],
                    [0, 1, 0, 0, 0, 0],
                    [0, 0, 1, 0, 0, 0]]


def test_simclr_and_supcon_pair_masks_on_a_hand_made_batch():
  """simclr_pairs: i <-> i ± B, anchors the first B views; supcon_pairs: a CLEAN anchor's
  positives are all same-label views (any flag) but itself, any other anchor's only its
  own other view; all 2B views anchor."""
  positives, anchors = contrastive.simclr_pairs(3)
  np.testing.assert_array_equal(np.asarray(positives), np.array(SIMCLR_POSITIVES, bool))
  np.testing.assert_array_equal(np.asarray(anchors), [True] * 3 + [False] * 3)
  positives, anchors = contrastive.supcon_pairs(jnp.asarray(PAIR_LABELS), jnp.asarray(PAIR_FLAGS))
  np.testing.assert_array_equal(np.asarray(positives), np.array(SUPCON_POSITIVES, bool))
  np.testing.assert_array_equal(np.asarray(anchors), [True] * 6)
  # Every sample CLEAN with one label: everyone is everyone's positive (but not its own).
  positives, _ = contrastive.supcon_pairs(jnp.zeros(2, jnp.int32), jnp.zeros(2, jnp.int8))
  np.testing.assert_array_equal(np.asarray(positives), ~np.eye(4, dtype=bool))


def test_simclr_loss_matches_the_infonce_formula():
  """Anchors the first views, the other view the positive, all 2B − 1 other views (the
  positive included) in the denominator."""
  z = unit_rows((6, 4), seed=0)
  positives, anchors = contrastive.simclr_pairs(3)
  got = float(contrastive.contrastive_loss(jnp.asarray(z), positives, anchors, 0.5))
  expected = numpy_contrastive(z, SIMCLR_POSITIVES, [1, 1, 1, 0, 0, 0], 0.5)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # Counting the second views as anchors too would change it (the check can fail).
  both = numpy_contrastive(z, SIMCLR_POSITIVES, [1] * 6, 0.5)
  assert abs(both - expected) > 1e-3


def test_supcon_loss_matches_the_formula_with_its_scale():
  """SupCon over all 2B anchors, averaged over each anchor's positives, times `scale`."""
  z = unit_rows((6, 4), seed=1)
  positives, anchors = contrastive.supcon_pairs(jnp.asarray(PAIR_LABELS), jnp.asarray(PAIR_FLAGS))
  scale = 0.1 / 0.07
  got = float(contrastive.contrastive_loss(jnp.asarray(z), positives, anchors, 0.1, scale))
  expected = numpy_contrastive(z, SUPCON_POSITIVES, [1] * 6, 0.1, scale)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  unscaled = float(contrastive.contrastive_loss(jnp.asarray(z), positives, anchors, 0.1))
  np.testing.assert_allclose(got, scale * unscaled, rtol=1e-6)
  # A different mask gives a different loss: the clean anchors' extra positives matter.
  as_simclr = numpy_contrastive(z, SIMCLR_POSITIVES, [1] * 6, 0.1, scale)
  assert abs(as_simclr - expected) > 1e-3


# ------------------------------------------------------------------------ objective pieces


def numpy_center_similarity(features, labels):
  f = np.asarray(features, np.float64)
  classes = sorted(set(int(c) for c in labels))
  centres = np.stack([f[labels == c].mean(axis=0) for c in classes])
  centres /= np.linalg.norm(centres, axis=1, keepdims=True)
  s = centres @ centres.T
  np.fill_diagonal(s, 0.0)
  return s.sum() / len(classes) ** 2


def test_class_center_similarity_matches_numpy():
  """Normalized centres of the classes present only, diagonal zeroed, divided by K'²."""
  rng = np.random.default_rng(2)
  features = rng.normal(size=(7, 5)).astype(np.float32) + 0.5
  labels = np.array([0, 3, 3, 0, 7, 3, 7], np.int32)
  got = float(objective.class_center_similarity(jnp.asarray(features), jnp.asarray(labels), 10))
  expected = numpy_center_similarity(features, labels)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # Dividing by K² (all classes) instead of K'² would be 9/100 of it.
  assert abs(expected) > 1e-2
  one_class = objective.class_center_similarity(jnp.asarray(features), jnp.zeros(7, jnp.int32), 10)
  assert float(one_class) == 0.0


def test_mixed_cross_entropy_matches_numpy_and_tolerates_empty_subsets():
  """Mean CE over CLEAN − weight · mean CE over POISONED (each within its subset); an
  empty subset contributes 0, never NaN."""
  ce_values = np.array([0.3, 2.0, 5.0, 0.7, 4.0, 1.1], np.float32)
  flags = np.array([CLEAN, POISONED, SUSPICIOUS, CLEAN, POISONED, SUSPICIOUS], np.int8)
  got = float(objective.mixed_cross_entropy(jnp.asarray(ce_values), jnp.asarray(flags), 0.25))
  np.testing.assert_allclose(got, (0.3 + 0.7) / 2 - 0.25 * (2.0 + 4.0) / 2, rtol=1e-6)
  no_poison = np.array([CLEAN, SUSPICIOUS, SUSPICIOUS, CLEAN, CLEAN, SUSPICIOUS], np.int8)
  got = float(objective.mixed_cross_entropy(jnp.asarray(ce_values), jnp.asarray(no_poison), 0.25))
  np.testing.assert_allclose(got, (0.3 + 0.7 + 4.0) / 3, rtol=1e-6)
  only_poison = np.full(6, POISONED, np.int8)
  got = float(objective.mixed_cross_entropy(jnp.asarray(ce_values), jnp.asarray(only_poison), 0.25))
  np.testing.assert_allclose(got, -0.25 * ce_values.astype(np.float64).mean(), rtol=1e-6)
  nothing = objective.mixed_cross_entropy(jnp.asarray(ce_values), jnp.full(6, SUSPICIOUS), 0.25)
  assert float(nothing) == 0.0
  np.testing.assert_allclose(float(objective.masked_mean(jnp.asarray(ce_values), jnp.zeros(6, bool))), 0.0)


def test_cbd_weights_are_rescaled_ratios_without_gradient():
  """w = b / (b + d + 1e-8), rescaled to mean 1; no gradient flows through either input."""
  rng = np.random.default_rng(3)
  b = rng.uniform(0.01, 3.0, 8).astype(np.float32)
  d = rng.uniform(0.01, 3.0, 8).astype(np.float32)
  w = objective.cbd_weights(jnp.asarray(b), jnp.asarray(d))
  raw = b.astype(np.float64) / (b + d.astype(np.float64) + 1e-8)
  np.testing.assert_allclose(np.asarray(w), raw * 8 / raw.sum(), rtol=1e-5)
  np.testing.assert_allclose(float(jnp.mean(w)), 1.0, rtol=1e-6)
  coeffs = jnp.asarray(rng.normal(size=8), jnp.float32)
  gb, gd = jax.grad(lambda x, y: jnp.sum(objective.cbd_weights(x, y) * coeffs),
                    argnums=(0, 1))(jnp.asarray(b), jnp.asarray(d))
  np.testing.assert_array_equal(np.asarray(gb), 0.0)
  np.testing.assert_array_equal(np.asarray(gd), 0.0)
  # The same ratio with gradient is not flat (the check above can fail).
  g = jax.grad(lambda x: jnp.sum(x / (x + jnp.asarray(d)) * coeffs))(jnp.asarray(b))
  assert np.abs(np.asarray(g)).max() > 1e-3


# ------------------------------------------------------------------------ MixMatch


def test_sharpen_matches_numpy():
  """p^(1/T) renormalized over the classes."""
  p = numpy_softmax(np.random.default_rng(4).normal(size=(4, 5))).astype(np.float32)
  for t in (0.5, 2.0, 1.0):
    q = p.astype(np.float64) ** (1.0 / t)
    np.testing.assert_allclose(np.asarray(mixmatch.sharpen(jnp.asarray(p), t)),
                               q / q.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)


def test_mixmatch_loss_matches_numpy():
  """L_x = mean soft CE over labelled views, L_u = mean over unlabelled views and classes of
  (softmax − target)², L = L_x + λ_u·L_u."""
  rng = np.random.default_rng(5)
  logits = rng.normal(size=(6, 5)).astype(np.float32) * 2
  targets = numpy_softmax(rng.normal(size=(6, 5))).astype(np.float32)
  labelled = np.array([True, False, True, True, False, False])
  loss, (lx, lu) = mixmatch.mixmatch_loss(jnp.asarray(logits), jnp.asarray(targets),
                                          jnp.asarray(labelled), 3.0)
  p = numpy_softmax(logits)
  t = targets.astype(np.float64)
  exp_lx = np.mean(-np.sum(t * np.log(p), axis=1)[labelled])
  exp_lu = np.mean(np.mean((p - t) ** 2, axis=1)[~labelled])
  np.testing.assert_allclose(float(lx), exp_lx, rtol=1e-5)
  np.testing.assert_allclose(float(lu), exp_lu, rtol=1e-5)
  np.testing.assert_allclose(float(loss), exp_lx + 3.0 * exp_lu, rtol=1e-5)
  _, (_, lu_all) = mixmatch.mixmatch_loss(jnp.asarray(logits), jnp.asarray(targets),
                                          jnp.ones(6, bool), 3.0)
  assert float(lu_all) == 0.0


# ------------------------------------------------------------------------ CBD's critic


def test_normalize_critic_divides_by_sqrt_of_the_largest_singular_value():
  """Each kernel / sqrt(σ_max) (power iteration; a matrix with a clear spectral gap), each
  bias / sqrt(‖b‖)."""
  rng = np.random.default_rng(6)
  u, _ = np.linalg.qr(rng.normal(size=(6, 6)))
  v, _ = np.linalg.qr(rng.normal(size=(8, 8)))
  kernel = (u @ np.diag([4.0, 1.0, 0.5, 0.3, 0.2, 0.1]) @ v[:6]).astype(np.float32)  # [6, 8]
  out_kernel = rng.normal(size=(8, 1)).astype(np.float32)
  params = {'hidden': {'kernel': kernel, 'bias': rng.normal(size=8).astype(np.float32)},
            'out': {'kernel': out_kernel, 'bias': np.array([-2.5], np.float32)}}
  got = critic.normalize_critic(jax.tree.map(jnp.asarray, params))
  for layer in params:
    w, b = (np.asarray(params[layer][k], np.float64) for k in ('kernel', 'bias'))
    sigma = np.linalg.svd(w, compute_uv=False)[0]
    np.testing.assert_allclose(np.asarray(got[layer]['kernel']), w / np.sqrt(sigma), rtol=1e-3)
    np.testing.assert_allclose(np.asarray(got[layer]['bias']), b / np.sqrt(np.linalg.norm(b)),
                               rtol=1e-5)
  np.testing.assert_allclose(np.linalg.svd(np.asarray(got['hidden']['kernel']), compute_uv=False)[0],
                             2.0, rtol=1e-3)  # σ 4 -> 4 / sqrt(4)


def numpy_critic(params, r, z):
  x = np.concatenate([r, z], axis=-1).astype(np.float64)
  h = x @ np.asarray(params['hidden']['kernel']) + np.asarray(params['hidden']['bias'])
  h = np.where(h > 0, h, 0.01 * h)
  return (h @ np.asarray(params['out']['kernel']) + np.asarray(params['out']['bias']))[:, 0]


def test_mutual_information_is_joint_minus_shifted_marginal():
  """Without dropout, Î = weight · (mean T(r_i, z_i) − mean T(r_i, z_{i+1 mod B})); with
  dropout it is random per key but repeats for the same key."""
  rng = np.random.default_rng(7)
  r = rng.normal(size=(5, 4)).astype(np.float32)
  z = rng.normal(size=(5, 4)).astype(np.float32)
  params = fast_jit(critic.init_critic, static_argnums=(0, 1))(8, 4, jax.random.key(1))
  assert jax.tree.map(np.shape, params) == {'hidden': {'kernel': (8, 8), 'bias': (8,)},
                                            'out': {'kernel': (8, 1), 'bias': (1,)}}
  params = jax.tree.map(lambda p: p + 0.3, params)  # nonzero biases
  mi = fast_jit(critic.mutual_information, static_argnums=0)
  key = jax.random.key(2)
  got = float(mi(critic.Critic(8, dropout=0.0), params, r, z, key, 0.7))
  shifted = z[(np.arange(5) + 1) % 5]
  expected = 0.7 * (numpy_critic(params, r, z).mean() - numpy_critic(params, r, shifted).mean())
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
  assert abs(expected) > 1e-3
  noisy = critic.Critic(8)
  a, b = (float(mi(noisy, params, r, z, key, 0.7)) for _ in range(2))
  c = float(mi(noisy, params, r, z, jax.random.key(3), 0.7))
  assert a == b and a != c and a != got


# ------------------------------------------------------------------------ D-ST


def inference_features(model, variables, x):
  _, state = model.apply(variables, x, train=False, mutable=['intermediates'])
  return np.asarray(state['intermediates']['features'][0], np.float64)


def test_sensitivity_is_the_feature_change_under_each_rows_transformation():
  """FCT of row i = mean over features of (f(x_i) − f(τ_i(x_i)))², τ_i drawn with
  fold_in(key, i); the same whatever the batch size."""
  model, variables = tiny_model()
  images, labels = random_images(5, seed=8)
  key = jax.random.key(3)
  mesh = parallel.make_mesh()
  whole = dst.sensitivity(model, variables, images, labels, key, 5, mesh)
  assert whole.shape == (5,) and whole.dtype == np.float32
  pairs = dst.sensitivity(model, variables, images, labels, key, 2, mesh)  # padded last batch
  np.testing.assert_allclose(pairs, whole, rtol=1e-5, atol=1e-8)
  for row in (0, 3):
    x = jnp.asarray(images[row], jnp.float32) / 255.0
    moved = fast_jit(dst.sensitivity_transform)(jax.random.fold_in(key, row), x)
    change = inference_features(model, variables, x[None]) - inference_features(model, variables,
                                                                                moved[None])
    np.testing.assert_allclose(whole[row], np.mean(change ** 2), rtol=1e-4)
  assert np.ptp(whole) > 0


def test_sensitivity_transform_keeps_binary_pixels_and_is_deterministic_per_key():
  """Nearest-pixel rotation + translation: a 0/1 image stays 0/1; one key, one result."""
  x = jnp.asarray(np.random.default_rng(9).integers(0, 2, (8, 8, 1)), jnp.float32)
  transform = fast_jit(dst.sensitivity_transform)
  outs = []
  for i in range(6):
    k = jax.random.key(100 + i)
    out = np.asarray(transform(k, x))
    assert out.shape == (8, 8, 1)
    assert set(np.unique(out)) <= {0.0, 1.0}
    np.testing.assert_array_equal(out, np.asarray(transform(k, x)))
    outs.append(out)
  assert sum(not np.array_equal(o, np.asarray(x)) for o in outs) >= 5
  assert len({o.tobytes() for o in outs}) == 6


@pytest.mark.parametrize('n', [40, 39, 21])
def test_split_by_sensitivity_takes_floor_counts_from_each_end_with_index_ties(n):
  """floor(0.2N) lowest CLEAN, floor(0.05N) highest POISONED, ties ranked by index."""
  scores = np.random.default_rng(n).integers(0, 6, n).astype(np.float32)  # many ties
  flags = dst.split_by_sensitivity(scores, 0.2, 0.05)
  assert flags.dtype == np.int8 and flags.shape == (n,)
  ranked = sorted(range(n), key=lambda i: (scores[i], i))
  n_clean, n_poison = int(np.floor(0.2 * n)), int(np.floor(0.05 * n))
  expected = np.full(n, SUSPICIOUS)
  expected[ranked[:n_clean]] = CLEAN
  if n_poison:
    expected[ranked[n - n_poison:]] = POISONED
  np.testing.assert_array_equal(flags, expected)
  assert (flags == CLEAN).sum() == n_clean and (flags == POISONED).sum() == n_poison


# ------------------------------------------------------------------------ A-ABL split methods


TARGET_LOGITS = np.array([10.0] + [0.0] * 9, np.float32)


class ConstantDetector(nn.Module):
  """Logits [10, 0, ..., 0] for a constant image, all zeros otherwise: piecewise constant,
  so its input gradient is 0 and iFGSM cannot move an image."""

  @nn.compact
  def __call__(self, x, *, train):
    del train
    bias = self.param('bias', nn.initializers.zeros, ())
    flat = x.reshape(x.shape[0], -1)
    constant = (flat.max(axis=-1) - flat.min(axis=-1)) < 1e-6
    return jnp.where(constant[:, None], jnp.asarray(TARGET_LOGITS), 0.0) + bias


def constructed_split_set(seed=10):
  """(images, labels, poisoned): black label-0 images (a trigger no augmentation and no
  iFGSM step changes into a non-constant image) among random-noise images."""
  images, labels = random_images(24, seed=seed)
  poisoned = np.zeros(24, bool)
  poisoned[[1, 4, 9, 15, 16, 22]] = True
  images[poisoned] = 0
  labels[poisoned] = 0
  return images, labels, poisoned


def is_constant(x):
  flat = np.asarray(x).reshape(len(x), -1)
  return flat.max(axis=1) - flat.min(axis=1) < 1e-6


@pytest.mark.parametrize('policy', ['randaugment', 'autoaugment'])
def test_strong_augmentations_keep_black_images_constant_and_noise_not(policy):
  """The premise of the constructed split: every op maps a black image to a constant one
  (Invert to white), and no draw flattens a noise image."""
  augment = POLICIES[policy]
  black = jnp.zeros((256, 8, 8, 1), jnp.float32)
  out = np.asarray(augment(jax.random.key(11), black))
  assert is_constant(out).all()
  noise = jnp.asarray(random_images(256, seed=12)[0], jnp.float32) / 255.0
  assert not is_constant(np.asarray(augment(jax.random.key(11), noise))).any()


def expected_split_losses(labels, poisoned):
  """The stub's SCE of every sample when no poison and no noise image changes kind."""
  logits = np.where(poisoned[:, None], TARGET_LOGITS[None], 0.0)
  return numpy_sce(logits, labels, 0.1, 1.0, 1e-4)


def test_ifgsm_split_puts_exactly_the_constant_trigger_on_the_robust_side():
  """A-ABL stage 2 (iFGSM): the poisons keep their low SCE, Otsu puts them in D_rob."""
  images, labels, poisoned = constructed_split_set()
  model = ConstantDetector()
  variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False)
  losses = aabl.adversarial_sce(model, variables, images, labels, eps=0.3, step_size=0.1, steps=3,
                                sce_alpha=0.1, sce_beta=1.0, label_clamp=1e-4, batch_size=8,
                                mesh=parallel.make_mesh())
  assert losses.shape == (24,) and losses.dtype == np.float32
  np.testing.assert_allclose(losses, expected_split_losses(labels, poisoned), rtol=1e-4, atol=1e-6)
  split = aabl.split_by_vulnerability(losses)
  np.testing.assert_array_equal(split.vulnerable, ~poisoned)
  assert losses[poisoned].max() < split.threshold < losses[~poisoned].min()


@pytest.mark.parametrize('policy', ['randaugment', 'autoaugment'])
def test_augmentation_split_puts_exactly_the_constant_trigger_on_the_robust_side(policy):
  """A-ABL Table 5 (split_method randaugment / autoaugment): the same constructed case."""
  images, labels, poisoned = constructed_split_set()
  model = ConstantDetector()
  variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False)
  losses = aabl.augmented_sce(model, variables, images, labels, policy=policy,
                              key=jax.random.key(13), sce_alpha=0.1, sce_beta=1.0,
                              label_clamp=1e-4, batch_size=8, mesh=parallel.make_mesh())
  assert losses.shape == (24,) and losses.dtype == np.float32
  np.testing.assert_allclose(losses, expected_split_losses(labels, poisoned), rtol=1e-4, atol=1e-6)
  split = aabl.split_by_vulnerability(losses)
  np.testing.assert_array_equal(split.vulnerable, ~poisoned)


# ------------------------------------------------------------------------ DBD's warm-up step


def test_head_only_sce_step_changes_only_the_head_by_its_sgd_update():
  """Objective('sce', head_only=True): the head takes one SGD step (with weight decay) on
  the mean SCE of the frozen backbone's inference features; every other param and the
  BatchNorm statistics stay bit-identical."""
  batch, lr, wd = 4, 0.5, 0.01
  alpha, beta, clamp = 0.1, 1.0, 1e-4
  model, variables = tiny_model()
  images, labels = random_images(8, seed=14)
  order = np.array([5, 2, 7, 0, 3, 6, 1, 4], np.int32)
  rows = order[batch:]
  tx = optax.chain(optax.add_decayed_weights(wd), optax.sgd(lr))
  state = TrainState.create(apply_fn=model.apply, params=variables['params'], tx=tx,
                            batch_stats=variables['batch_stats'])
  step = jax.jit(make_train_step(model, make_perturbation('none'), batch_size=batch,
                                 crop_padding=0, flip=False, bn_mode='eval',
                                 objective=Objective('sce', head_only=True)))
  hp = {'sce_alpha': jnp.float32(alpha), 'sce_beta': jnp.float32(beta),
        'sce_clamp': jnp.float32(clamp)}
  new, metrics = step(state, zero_metrics(), jnp.asarray(images), jnp.asarray(labels),
                      jnp.asarray(order), jnp.int32(1), jax.random.key(5), hp)

  x = jnp.asarray(images[rows], jnp.float32) / 255.0
  y = labels[rows]
  feats = inference_features(model, state.variables, x)
  w = np.asarray(state.params['head']['kernel'], np.float64)
  b = np.asarray(state.params['head']['bias'], np.float64)
  logits = feats @ w + b
  p = numpy_softmax(logits)
  one_hot = np.eye(10)[y]
  p_y = p[np.arange(batch), y][:, None]
  # d SCE / d logits: α(p − e_y) + β·log(clamp)·p_y·(e_y − p) (no probability clamped here).
  assert p.min() > 1e-7
  g_logits = (alpha * (p - one_hot) + beta * np.log(clamp) * p_y * (one_hot - p)) / batch
  np.testing.assert_allclose(np.asarray(new.params['head']['kernel']),
                             w - lr * (feats.T @ g_logits + wd * w), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(np.asarray(new.params['head']['bias']),
                             b - lr * (g_logits.sum(axis=0) + wd * b), rtol=1e-4, atol=1e-6)
  assert np.abs(np.asarray(new.params['head']['kernel']) - w).max() > 1e-4
  np.testing.assert_allclose(float(metrics['loss_sum']),
                             batch * numpy_sce(logits, y, alpha, beta, clamp).mean(), rtol=1e-5)
  for name in state.params:
    if name != 'head':
      for a, c in zip(jax.tree.leaves(state.params[name]), jax.tree.leaves(new.params[name])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
  assert jax.tree.leaves(state.batch_stats)
  for a, c in zip(jax.tree.leaves(state.batch_stats), jax.tree.leaves(new.batch_stats)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
  assert int(new.step) == 1


# ------------------------------------------------------------------------ small helpers


def test_objective_validation():
  """Contrastive losses (and only they) need a projection; only weighted_ce has a critic."""
  with pytest.raises(ValueError, match='Objective.loss'):
    Objective('bogus')
  with pytest.raises(ValueError, match='Objective.projection'):
    Objective('simclr')
  with pytest.raises(ValueError, match='Objective.projection'):
    Objective('supcon', projection=())
  with pytest.raises(ValueError, match='Objective.projection'):
    Objective('ce', projection=(16, 8))
  with pytest.raises(ValueError, match='Objective.critic'):
    Objective('ce', critic=8)
  with pytest.raises(ValueError, match='Objective.critic'):
    Objective('mixed_ce', head_only=True, critic=8)
  good = Objective('supcon', projection=(16, 8))
  assert good.outputs(10) == 8 and good.head_hidden == 16
  assert Objective('weighted_ce', critic=8).outputs(10) == 10
  assert Objective('weighted_ce', critic=8).head_hidden == 0


def test_start_from_fills_missing_modules_from_fresh_and_rejects_unknown_ones():
  """A start without the head keeps the fresh head; a module the model lacks is an error."""
  fresh = {'conv': np.zeros(2), 'head': np.ones(3), 'head_hidden': np.full(2, 5.0)}
  start = {'conv': np.full(2, 7.0)}
  got = _start_from(fresh, start)
  assert set(got) == set(fresh)
  assert got['conv'] is start['conv'] and got['head'] is fresh['head']
  assert got['head_hidden'] is fresh['head_hidden']
  assert _start_from(fresh, {}) == fresh
  with pytest.raises(ValueError, match=r"init_variables.*\['critic', 'zz'\]"):
    _start_from(fresh, {'conv': np.zeros(2), 'zz': 1, 'critic': 2})


def test_lowest_fraction_marks_the_lowest_losses_with_index_ties():
  """int(N·fraction) lowest (at least 1), ties to the lower index."""
  losses = np.array([3.0, 1.0, 2.0, 1.0, 0.5, 2.0, 1.0, 4.0])
  got = abl.isolate_lowest(losses, 0.5)
  ranked = sorted(range(8), key=lambda i: (losses[i], i))
  expected = np.zeros(8, bool)
  expected[ranked[:4]] = True
  assert got.dtype == bool
  np.testing.assert_array_equal(got, expected)
  np.testing.assert_array_equal(np.flatnonzero(abl.isolate_lowest(losses, 0.01)), [4])
  assert abl.isolate_lowest(np.arange(100.0), 0.29).sum() == 29  # 0.29·100 = 28.99...
  np.testing.assert_array_equal(np.flatnonzero(abl.isolate_lowest(np.arange(100.0)[::-1], 0.29)),
                                np.arange(71, 100))


def test_backbone_only_drops_the_head_and_the_projection():
  """The classifier and projection layers go; the backbone and BatchNorm statistics stay."""
  variables = {'params': {'Conv_0': {'kernel': 1}, 'head': {'kernel': 2},
                          'head_hidden': {'kernel': 3}},
               'batch_stats': {'BatchNorm_0': {'mean': 4}}}
  got = dbd.backbone_only(variables)
  assert got == {'params': {'Conv_0': {'kernel': 1}}, 'batch_stats': {'BatchNorm_0': {'mean': 4}}}
  assert dbd.backbone_only({'params': {'head': 1, 'x': 2}}) == {'params': {'x': 2},
                                                                'batch_stats': {}}
  _, real = tiny_model()
  kept = dbd.backbone_only(real)
  assert set(kept['params']) == set(real['params']) - {'head'}
  assert set(kept['batch_stats']) == set(real['batch_stats'])


# ------------------------------------------------------------------------ configs


@pytest.mark.parametrize('field, value', [
    ('split_method', 'mixup'),
    ('dbd_simclr_epochs', 0),
    ('dbd_simclr_batch', 0),
    ('dbd_simclr_lr', 0.0),
    ('dbd_temperature', 0.0),
    ('dbd_projection_dim', 0),
    ('dbd_warmup_epochs', 0),
    ('dbd_warmup_lr', -0.1),
    ('dbd_labelled_fraction', 1.0),
    ('dbd_labelled_fraction', 0.0),
    ('dbd_lambda_u', -1.0),
    ('dbd_sharpen_t', 0.0),
    ('dbd_mix_alpha', 0.0),
    ('dst_sd_epochs', 0),
    ('dst_sd_lr', 0.0),
    ('dst_sd_finetune_epochs', -1),
    ('dst_clean_ratio', 0.0),
    ('dst_poison_ratio', -0.1),
    ('dst_train', 'x'),
    ('dst_contrastive_epochs', 0),
    ('dst_contrastive_batch', 0),
    ('dst_contrastive_lr', 0.0),
    ('dst_temperature', 0.0),
    ('dst_base_temperature', -1.0),
    ('dst_ascent_weight', -1.0),
    ('cbd_backdoor_epochs', 0),
    ('cbd_mi_weight', -1.0),
    ('cbd_critic_lr', 0.0),
])
def test_bad_aabl_baseline_fields_are_rejected(field, value):
  """Each new defense field's bad value raises a ConfigError naming that field."""
  c = config_lib.base_config()
  c.defense[field] = value
  with pytest.raises(ConfigError, match=rf'defense\.{field}\b') as info:
    config_lib.validate(c)
  assert info.value.field == f'defense.{field}'


def test_dst_ratios_must_leave_room_for_each_other():
  """dst_clean_ratio + dst_poison_ratio > 1 is rejected (naming dst_poison_ratio); = 1 is
  allowed."""
  c = config_lib.base_config()
  c.defense.update(dst_clean_ratio=0.8, dst_poison_ratio=0.3)
  with pytest.raises(ConfigError, match=r'defense\.dst_poison_ratio') as info:
    config_lib.validate(c)
  assert info.value.field == 'defense.dst_poison_ratio'
  c.defense.update(dst_clean_ratio=0.75, dst_poison_ratio=0.25)
  config_lib.validate(c)
  c.defense.update(dst_train='at_clean', split_method='autoaugment', dst_sd_finetune_epochs=0)
  config_lib.validate(c)


def test_aabl_baseline_presets_load():
  """configs/{dbd,dst,cbd}.py:digits and dst.py:at,digits validate; :at trains PGD-AT on the
  clean + uncertain samples."""
  for name in ('dbd', 'dst', 'cbd'):
    c = config_lib.from_file(os.path.join(REPO, f'configs/{name}.py') + ':digits')
    assert c.defense.name == name and c.dataset.name == 'digits' and c.perturb.name == 'none'
  assert config_lib.from_file(os.path.join(REPO, 'configs/dst.py:digits')).defense.dst_train == 'secure'
  at = config_lib.from_file(os.path.join(REPO, 'configs/dst.py') + ':at,digits')
  assert at.defense.name == 'dst' and at.dataset.name == 'digits'
  assert at.defense.dst_train == 'at_clean_suspicious' and at.perturb.name == 'linf'


def test_phase_batch_larger_than_the_training_set_names_its_field():
  """A contrastive phase's batch is a defense field: the error names it, not train.batch_size."""
  config = config_lib.from_file('configs/dbd.py:digits')
  phases.check_batch(config, 'dbd_simclr_batch', config.defense.dbd_simclr_batch)
  with pytest.raises(ConfigError, match='defense.dbd_simclr_batch.*at most the 100 training'):
    phases.check_batch(config, 'dbd_simclr_batch', 100)
