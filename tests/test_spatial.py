"""Flow-field attack, random baselines, relaxation and composite AT (Gao et al., TNNLS'23)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from abd_jax.perturb import PERTURB_NAMES, make_perturbation
from abd_jax.perturb.composite import cat_keys
from abd_jax.perturb.relaxed import random_part_key, random_signs, relax
from abd_jax.perturb.spatial import flow_warp as _flow_warp
from abd_jax.perturb.spatial import pixel_size, random_flow, spatial_flow
from abd_jax.poison.warp import identity_grid, warp

flow_warp = jax.jit(_flow_warp)  # one compile per shape instead of op-by-op dispatch

KEY = jax.random.key(7)
# Digits are 8x8: one pixel is 2/7 ≈ 0.29 grid units, so eps_s = 0.15 is about half a pixel.
HP = {'eps': jnp.float32(0.1), 'step_size': jnp.float32(0.025),
      'eps_spatial': jnp.float32(0.15), 'step_size_spatial': jnp.float32(0.0375),
      'beta': jnp.float32(1.0)}
NEW_NAMES = ('spatial', 'random_spatial', 'relaxed_linf', 'random_linf', 'cat')


def with_hp(**kw):
  return {**HP, **{k: jnp.float32(v) for k, v in kw.items()}}


def mean_loss(logits_fn, x, y):
  return float(optax.softmax_cross_entropy_with_integer_labels(logits_fn(x), y).mean())


def random_images(key=0, shape=(4, 8, 8, 3)):
  return jax.random.uniform(jax.random.key(key), shape)


# --- the warp ---------------------------------------------------------------------------

def test_zero_flow_is_exact_identity(trained_digits_model):
  _, x, _ = trained_digits_model
  for images in (x, random_images()):
    zero = jnp.zeros(images.shape[:3] + (2,))
    np.testing.assert_array_equal(flow_warp(images, zero), images)


def test_one_pixel_flow_shifts_by_one_pixel():
  x = random_images(shape=(2, 8, 10, 3))
  px, py = pixel_size((8, 10))
  assert float(px) == pytest.approx(2 / 9) and float(py) == pytest.approx(2 / 7)
  right = flow_warp(x, jnp.zeros((8, 10, 2)).at[..., 0].set(px))
  np.testing.assert_allclose(right[:, :, :-1], x[:, :, 1:], atol=1e-6)
  np.testing.assert_allclose(right[:, :, -1], x[:, :, -1], atol=1e-6)  # border repeats
  down = flow_warp(x, jnp.zeros((8, 10, 2)).at[..., 1].set(py))
  np.testing.assert_allclose(down[:, :-1], x[:, 1:], atol=1e-6)
  half = flow_warp(x, jnp.zeros((8, 10, 2)).at[..., 0].set(-px / 2))
  np.testing.assert_allclose(half[:, :, 1:], (x[:, :, 1:] + x[:, :, :-1]) / 2, atol=1e-6)


def test_flow_warp_matches_grid_sample_convention_inside_the_image():
  """Same sampling as `poison.warp.warp` (torch grid_sample, align_corners=True) wherever
  the sample lies inside the image; only the border mode differs."""
  x = random_images(shape=(3, 8, 8, 2))
  flow = jax.random.uniform(jax.random.key(1), (3, 8, 8, 2), minval=-0.4, maxval=0.4)
  grid = identity_grid((8, 8)) + flow
  inside = np.asarray(jnp.all(jnp.abs(grid) <= 1.0, axis=-1))
  assert inside.mean() > 0.5
  ours, ref = np.asarray(flow_warp(x, flow)), np.asarray(warp(x, grid))
  np.testing.assert_allclose(ours[inside], ref[inside], atol=1e-6)


def test_constant_image_is_unchanged_by_any_flow():
  """A flow only moves pixels, it never changes their values."""
  x = jnp.full((2, 8, 8, 1), 0.3)
  flow = jax.random.uniform(jax.random.key(2), (2, 8, 8, 2), minval=-1.0, maxval=1.0)
  np.testing.assert_allclose(flow_warp(x, flow), x, atol=1e-7)


# --- the spatial attack -----------------------------------------------------------------

def test_flow_budget_holds_after_every_step(trained_digits_model):
  logits_fn, x, y = trained_digits_model
  eps = float(HP['eps_spatial'])
  hp = with_hp(step_size_spatial=0.1)  # large steps so the projection is exercised
  previous = None
  for k in range(5):
    w = spatial_flow(logits_fn, x, y, KEY, hp, steps=k)
    assert w.shape == x.shape[:3] + (2,)
    assert float(jnp.abs(w).max()) <= eps
    if previous is not None:
      assert not np.array_equal(np.asarray(w), previous)
    previous = np.asarray(w)
  # The projection is active (flat digit background has zero gradient and stays put).
  assert float(jnp.mean(jnp.abs(w) == eps)) > 0.3


def test_spatial_attack_beats_random_flow_of_same_budget(trained_digits_model):
  logits_fn, x, y = trained_digits_model
  adv = make_perturbation('spatial', steps=5)(logits_fn, x, y, KEY, HP)
  rand = make_perturbation('random_spatial')(logits_fn, x, y, KEY, HP)
  clean, l_rand, l_adv = (mean_loss(logits_fn, v, y) for v in (x, rand, adv))
  assert l_adv > 2 * l_rand and l_adv > clean + 0.2, (clean, l_rand, l_adv)


def test_spatial_without_random_start_starts_from_identity(trained_digits_model):
  logits_fn, x, y = trained_digits_model
  w0 = spatial_flow(logits_fn, x, y, KEY, HP, steps=0, random_start=False)
  np.testing.assert_array_equal(w0, jnp.zeros_like(w0))
  w1 = spatial_flow(logits_fn, x, y, KEY, HP, steps=1, random_start=False)
  np.testing.assert_allclose(jnp.abs(w1).max(), HP['step_size_spatial'])


def test_random_spatial_uses_sign_flows(trained_digits_model):
  logits_fn, x, y = trained_digits_model
  eps = HP['eps_spatial']
  zeta = random_flow(random_part_key(KEY), x, eps)
  assert zeta.shape == x.shape[:3] + (2,)
  np.testing.assert_allclose(jnp.abs(zeta), eps)
  assert 0.4 < float(jnp.mean(zeta > 0)) < 0.6
  out = make_perturbation('random_spatial')(logits_fn, x, y, KEY, HP)
  np.testing.assert_allclose(out, flow_warp(x, zeta), atol=1e-6)


# --- random L-inf and relaxation --------------------------------------------------------

def test_random_linf_adds_signs_of_eps(trained_digits_model):
  logits_fn, x, y = trained_digits_model
  eps = 0.1
  out = make_perturbation('random_linf')(logits_fn, x, y, KEY, with_hp(eps=eps))
  v = random_signs(random_part_key(KEY), x.shape, jnp.float32(eps))
  np.testing.assert_allclose(jnp.abs(v), eps)
  assert 0.45 < float(jnp.mean(v > 0)) < 0.55
  np.testing.assert_allclose(out, jnp.clip(x + v, 0.0, 1.0), atol=1e-7)
  unclipped = np.asarray((x + v >= 0) & (x + v <= 1))
  np.testing.assert_allclose(np.abs(np.asarray(out - x))[unclipped], eps, rtol=1e-5)


@pytest.mark.parametrize('beta', [0.0, 0.8, 1.0])
def test_relax_formula(beta):
  u = jnp.array([0.1, -0.1, 0.05, 0.0])
  v = jnp.array([-0.1, -0.1, 0.1, 0.1])
  expected = beta * np.asarray(u) + (1 - beta) * np.asarray(v)
  out = relax(u, v, jnp.float32(beta))
  np.testing.assert_allclose(out, expected, atol=1e-7)
  if beta == 1.0:
    np.testing.assert_array_equal(out, u)


@pytest.mark.parametrize('beta', [0.0, 0.8, 1.0])
def test_relaxed_linf_matches_paper_formula(trained_digits_model, beta):
  logits_fn, x, y = trained_digits_model
  hp = with_hp(beta=beta)
  out = make_perturbation('relaxed_linf', steps=3)(logits_fn, x, y, KEY, hp)
  u = make_perturbation('linf', steps=3)(logits_fn, x, y, KEY, hp) - x
  v = random_signs(random_part_key(KEY), x.shape, hp['eps'])
  np.testing.assert_allclose(out, jnp.clip(x + beta * u + (1 - beta) * v, 0, 1), atol=1e-6)
  assert float(jnp.abs(out - x).max()) <= float(hp['eps']) + 1e-6


def test_relaxed_linf_endpoints_are_pgd_and_random(trained_digits_model):
  logits_fn, x, y = trained_digits_model
  relaxed = make_perturbation('relaxed_linf', steps=3)
  pgd = make_perturbation('linf', steps=3)(logits_fn, x, y, KEY, HP)
  np.testing.assert_array_equal(relaxed(logits_fn, x, y, KEY, with_hp(beta=1.0)), pgd)
  rand = make_perturbation('random_linf')(logits_fn, x, y, KEY, HP)
  np.testing.assert_allclose(relaxed(logits_fn, x, y, KEY, with_hp(beta=0.0)), rand, atol=1e-6)


@pytest.mark.parametrize('beta', [0.0, 0.8, 1.0])
def test_relaxed_spatial_matches_paper_formula(trained_digits_model, beta):
  logits_fn, x, y = trained_digits_model
  hp = with_hp(beta=beta)
  out = make_perturbation('spatial', steps=3)(logits_fn, x, y, KEY, hp)
  w_star = spatial_flow(logits_fn, x, y, KEY, hp, steps=3)
  zeta = random_flow(random_part_key(KEY), x, hp['eps_spatial'])
  np.testing.assert_allclose(out, flow_warp(x, beta * w_star + (1 - beta) * zeta), atol=1e-6)


# --- composite AT -----------------------------------------------------------------------

def cat_by_hand(logits_fn, x, y, key, hp, steps, spatial_first=True):
  k_spatial, k_linf = cat_keys(key)
  spatial = make_perturbation('spatial', steps=steps)
  linf = make_perturbation('relaxed_linf', steps=steps)
  if spatial_first:
    x1 = spatial(logits_fn, x, y, k_spatial, hp)
    return x1, linf(logits_fn, x1, y, k_linf, hp)
  x1 = linf(logits_fn, x, y, k_linf, hp)
  return x1, spatial(logits_fn, x1, y, k_spatial, hp)


def test_cat_is_relaxed_spatial_then_relaxed_linf(trained_digits_model):
  logits_fn, x, y = trained_digits_model
  hp = with_hp(beta=0.8)
  out = make_perturbation('cat', steps=3)(logits_fn, x, y, KEY, hp)
  x_spatial, expected = cat_by_hand(logits_fn, x, y, KEY, hp, steps=3)
  np.testing.assert_allclose(out, expected, atol=1e-6)
  _, reversed_order = cat_by_hand(logits_fn, x, y, KEY, hp, steps=3, spatial_first=False)
  assert float(jnp.abs(out - reversed_order).max()) > 1e-2
  # Stage 2 is an L-inf ball around the spatial output, not around x.
  assert float(jnp.abs(out - x_spatial).max()) <= float(hp['eps']) + 1e-6
  assert float(jnp.abs(out - x).max()) > float(hp['eps']) + 1e-2
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
  assert mean_loss(logits_fn, out, y) > mean_loss(logits_fn, x_spatial, y) > mean_loss(logits_fn, x, y)


def test_cat_spatial_stage_only_moves_pixels(trained_digits_model):
  """On constant images the flow cannot change anything, so CAT reduces to its L-inf
  stage: the spatial stage never takes a pixel-value step."""
  logits_fn, _, y = trained_digits_model
  x = jnp.full((y.shape[0], 8, 8, 1), 0.5)
  np.testing.assert_allclose(make_perturbation('spatial', steps=3)(logits_fn, x, y, KEY, HP), x,
                             atol=1e-7)
  out = make_perturbation('cat', steps=3)(logits_fn, x, y, KEY, HP)
  expected = make_perturbation('relaxed_linf', steps=3)(logits_fn, x, y, cat_keys(KEY)[1], HP)
  np.testing.assert_allclose(out, expected, atol=1e-6)


# --- all new perturbations --------------------------------------------------------------

def test_new_names_are_registered():
  assert set(NEW_NAMES) <= set(PERTURB_NAMES)


@pytest.mark.parametrize('name', NEW_NAMES)
def test_zero_budget_is_identity(trained_digits_model, name):
  logits_fn, x, y = trained_digits_model
  hp = with_hp(eps=0.0, eps_spatial=0.0, beta=0.8)
  np.testing.assert_allclose(make_perturbation(name, steps=2)(logits_fn, x, y, KEY, hp), x,
                             atol=1e-7)


@pytest.mark.parametrize('name', ['spatial', 'cat'])
def test_budgets_and_beta_are_traced(trained_digits_model, name):
  logits_fn, x, y = trained_digits_model
  attack = jax.jit(make_perturbation(name, steps=2), static_argnums=0)
  a = attack(logits_fn, x, y, KEY, with_hp(beta=1.0))
  size = attack._cache_size()
  b = attack(logits_fn, x, y, KEY, with_hp(beta=0.8, eps=0.05, eps_spatial=0.1))
  assert attack._cache_size() == size
  assert not np.array_equal(np.asarray(a), np.asarray(b))
  for out in (a, b):
    assert out.shape == x.shape and out.dtype == x.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_beta_grid_vmaps(trained_digits_model):
  logits_fn, x, y = trained_digits_model
  attack = make_perturbation('spatial', steps=2)
  out = jax.vmap(lambda b: attack(logits_fn, x, y, KEY, {**HP, 'beta': b}))(jnp.array([0.8, 1.0]))
  np.testing.assert_allclose(out[0], attack(logits_fn, x, y, KEY, with_hp(beta=0.8)), atol=1e-6)
  assert not np.array_equal(np.asarray(out[0]), np.asarray(out[1]))


@pytest.mark.parametrize('name', ['spatial', 'cat'])
def test_unrolled_and_rolled_loops_agree(trained_digits_model, name):
  logits_fn, x, y = trained_digits_model
  hp = with_hp(beta=0.8)
  ref = make_perturbation(name, steps=3, unroll='full')(logits_fn, x, y, KEY, hp)
  out = make_perturbation(name, steps=3, unroll='none')(logits_fn, x, y, KEY, hp)
  np.testing.assert_allclose(out, ref, atol=1e-6)
