"""Numeric edge cases, each checked against a hand computation: robust accuracy on exactly
the first N test images, eval batches clamped to a small test set, the all-to-all poison
pool, step sizes derived from eps, the L2 random start on the eps-sphere, a removal factor
that keeps less than a batch, and models too deep for their images."""

import functools
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from abd_jax import config as config_lib
from abd_jax import evaluate, parallel
from abd_jax.data import load_dataset
from abd_jax.errors import ConfigError
from abd_jax.models import MODEL_NAMES, check_image_size, create_model
from abd_jax.perturb import attack_logits_fn, make_perturbation
from abd_jax.perturb.l2 import pgd_l2, sphere_start
from abd_jax.poison import core as poison_core
from abd_jax.poison import select
from cli import REPO

KEY = jax.random.key(0)


@pytest.fixture(scope='module')
def digits():
  return load_dataset(config_lib.base_config().dataset, 0)


class _MLP(nn.Module):
  """A model with the library's interface that compiles in a blink."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    del train
    x = nn.relu(nn.Dense(32)(x.reshape(x.shape[0], -1)))
    return nn.Dense(10)(x)


@pytest.fixture(scope='module')
def small_model(digits):
  """(model, [trained variables, random variables]): the first ~95% accurate on digits."""
  model = _MLP()
  x = jnp.asarray(digits.x_train, jnp.float32) / 255.0
  y = jnp.asarray(digits.y_train)
  params = model.init(jax.random.key(1), x[:1], train=False)
  tx = optax.adam(1e-2)

  @jax.jit
  def train(params):
    def step(carry, _):
      p, opt = carry
      g = jax.grad(lambda q: optax.softmax_cross_entropy_with_integer_labels(
          model.apply(q, x, train=True), y).mean())(p)
      upd, opt = tx.update(g, opt)
      return (optax.apply_updates(p, upd), opt), None
    return jax.lax.scan(step, (params, tx.init(params)), None, length=200)[0][0]

  return model, [train(params), model.init(jax.random.key(2), x[:1], train=False)]


def _clean_predictions(model, variables, images):
  x = jnp.asarray(images, jnp.float32) / 255.0
  return np.asarray(jnp.argmax(model.apply(variables, x, train=False), -1))


# ------------------------------------------------------- 1. eval.robust_subset = N images


def test_robust_accuracy_scores_exactly_the_first_n_images(digits, small_model):
  model, (variables, _) = small_model
  mesh = parallel.make_mesh()
  attack = make_perturbation('linf', 2, True, 'auto')
  hp = {'eps': jnp.float32(0.1), 'step_size': jnp.float32(0.05)}
  # Labels: the model's own clean predictions, so the attack has something to break.
  labels = _clean_predictions(model, variables, digits.x_test).astype(np.int32)
  s = evaluate.make_eval_set(digits.x_test, labels, 64, mesh)
  ev = evaluate.Evaluator(model, attack, 64, mesh)
  n = 100  # two batches of 64 cover it: 28 images of the second must not count

  # Hand computation: the same attack, batch by batch with the same keys, then the first n.
  logits_fn = attack_logits_fn(model, variables, 'eval')
  attack_batch = jax.jit(lambda x, y, k: jnp.argmax(logits_fn(attack(logits_fn, x, y, k, hp)), -1))
  hits = []
  for i in range(2):
    rows = slice(64 * i, 64 * (i + 1))
    x = jnp.asarray(digits.x_test[rows], jnp.float32) / 255.0
    pred = attack_batch(x, jnp.asarray(labels[rows]), jax.random.fold_in(KEY, i))
    hits.append(np.asarray(pred) == labels[rows])
  hits = np.concatenate(hits)
  expected = hits[:n].mean()
  assert expected != hits.mean()  # the test tells n images from the 128 of two batches

  assert ev.robust_accuracy(variables, s, KEY, hp, limit=n) == pytest.approx(expected, abs=1e-12)
  # limit past the set, and 0: every image
  everything = ev.robust_accuracy(variables, s, KEY, hp)
  assert ev.robust_accuracy(variables, s, KEY, hp, limit=10_000) == everything


def test_stacked_robust_accuracy_scores_exactly_the_first_n_images(digits, small_model):
  model, variables = small_model
  stacked = jax.tree.map(lambda *v: jnp.stack(v), *variables)
  runs_mesh = parallel.make_runs_mesh(1)
  # eps 0, no random start: the attack is the identity, so robust = clean predictions.
  attack = make_perturbation('linf', 1, False, 'auto')
  hp = {'eps': jnp.zeros(2, jnp.float32), 'step_size': jnp.zeros(2, jnp.float32)}
  keys = jax.random.split(KEY, 2)
  n, m = 100, 150
  ev = evaluate.Evaluator(model, attack, 64, runs_mesh, stacked=True)
  # Per run: the first n images labelled as run 0 predicts them, the rest wrongly, so
  # exactly n images are right; run 1 sees its own predictions throughout.
  pred = [_clean_predictions(model, v, digits.x_test[:m]) for v in variables]
  wrong = np.where(np.arange(m) < n, pred[0], (pred[0] + 1) % 10)
  sets = evaluate.make_stacked_eval_set([digits.x_test[:m], digits.x_test[:m]],
                                        [wrong.astype(np.int32), pred[1].astype(np.int32)],
                                        64, runs_mesh)
  got = ev.robust_accuracy(stacked, sets, keys, hp, limit=n)
  np.testing.assert_allclose(got, [1.0, 1.0])
  np.testing.assert_allclose(ev.robust_accuracy(stacked, sets, keys, hp), [n / m, 1.0])
  # A shared set, limit 70 (inside the second batch)
  shared = evaluate.make_eval_set(digits.x_test[:m], wrong.astype(np.int32), 64,
                                  runs_mesh)
  got = ev.robust_accuracy(stacked, shared, keys, hp, limit=70)
  np.testing.assert_allclose(got[0], 1.0)
  np.testing.assert_allclose(got[1], np.mean(pred[1][:70] == wrong[:70]))


# ------------------------------------------------------- 2. eval batch clamped to the set


def test_eval_batch_is_clamped_to_a_small_test_set(digits, small_model):
  model, (variables, other) = small_model
  mesh = parallel.make_mesh()
  devices = mesh.shape[parallel.DATA_AXIS]
  n = len(digits.y_test)
  assert n == 360
  big = evaluate.make_eval_set(digits.x_test, digits.y_test, 10_000, mesh)
  assert big.batch_size == math.ceil(n / devices) * devices <= 360 + devices - 1
  assert big.images.shape[0] == big.batch_size == big.labels.shape[0]  # one batch, no more
  small = evaluate.make_eval_set(digits.x_test, digits.y_test, 64, mesh)
  assert small.batch_size == 64 and small.images.shape[0] == 384

  hand = np.mean(_clean_predictions(model, variables, digits.x_test) == digits.y_test)
  ev = evaluate.Evaluator(model, make_perturbation('linf', 1, False, 'auto'), 10_000, mesh)
  assert ev.accuracy(variables, big) == pytest.approx(hand, abs=1e-12)
  assert ev.accuracy(variables, small) == pytest.approx(hand, abs=1e-12)
  targets = evaluate.put_labels(np.zeros(n, np.int32), 10_000, mesh)
  assert targets.shape == big.labels.shape
  assert ev.accuracy(variables, big, targets) == pytest.approx(np.mean(
      _clean_predictions(model, variables, digits.x_test) == 0), abs=1e-12)

  # stacked sets of different sizes: one batch of the larger
  runs_mesh = parallel.make_runs_mesh(1)
  sets = evaluate.make_stacked_eval_set([digits.x_test, digits.x_test[:100]],
                                        [digits.y_test, digits.y_test[:100]], 10_000, runs_mesh)
  assert sets.batch_size == math.ceil(n / devices) * devices
  assert sets.images.shape[1] == sets.batch_size
  assert evaluate.put_stacked_labels([digits.y_test, digits.y_test[:100]], 10_000,
                                     runs_mesh).shape == sets.labels.shape
  stacked = jax.tree.map(lambda *v: jnp.stack(v), variables, other)
  many = evaluate.Evaluator(model, make_perturbation('linf', 1, False, 'auto'), 10_000,
                            runs_mesh, stacked=True)
  got = many.accuracy(stacked, sets)
  assert got[0] == pytest.approx(hand, abs=1e-12)
  assert got[1] == pytest.approx(np.mean(_clean_predictions(model, other, digits.x_test[:100])
                                         == digits.y_test[:100]), abs=1e-12)


# ------------------------------------------------------- 3. all-to-all poison pool


def _poison_config(rate, all_to_all):
  c = config_lib.apply_digits_scale(config_lib.apply_attack_defaults(config_lib.base_config(),
                                                                     'badnets'))
  c.attack.update(poison_rate=rate, all_to_all=all_to_all)
  config_lib.validate(c)
  return c


def test_all_to_all_poisons_from_every_image(digits):
  n = len(digits.y_train)
  assert n == 1437
  c = _poison_config(0.95, True)
  expected = math.floor(0.95 * n)  # counts round down: 1365
  assert poison_core.check_poisoning(c, digits) == expected == 1365
  p = poison_core.poison_dataset(c, digits)
  assert p.is_poisoned.sum() == expected
  y = digits.y_train[p.is_poisoned]
  np.testing.assert_array_equal(p.train.y_train[p.is_poisoned], (y + 1) % 10)
  assert len(np.unique(y)) == 10  # drawn from every class, the target's included

  # dirty-label to one target: only the images outside class 0 may be drawn
  outside = int(np.sum(digits.y_train != 0))
  with pytest.raises(ConfigError) as e:
    poison_core.check_poisoning(_poison_config(0.95, False), digits)
  assert e.value.field == 'attack.poison_rate'
  assert f'asks for {expected} of {n}' in str(e.value) and f'the {outside} images' in str(e.value)
  # a count past the pool is refused all-to-all too
  with pytest.raises(ConfigError) as e:
    select.poison_count(digits.y_train, 0, 'dirty', 1.5, 0.0, all_to_all=True)
  assert e.value.field == 'attack.poison_rate' and f'the {n} images' in str(e.value)


# ------------------------------------------------------- 4. step sizes derived from eps


def test_fgsm_step_defaults_to_one_and_a_quarter_eps():
  from abd_jax.train.loop import perturb_hparams
  c = config_lib.base_config()
  c.perturb.name = 'fgsm'
  assert c.perturb.step_size is None and c.eval.step_size is None
  config_lib.validate(c)
  assert config_lib.resolved_step_size(c.perturb) == pytest.approx(1.25 * 8 / 255)
  assert perturb_hparams(c.perturb)['step_size'] == jnp.float32(1.25 * 8 / 255)
  # the eval block is PGD-10 at 8/255: 2.5 eps / 10 = 2/255, as before
  assert perturb_hparams(c.eval)['step_size'] == jnp.float32(2 / 255)
  # the digits preset keeps the paper's multiple for fgsm: 1.25 * 0.1
  d = config_lib.base_config()
  d.perturb.name = 'fgsm'
  config_lib.apply_digits_scale(d)
  assert perturb_hparams(d.perturb)['step_size'] == jnp.float32(0.125)
  # a set step wins
  c.perturb.step_size = 0.01
  assert perturb_hparams(c.perturb)['step_size'] == jnp.float32(0.01)


def test_pgd_step_defaults_to_two_and_a_half_eps_over_steps():
  c = config_lib.base_config()
  assert c.perturb.name == 'linf'
  assert config_lib.resolved_step_size(c.perturb) == 2 / 255
  c.perturb.update(eps=0.3, steps=5)
  assert config_lib.resolved_step_size(c.perturb) == pytest.approx(2.5 * 0.3 / 5)
  c.perturb.name = 'fgsm_targeted'  # one step from x: eps
  assert config_lib.resolved_step_size(c.perturb) == pytest.approx(0.3)


@pytest.mark.parametrize('field', ['perturb.step_size', 'eval.step_size'])
def test_validation_accepts_an_unset_step_and_checks_a_set_one(field):
  c = config_lib.base_config()
  config_lib.validate(c)
  block, name = field.split('.')
  c[block][name] = -0.5
  with pytest.raises(ConfigError) as e:
    config_lib.validate(c)
  assert e.value.field == field


# ------------------------------------------------------- 5. L2 random start on the sphere


def test_l2_random_start_lies_on_the_eps_sphere():
  x = jnp.full((16, 8, 8, 3), 0.5, jnp.float32)  # far from 0 and 1: clipping never bites
  eps = jnp.float32(0.4)
  norms = lambda a: np.sqrt(np.sum(np.square(np.asarray(a - x, np.float64)), axis=(1, 2, 3)))
  np.testing.assert_allclose(norms(sphere_start(KEY, x, eps)), 0.4, rtol=1e-5)
  # the attack with zero steps returns its start
  hp = {'eps': eps, 'step_size': jnp.float32(0.1)}
  start = pgd_l2(lambda v: v.reshape(v.shape[0], -1)[:, :10], x, jnp.zeros(16, jnp.int32), KEY, hp,
                 steps=0, random_start=True)
  np.testing.assert_allclose(norms(start), 0.4, rtol=1e-5)
  # directions differ between samples
  d = np.asarray(start - x).reshape(16, -1)
  assert np.abs(np.corrcoef(d)[np.triu_indices(16, 1)]).max() < 0.9


# ------------------------------------------------------- 6. a removal factor too large


def test_removal_factor_that_keeps_less_than_a_batch_is_named():
  from abd_jax.defenses.runner import check_removal_keeps_a_batch
  c = config_lib.load_file(os.path.join(REPO, 'configs', 'pipeline.py') + ':digits')
  c.defense.removal_factor = 100.0
  config_lib.validate(c)
  n, batch = 1437, c.train.batch_size
  labels = np.arange(n) % 10
  poisoned = np.zeros(n, bool)
  poisoned[:143] = True  # true rate p = 143 / 1437: removes floor(f * 143)
  with pytest.raises(ConfigError) as e:
    check_removal_keeps_a_batch(c, labels, poisoned)
  assert e.value.field == 'defense.removal_factor' and e.value.value == 100.0
  # kept = 1437 - floor(f * 143) >= 64  <=>  f * 143 < 1374  <=>  f < 9.6084
  assert 'at most 9.6083' in str(e.value) and 'keeps 0' in str(e.value)
  c.defense.removal_factor = 9.6  # removes 1372, keeps 65
  check_removal_keeps_a_batch(c, labels, poisoned)
  c.defense.removal_factor = 9.61  # removes 1374, keeps 63
  with pytest.raises(ConfigError, match='keeps 63'):
    check_removal_keeps_a_batch(c, labels, poisoned)
  assert batch == 64


# ------------------------------------------------------- 7. models too deep for the images


@pytest.mark.parametrize('name', MODEL_NAMES)
@pytest.mark.parametrize('size', [8, 32])
def test_image_size_check_matches_a_forward_pass(name, size):
  channels = 1 if size == 8 else 3
  model = create_model(name, 10, 1 / 16)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(size=(2, size, size, channels)), jnp.float32)
  # Random parameters of the model's shapes (BatchNorm variances 1), run eagerly: compiling
  # init and apply of five models would take minutes on a CPU.
  shapes = jax.eval_shape(functools.partial(model.init, train=False), KEY, x)
  variables = jax.tree_util.tree_map_with_path(
      lambda path, s: (np.ones(s.shape, s.dtype) if jax.tree_util.keystr(path).endswith("['var']")
                       else (0.1 * rng.normal(size=s.shape)).astype(s.dtype)), shapes)
  logits = model.apply(variables, x, train=False)
  works = logits.shape == (2, 10) and bool(jnp.all(jnp.isfinite(logits)))
  if works:
    check_image_size(name, (size, size, channels))
  else:
    with pytest.raises(ConfigError) as e:
      check_image_size(name, (size, size, channels))
    assert e.value.field == 'model.name'
    assert f"images are {size}×{size}" in str(e.value)
  assert works == (name != 'vgg16' or size >= 32)


def test_image_size_check_names_the_smallest_size():
  with pytest.raises(ConfigError, match='vgg16 needs images of at least 32×32'):
    check_image_size('vgg16', (31, 31, 3))
  check_image_size('vgg16', (32, 32, 3))
  with pytest.raises(ConfigError, match='cnn needs images of at least 2×2'):
    check_image_size('cnn', (1, 1))
