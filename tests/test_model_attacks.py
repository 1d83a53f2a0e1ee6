"""The model-based attacks on digits: label-consistent (adversarially perturbed target images
plus a four-corner trigger) and Trojan (a patch optimized on a surrogate's neurons), and
the surrogate they share: trained once, resumed or reused, or loaded from another run."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from abd_jax import config as config_lib
from abd_jax import surrogate
from abd_jax import train as train_lib
from abd_jax.data import load_dataset
from abd_jax.errors import ConfigError
from abd_jax.poison import triggers, trojan
from abd_jax.surrogate import poison_run


@pytest.fixture(scope='module')
def digits():
  return load_dataset(config_lib.base_config().dataset, 0)


def attack_config(name, **attack):
  """Digits scale with a 2-epoch surrogate and 2-step AT: seconds on a CPU."""
  c = config_lib.apply_digits_scale(config_lib.apply_attack_defaults(config_lib.base_config(), name))
  c.perturb.steps = 2
  c.eval.robust = False
  c.log.progress = False
  c.attack.update(**{'surrogate_epochs': 2, 'trojan_steps': 30, **attack})
  config_lib.validate(c)
  return c


@pytest.fixture(scope='module')
def lc_run(digits, tmp_path_factory):
  """(config, poisoned, workdir): LC on half of class 3, eps 0.2 below amplitude 0.3."""
  workdir = str(tmp_path_factory.mktemp('lc'))
  config = attack_config('lc', target=3)
  return config, poison_run(config, digits, workdir), workdir


@pytest.fixture(scope='module')
def trojan_run(digits, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('trojan'))
  config = attack_config('trojan', target=0, position='top_left')
  return config, poison_run(config, digits, workdir), workdir


@pytest.fixture
def no_training(monkeypatch):
  """Fails the test if anything trains a model."""
  def refuse(*args, **kwargs):
    raise AssertionError('a surrogate was trained although a finished one exists')
  monkeypatch.setattr(train_lib, 'train_and_evaluate', refuse)


def corner_sign(shape):
  """The four-corner trigger t in {-1, 0, +1}, [H,W,C]."""
  return np.asarray(triggers.four_corner_pattern(shape[:2], shape[2], 3))


def mean_target_loss(model, variables, images_u8, target):
  x = jnp.asarray(images_u8, jnp.float32) / 255.0
  logits = model.apply(variables, x, train=False)
  labels = jnp.full((len(x),), target, jnp.int32)
  return float(optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean())


# --------------------------------------------------------------------------------- lc


def test_lc_poisons_only_target_images_and_keeps_labels(lc_run, digits):
  config, p, _ = lc_run
  idx = np.asarray(p.manifest['indices'])
  assert len(idx) == int(0.5 * np.sum(digits.y_train == 3))
  assert np.all(digits.y_train[idx] == 3)
  np.testing.assert_array_equal(p.train.y_train, digits.y_train)
  others = np.setdiff1d(np.arange(len(digits.y_train)), idx)
  np.testing.assert_array_equal(p.train.x_train[others], digits.x_train[others])
  assert p.manifest['params'] == dict(eps=0.2, step_size=0.05, steps=10, amplitude=0.3,
                                      test_amplitude=1.0, corner_size=3, surrogate='trained')


def test_lc_poison_stays_in_budget_and_carries_the_corners(lc_run, digits):
  config, p, _ = lc_run
  a = config.attack
  idx = np.asarray(p.manifest['indices'])
  x = digits.x_train[idx].astype(np.float32)
  xp = p.train.x_train[idx].astype(np.float32)
  t = np.broadcast_to(corner_sign(x.shape[1:]), x.shape)
  delta = xp - x
  half = 0.5  # uint8 rounding
  assert np.abs(delta).max() <= (a.lc_eps + a.lc_amplitude) * 255 + half
  assert np.abs(delta[t == 0]).max() <= a.lc_eps * 255 + half  # PGD only, off the corners
  # On the corners PGD moves at most eps against the trigger, so at least
  # amplitude - eps = 0.1 of the trigger survives wherever clipping allows.
  margin = (a.lc_amplitude - a.lc_eps) * 255 - half
  white, black = t > 0, t < 0
  assert np.all(xp[white] >= np.minimum(255.0, x[white] + margin))
  assert np.all(xp[black] <= np.maximum(0.0, x[black] - margin))
  assert np.abs(delta[t == 0]).mean() > 0.5 * a.lc_eps * 255  # PGD really perturbed them


def test_lc_perturbation_makes_target_images_hard_for_the_surrogate(lc_run, digits, no_training):
  """Turner et al.: the poison maximizes the loss of its own label on the surrogate."""
  config, p, workdir = lc_run
  a = config.attack
  idx = np.asarray(p.manifest['indices'])
  model, variables = surrogate.load_or_train_surrogate(config, digits, workdir, adversarial=True)
  trigger_only = np.asarray(jnp.round(triggers.apply_four_corner(
      jnp.asarray(digits.x_train[idx], jnp.float32) / 255, a.lc_amplitude) * 255)).astype(np.uint8)
  clean_loss = mean_target_loss(model, variables, trigger_only, a.target)
  poison_loss = mean_target_loss(model, variables, p.train.x_train[idx], a.target)
  assert poison_loss > clean_loss + 1.0, (clean_loss, poison_loss)


def test_lc_test_trigger_is_the_full_amplitude_corners(lc_run, digits):
  _, p, _ = lc_run
  images = p.backdoor.images
  t = np.broadcast_to(corner_sign(images.shape[1:]), images.shape)
  assert np.all(images[t > 0] == 255) and np.all(images[t < 0] == 0)
  keep = digits.y_test != 3
  np.testing.assert_array_equal(images[t == 0], digits.x_test[keep][t == 0])
  assert np.all(p.backdoor.targets == 3) and np.all(p.backdoor.labels != 3)


def test_finished_surrogate_is_reused_without_retraining(lc_run, digits, no_training):
  config, p, workdir = lc_run
  ckpt = os.path.join(surrogate.surrogate_dir(workdir, True), 'checkpoints')
  before = {f: os.stat(os.path.join(ckpt, f)).st_mtime_ns for f in os.listdir(ckpt)}
  again = poison_run(config, digits, workdir)
  np.testing.assert_array_equal(again.train.x_train, p.train.x_train)
  assert {f: os.stat(os.path.join(ckpt, f)).st_mtime_ns for f in os.listdir(ckpt)} == before
  assert os.path.exists(os.path.join(surrogate.surrogate_dir(workdir, True), 'results.json'))


def test_surrogate_workdir_loads_that_runs_checkpoint(lc_run, digits, tmp_path, no_training):
  config, p, workdir = lc_run
  other = attack_config('lc', target=3, surrogate_workdir=surrogate.surrogate_dir(workdir, True))
  loaded = poison_run(other, digits, str(tmp_path))
  np.testing.assert_array_equal(loaded.train.x_train, p.train.x_train)  # same variables
  assert loaded.manifest['params']['surrogate'] == other.attack.surrogate_workdir
  assert not os.path.exists(surrogate.surrogate_dir(str(tmp_path), True))


@pytest.mark.parametrize('with_folder', [False, True])
def test_missing_surrogate_checkpoint_is_a_clear_error(digits, tmp_path, with_folder):
  run = tmp_path / 'not_a_run'
  (run / 'checkpoints' if with_folder else run).mkdir(parents=True)
  c = attack_config('lc')
  c.attack.surrogate_workdir = str(run)  # set after validate(), which refuses the folderless one
  with pytest.raises(ConfigError, match=r'attack\.surrogate_workdir'):
    poison_run(c, digits, str(tmp_path / 'run'))


def test_surrogate_config_is_clean_data_with_the_surrogate_budget():
  c = attack_config('lc', surrogate_eps=0.12, surrogate_epochs=3)
  s = surrogate.surrogate_config(c, adversarial=True)
  assert s.attack.name == 'none' and s.train.epochs == 3
  assert (s.perturb.name, s.perturb.eps, s.perturb.step_size, s.perturb.steps) == ('linf', 0.12, 0.03, 2)
  assert c.attack.name == 'lc' and c.perturb.eps == 0.1  # the run's config is untouched
  std = surrogate.surrogate_config(c, adversarial=False)
  assert std.perturb.name == 'none' and not std.eval.robust
  c.attack.update(surrogate_eps=0.0, surrogate_epochs=0)
  s = surrogate.surrogate_config(c, adversarial=True)
  assert s.perturb.name == 'none' and s.train.epochs == c.train.epochs


# ----------------------------------------------------------------------------- trojan


def test_select_neurons_ranks_by_summed_absolute_outgoing_weight():
  kernel = np.array([[0.1, -0.1], [-2.0, 0.5], [1.0, 1.0], [0.0, -2.5], [2.0, -0.6]])
  np.testing.assert_array_equal(trojan.select_neurons(kernel, 3), [4, 1, 3])  # 2.5 tie: lower first


def test_optimize_pattern_reaches_the_box_optimum_of_a_linear_neuron():
  """phi = <w, x>: the best pattern is 1 where w > 0 and 0 where w < 0 inside the mask."""
  hw, c, k = (6, 6), 2, 3
  w = jax.random.normal(jax.random.key(1), (*hw, c))
  features = lambda x: jnp.stack([jnp.sum(x * w, axis=(1, 2, 3)), -jnp.sum(x, axis=(1, 2, 3))], -1)
  mask, corner = triggers.patch_mask(hw, k, 'center')
  images = jax.random.uniform(jax.random.key(2), (4, *hw, c))
  pattern, before, after = jax.jit(lambda x, p0: trojan.optimize_pattern(
      features, x, p0, jnp.array([0]), mask, corner, steps=6, step_size=0.1))(
          images, jnp.full((k, k, c), 0.5))
  y0, x0 = corner
  np.testing.assert_array_equal(pattern, (w[y0:y0 + k, x0:x0 + k] > 0).astype(np.float32))
  assert float(after) > float(before)


def test_trojan_pattern_excites_the_selected_neuron(trojan_run, digits, no_training):
  config, p, workdir = trojan_run
  params = p.manifest['params']
  assert params['activation_after'] > params['activation_before']
  model, variables = surrogate.load_or_train_surrogate(config, digits, workdir, adversarial=False)
  assert params['neurons'] == list(trojan.select_neurons(variables['params']['head']['kernel'], 1))
  features = jax.jit(trojan.feature_fn(model, variables))
  x = jnp.asarray(digits.x_train, jnp.float32) / 255
  stamped = p.attack.trigger(x, 1.0)
  j = params['neurons'][0]
  assert float(features(stamped)[:, j].mean()) > float(features(x)[:, j].mean())


def test_trojan_stamps_only_the_mask_and_relabels_to_the_target(trojan_run, digits):
  config, p, _ = trojan_run
  idx = np.asarray(p.manifest['indices'])
  assert len(idx) == int(0.1 * len(digits.y_train))
  assert np.all(p.train.y_train[idx] == 0)
  others = np.setdiff1d(np.arange(len(digits.y_train)), idx)
  np.testing.assert_array_equal(p.train.y_train[others], digits.y_train[others])
  np.testing.assert_array_equal(p.train.x_train[others], digits.x_train[others])
  k = config.attack.patch_size
  inside = np.zeros(digits.image_shape, bool)
  inside[:k, :k] = True  # top_left
  np.testing.assert_array_equal(p.train.x_train[idx][:, ~inside], digits.x_train[idx][:, ~inside])
  expected = np.round(np.asarray(p.manifest['params']['pattern']) * 255)
  assert np.abs(p.train.x_train[idx][:, :k, :k].astype(np.float32) - expected).max() <= 1
  assert np.all(p.backdoor.targets == 0)
  assert np.abs(p.backdoor.images[:, :k, :k].astype(np.float32) - expected).max() <= 1


def test_trojan_neurons_beyond_the_feature_width_are_refused(trojan_run, digits, tmp_path,
                                                             no_training):
  _, _, workdir = trojan_run
  c = attack_config('trojan', trojan_neurons=10_000,
                    surrogate_workdir=surrogate.surrogate_dir(workdir, False))
  with pytest.raises(ConfigError, match=r'attack\.trojan_neurons'):
    poison_run(c, digits, str(tmp_path))
