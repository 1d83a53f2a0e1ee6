"""Properties of the inner maximizations on a trained digits model."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from abd_jax.perturb import PERTURB_NAMES, make_perturbation
from abd_jax.perturb.l2 import project_l2

EPS, STEP = 0.1, 0.025
HP = {'eps': jnp.float32(EPS), 'step_size': jnp.float32(STEP)}
KEY = jax.random.key(42)


def mean_loss(logits_fn, x, y):
  return float(optax.softmax_cross_entropy_with_integer_labels(logits_fn(x), y).mean())


def linf_norms(a, b):
  return np.asarray(jnp.max(jnp.abs(a - b), axis=(1, 2, 3)))


def l2_norms(a, b):
  return np.asarray(jnp.sqrt(jnp.sum((a - b) ** 2, axis=(1, 2, 3))))


@pytest.mark.parametrize('name', ['linf', 'fgsm', 'ifgsm', 'fgsm_targeted'])
def test_linf_attacks_respect_budget_and_range(trained_digits_model, name):
  logits_fn, x, y = trained_digits_model
  x_adv = make_perturbation(name, steps=5)(logits_fn, x, y, KEY, HP)
  assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
  assert linf_norms(x_adv, x).max() <= EPS + 1e-6
  assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0


def test_l2_attack_respects_budget_and_range(trained_digits_model):
  logits_fn, x, y = trained_digits_model
  hp = {'eps': jnp.float32(1.0), 'step_size': jnp.float32(0.25)}
  x_adv = make_perturbation('l2', steps=10)(logits_fn, x, y, KEY, hp)
  assert l2_norms(x_adv, x).max() <= 1.0 + 1e-5
  assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
  assert mean_loss(logits_fn, x_adv, y) > mean_loss(logits_fn, x, y) + 0.1


def test_project_l2_is_identity_inside_and_scales_outside():
  d = jnp.stack([jnp.full((2, 2, 1), 0.1), jnp.full((2, 2, 1), 3.0)])  # norms 0.2 and 6
  out = project_l2(d, jnp.float32(1.0))
  np.testing.assert_allclose(out[0], d[0], rtol=1e-6)
  np.testing.assert_allclose(l2_norms(out[1:], 0 * out[1:]), [1.0], rtol=1e-5)


@pytest.mark.parametrize('name', ['linf', 'l2', 'fgsm', 'ifgsm'])
def test_attacks_increase_loss(trained_digits_model, name):
  logits_fn, x, y = trained_digits_model
  hp = HP if name != 'l2' else {'eps': jnp.float32(1.0), 'step_size': jnp.float32(0.25)}
  x_adv = make_perturbation(name, steps=5)(logits_fn, x, y, KEY, hp)
  assert mean_loss(logits_fn, x_adv, y) > 2 * mean_loss(logits_fn, x, y)


def test_targeted_fgsm_moves_towards_least_likely_class(trained_digits_model):
  logits_fn, x, y = trained_digits_model
  least = jnp.argmin(logits_fn(x), -1)
  hp = {'eps': jnp.float32(EPS), 'step_size': jnp.float32(EPS)}
  x_adv = make_perturbation('fgsm_targeted')(logits_fn, x, y, KEY, hp)
  before = optax.softmax_cross_entropy_with_integer_labels(logits_fn(x), least).mean()
  after = optax.softmax_cross_entropy_with_integer_labels(logits_fn(x_adv), least).mean()
  assert float(after) < float(before)
  assert linf_norms(x_adv, x).max() <= EPS + 1e-6


def test_pgd_at_least_as_strong_as_fgsm(trained_digits_model):
  logits_fn, x, y = trained_digits_model
  hp_fgsm = {'eps': jnp.float32(EPS), 'step_size': jnp.float32(1.25 * EPS)}
  fgsm = make_perturbation('fgsm')(logits_fn, x, y, KEY, hp_fgsm)
  pgd = make_perturbation('linf', steps=10)(logits_fn, x, y, KEY, HP)
  assert mean_loss(logits_fn, pgd, y) >= mean_loss(logits_fn, fgsm, y)


def test_ifgsm_is_deterministic_and_keyless(trained_digits_model):
  logits_fn, x, y = trained_digits_model
  attack = make_perturbation('ifgsm', steps=5)
  a = attack(logits_fn, x, y, jax.random.key(1), HP)
  b = attack(logits_fn, x, y, jax.random.key(2), HP)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_random_start_depends_on_key(trained_digits_model):
  logits_fn, x, y = trained_digits_model
  attack = make_perturbation('linf', steps=1)
  a = attack(logits_fn, x, y, jax.random.key(1), HP)
  b = attack(logits_fn, x, y, jax.random.key(2), HP)
  assert not np.array_equal(np.asarray(a), np.asarray(b))


def test_zero_budget_is_identity(trained_digits_model):
  logits_fn, x, y = trained_digits_model
  hp = {'eps': jnp.float32(0.0), 'step_size': jnp.float32(STEP)}
  np.testing.assert_array_equal(make_perturbation('linf', steps=3)(logits_fn, x, y, KEY, hp), x)


def test_budget_is_traced_not_static(trained_digits_model):
  """A new eps reuses the compiled program, and a grid of eps vmaps."""
  logits_fn, x, y = trained_digits_model
  attack = jax.jit(make_perturbation('linf', steps=2), static_argnums=0)
  attack(logits_fn, x, y, KEY, HP)
  size = attack._cache_size()
  attack(logits_fn, x, y, KEY, {'eps': jnp.float32(0.2), 'step_size': jnp.float32(0.05)})
  assert attack._cache_size() == size
  grid = {'eps': jnp.array([0.0, 0.05, 0.2]), 'step_size': jnp.array([0.01, 0.01, 0.05])}
  out = jax.vmap(lambda hp: make_perturbation('linf', steps=2)(logits_fn, x, y, KEY, hp))(grid)
  np.testing.assert_allclose(linf_norms(out[0], x).max(), 0.0)
  assert linf_norms(out[1], x).max() <= 0.05 + 1e-6 < linf_norms(out[2], x).max()


@pytest.mark.parametrize('unroll', ['full', 'none'])
def test_unrolled_and_rolled_loops_agree(trained_digits_model, unroll):
  logits_fn, x, y = trained_digits_model
  ref = make_perturbation('linf', steps=3, unroll='full')(logits_fn, x, y, KEY, HP)
  out = make_perturbation('linf', steps=3, unroll=unroll)(logits_fn, x, y, KEY, HP)
  np.testing.assert_allclose(out, ref, atol=1e-6)


def test_names_are_listed():
  assert set(PERTURB_NAMES) >= {'none', 'linf', 'l2', 'fgsm', 'fgsm_targeted', 'ifgsm'}
  with pytest.raises(ValueError, match='perturb.name'):
    make_perturbation('pgd')
