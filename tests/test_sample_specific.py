"""The sample-specific attacks (IAB, SSBA): their networks and losses, the generator runs
(deterministic, resumable, reusable), poisoning with them, and end-to-end runs on digits."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from abd_jax import config as config_lib
from abd_jax import experiment, generators, interrupt, poison, surrogate
from abd_jax.data import load_dataset
from abd_jax.errors import ConfigError
from abd_jax.generators import iab as iab_train
from abd_jax.generators import runner
from abd_jax.generators import ssba as ssba_train
from abd_jax.models import trigger_nets
from abd_jax.poison import TrainedGenerator
from cli import load_config as load


def tiny(attack, **overrides):
  """A seconds-long generator of `attack` on digits: narrow networks, one or two epochs."""
  small = dict(attack__generator_width=4, attack__generator_epochs=2)
  if attack == 'iab':
    small.update(attack__iab_mask_epochs=1)
  else:
    small.update(attack__ssba_bits=4)
  return load(f'configs/{attack}.py:digits', perturb__name='none', **{**small, **overrides})


@pytest.fixture(scope='module')
def digits():
  return load_dataset(load('configs/iab.py:digits').dataset, 0)


def random_generator(attack, image_shape, cfg):
  """A TrainedGenerator with freshly initialized networks (untrained)."""
  nets = (iab_train if attack == 'iab' else ssba_train).networks(cfg, image_shape)
  x = jnp.zeros((1, *image_shape))
  variables = {}
  for i, (name, net) in enumerate(nets.items()):
    args = (x, jnp.zeros((1, cfg.ssba_bits))) if name == 'encoder' else (x,)
    variables[name] = net.init(jax.random.key(i), *args)
  return TrainedGenerator(modules=nets, variables=variables, results={}, attack=cfg.to_dict(),
                          source='test')


# ---------------------------------------------------------------------------- networks


@pytest.mark.parametrize('hw, depth', [((8, 8), 2), ((32, 32), 3), ((28, 28), 2), ((64, 64), 3),
                                       ((6, 6), 1), ((4, 4), 1), ((5, 5), 0), ((8, 6), 1)])
def test_generator_depth_halves_evenly_and_keeps_2x2(hw, depth):
  assert trigger_nets.generator_depth(*hw, 3) == depth


def test_iab_pattern_mask_and_stamp_follow_the_original_formulas():
  raw = jnp.linspace(-2, 2, 9)
  np.testing.assert_allclose(trigger_nets.iab_pattern(raw), np.tanh(raw) / (2 + 1e-7) + 0.5,
                             rtol=1e-6)
  mask = trigger_nets.iab_mask(raw)
  np.testing.assert_allclose(mask, np.tanh(20 * raw - 10) / (2 + 1e-7) + 0.5, rtol=1e-5,
                             atol=1e-6)
  assert float(mask[0]) < 1e-6 and float(mask[-1]) > 1 - 1e-6  # near-binary
  rng = np.random.default_rng(0)
  x, p = rng.uniform(size=(2, 4, 4, 3)), rng.uniform(size=(2, 4, 4, 3))
  m = rng.uniform(size=(2, 4, 4, 1))
  np.testing.assert_allclose(trigger_nets.iab_stamp(x, p, m, 0.5), x + 0.5 * (p - x) * m,
                             rtol=1e-6)


def test_diversity_loss_matches_its_formula_and_survives_identical_pairs():
  rng = np.random.default_rng(1)
  x1, x2 = rng.uniform(size=(3, 2, 2, 1)), rng.uniform(size=(3, 2, 2, 1))
  o1, o2 = rng.uniform(size=(3, 2, 2, 1)), rng.uniform(size=(3, 2, 2, 1))
  d = lambda a, b: np.sqrt(np.mean((a - b) ** 2, axis=(1, 2, 3)))
  expected = np.mean(d(x1, x2) / (d(o1, o2) + 1e-7))
  assert float(iab_train.diversity_loss(x1, x2, o1, o2)) == pytest.approx(expected, rel=1e-4)
  # The same image drawn in both batches: finite loss and gradient.
  same = jnp.asarray(x1)
  grad = jax.grad(lambda o: iab_train.diversity_loss(same, same, o, o))(jnp.asarray(o1))
  assert np.all(np.isfinite(grad))


def test_ssba_quantize_rounds_to_8_bits_with_the_identity_gradient():
  x = jnp.asarray([0.1, 0.5004, 0.9999])
  np.testing.assert_allclose(ssba_train.quantize(x), np.round(np.asarray(x) * 255) / 255, atol=1e-7)
  np.testing.assert_allclose(jax.grad(lambda v: ssba_train.quantize(v).sum())(x), 1.0)


def test_psnr_and_bit_accuracy():
  x = jnp.zeros((2, 2, 2, 1))
  assert float(ssba_train.psnr(x, x + 0.1)[0]) == pytest.approx(20.0, abs=1e-4)
  assert float(ssba_train.psnr(x, x)[0]) == 100.0
  logits = jnp.asarray([[2.0, -1.0, 0.5, -3.0]])
  assert float(ssba_train.bit_accuracy(logits, jnp.asarray([[1, 0, 0, 0]]))) == 0.75


@pytest.mark.parametrize('attack', ['iab', 'ssba'])
def test_two_images_get_different_triggers(attack, digits):
  cfg = load(f'configs/{attack}.py:digits').attack
  ctx = poison.AttackContext(generator=random_generator(attack, digits.image_shape, cfg))
  built = poison.BUILDERS[attack](cfg, digits, jax.random.key(0), ctx)
  x = jnp.asarray(digits.x_train[:2], jnp.float32) / 255.0
  trigger = jax.jit(built.trigger)
  residual = np.asarray(trigger(x, 1.0) - x)
  assert np.abs(residual).max() > 1e-3
  assert np.abs(residual[0] - residual[1]).max() > 1e-3  # not one fixed pattern
  # Each image's trigger depends on that image only: alone or in a batch, the same.
  alone = np.asarray(trigger(x[:1], 1.0) - x[:1])
  np.testing.assert_allclose(alone[0], residual[0], atol=1e-5)
  if attack == 'ssba':  # the stored residual stays within the bound (tanh, then 8-bit clip)
    assert np.abs(residual).max() <= cfg.ssba_max_residual + 1e-6


# ------------------------------------------------------------------------ configuration


@pytest.mark.parametrize('overrides, field', [
    (dict(attack__label_mode='clean', attack__poison_rate=0.0, attack__target_class_rate=0.5),
     'attack.label_mode'),
    (dict(attack__iab_attack_rate=0.5, attack__iab_cross_rate=0.5), 'attack.iab_cross_rate'),
    (dict(attack__iab_attack_rate=0.01), 'attack.iab_attack_rate'),  # < 1 image of 64
    (dict(attack__generator_epochs=0), 'attack.generator_epochs'),
    (dict(attack__iab_mask_density=0.0), 'attack.iab_mask_density'),
    (dict(attack__generator_workdir='/no/such/folder'), 'attack.generator_workdir'),
])
def test_bad_iab_fields_name_the_field(overrides, field):
  with pytest.raises(ConfigError, match=field.replace('.', r'\.')):
    load('configs/iab.py:digits', **overrides)


@pytest.mark.parametrize('overrides, field', [
    (dict(attack__ssba_bits=0), 'attack.ssba_bits'),
    (dict(attack__ssba_max_residual=0.0), 'attack.ssba_max_residual'),
    (dict(attack__ssba_ramp_fraction=1.5), 'attack.ssba_ramp_fraction'),
])
def test_bad_ssba_fields_name_the_field(overrides, field):
  with pytest.raises(ConfigError, match=field.replace('.', r'\.')):
    load('configs/ssba.py:digits', **overrides)


def test_images_too_small_for_the_generator_are_refused_before_training(digits):
  import dataclasses
  odd = dataclasses.replace(digits, x_train=digits.x_train[:, :5, :5],
                            x_test=digits.x_test[:, :5, :5])
  with pytest.raises(ConfigError, match='dataset.image_size'):
    poison.check_poisoning(load('configs/ssba.py:digits'), odd)


def test_generator_config_keeps_only_what_shapes_the_generator():
  base = generators.generator_config(load('configs/iab.py:digits'))
  same = generators.generator_config(load(
      'configs/iab.py:digits', attack__poison_rate=0.05, train__lr=0.01, train__epochs=3,
      perturb__name='linf', defense__name='pgd_steps', attack__iab_cross_ratio=0.5))
  assert config_lib.to_dict(base) == config_lib.to_dict(same)
  other = generators.generator_config(load('configs/iab.py:digits', attack__generator_width=8))
  assert config_lib.to_dict(other) != config_lib.to_dict(base)
  assert base.train.epochs == 10 + 30 and base.perturb.name == 'none'
  config_lib.validate(base)
  # SSBA's encoder never sees the classifier: another model reuses it.
  ssba = [generators.generator_config(load('configs/ssba.py:digits', model__name=name))
          for name in ('cnn', 'resnet18')]
  assert config_lib.to_dict(ssba[0]) == config_lib.to_dict(ssba[1])


# ---------------------------------------------------------------------- generator runs


def _variables(tree):
  return [np.asarray(v) for v in jax.tree.leaves(tree)]


@pytest.fixture(scope='module')
def ssba_run(tmp_path_factory, digits):
  """(workdir, config, generator, poisoning) of a tiny SSBA generator trained once."""
  workdir = str(tmp_path_factory.mktemp('ssba'))
  config = tiny('ssba', attack__generator_epochs=3)
  poisoned = surrogate.poison_run(config, digits, workdir)
  generator = generators.load_or_train_generator(config, digits, workdir)  # reused
  return workdir, config, generator, poisoned


@pytest.mark.slow  # trains a trigger generator (ssba_run)
def test_generator_run_is_deterministic_and_resumes_exactly(tmp_path, digits, monkeypatch,
                                                            ssba_run):
  """A second run of the same config, interrupted after its first epoch and run again,
  ends with the same networks and metrics as the first, uninterrupted one."""
  workdir, config, first, _ = ssba_run
  assert first.source == 'trained'
  run_dir = os.path.join(workdir, 'generator_ssba')
  assert {'config.json', 'metrics.jsonl', 'checkpoints', 'results.json'} <= set(os.listdir(run_dir))
  assert json.load(open(os.path.join(run_dir, 'results.json')))['epochs'] == 3
  assert len(open(os.path.join(run_dir, 'metrics.jsonl')).read().splitlines()) == 3

  calls = {'n': 0}
  real_check = interrupt.check

  def interrupted_after_first_epoch():
    calls['n'] += 1
    if calls['n'] == 2:
      raise KeyboardInterrupt('SIGINT')
    real_check()

  monkeypatch.setattr(runner.interrupt, 'check', interrupted_after_first_epoch)
  with pytest.raises(KeyboardInterrupt):
    generators.load_or_train_generator(config, digits, str(tmp_path))
  assert not os.path.exists(tmp_path / 'generator_ssba' / 'results.json')
  assert os.listdir(tmp_path / 'generator_ssba' / 'checkpoints') == ['1']
  monkeypatch.setattr(runner.interrupt, 'check', real_check)
  resumed = generators.load_or_train_generator(config, digits, str(tmp_path))
  for a, b in zip(_variables(first.variables), _variables(resumed.variables)):
    np.testing.assert_array_equal(a, b)
  assert (open(os.path.join(run_dir, 'metrics.jsonl')).read()
          == open(tmp_path / 'generator_ssba' / 'metrics.jsonl').read())


def test_iab_poisoning_rates_labels_manifest_and_cross_mode(digits):
  """Poisoning with an IAB generator (untrained here: the rates, labels and manifest do
  not depend on its training; the generator runs are tested above and end to end)."""
  config = load('configs/iab.py:digits', attack__iab_cross_ratio=0.5)
  generator = random_generator('iab', digits.image_shape, config.attack)
  poisoned = poison.poison_dataset(config, digits, poison.AttackContext(generator=generator))
  m = poisoned.manifest
  idx = np.asarray(m['indices'])
  assert m['attack'] == 'iab' and m['num_poisoned'] == len(idx) == int(0.1 * len(digits.y_train))
  assert np.all(digits.y_train[idx] != 0) and np.all(poisoned.train.y_train[idx] == 0)
  assert np.all(poisoned.is_poisoned[idx]) and poisoned.is_poisoned.sum() == len(idx)
  changed = np.any(poisoned.train.x_train != digits.x_train, axis=(1, 2, 3))
  assert set(np.flatnonzero(changed)) <= set(poisoned.modified.tolist())
  cross = np.asarray(m['cross_indices'])
  assert len(cross) == round(0.5 * len(idx)) and not set(cross) & set(idx)
  np.testing.assert_array_equal(poisoned.train.y_train[cross], digits.y_train[cross])
  untouched = np.setdiff1d(np.arange(len(digits.y_train)), poisoned.modified)
  np.testing.assert_array_equal(poisoned.train.x_train[untouched], digits.x_train[untouched])
  p = m['params']
  assert p['generator'] == 'test' and 0 <= p['measured_mask_density'] <= 1
  assert p['cross_ratio'] == 0.5 and p['mask_density'] == config.attack.iab_mask_density
  # The triggered test set: every non-target test image, with its own trigger.
  keep = digits.y_test != 0
  assert len(poisoned.backdoor.labels) == keep.sum() and np.all(poisoned.backdoor.targets == 0)


@pytest.mark.slow  # trains a trigger generator (ssba_run)
def test_a_trained_generator_is_reused_and_read_from_generator_workdir(tmp_path, digits,
                                                                       ssba_run):
  workdir, config, _, first = ssba_run
  results = os.path.join(workdir, 'generator_ssba', 'results.json')
  stamp = os.path.getmtime(results)
  again = surrogate.poison_run(config, digits, workdir)  # reused, not retrained
  assert os.path.getmtime(results) == stamp
  np.testing.assert_array_equal(first.train.x_train, again.train.x_train)
  assert first.manifest['params']['bits'] == again.manifest['params']['bits']

  reuse = config.copy_and_resolve_references()
  reuse.attack.generator_workdir = workdir
  reuse.attack.ssba_bits = 50  # refused: the run would record bits it does not use
  with pytest.raises(ConfigError, match='attack.ssba_bits.*trained with ssba_bits = 4'):
    surrogate.poison_run(reuse, digits, str(tmp_path / 'two'))
  reuse.attack.ssba_bits = config.attack.ssba_bits
  other = surrogate.poison_run(reuse, digits, str(tmp_path / 'two'))
  assert not os.path.exists(tmp_path / 'two' / 'generator_ssba')
  assert other.manifest['params']['generator'] == os.path.join(workdir, 'generator_ssba')
  assert other.manifest['params']['num_bits'] == config.attack.ssba_bits
  np.testing.assert_array_equal(first.train.x_train, other.train.x_train)

  reuse.attack.generator_workdir = os.path.join(workdir, 'generator_ssba')  # the folder itself
  direct = surrogate.poison_run(reuse, digits, str(tmp_path / 'four'))
  np.testing.assert_array_equal(first.train.x_train, direct.train.x_train)

  wrong = tiny('iab', attack__generator_workdir=workdir)
  with pytest.raises(ConfigError, match='no finished iab generator'):
    surrogate.poison_run(wrong, digits, str(tmp_path / 'three'))


# ------------------------------------------------------------------------ end to end


def _finished_generator(workdir, attack):
  return json.load(open(os.path.join(workdir, f'generator_{attack}', 'results.json')))


@pytest.mark.slow
@pytest.mark.parametrize('attack', ['iab', 'ssba'])
def test_digits_standard_training_learns_the_backdoor_and_aabl_runs_against_it(attack, tmp_path):
  """configs/<attack>.py:digits with standard training: ASR >= 0.9 at clean accuracy
  >= 0.9; SSBA's decoder reads >= 95% of the bits of clean test images and its stored
  residual stays within the bound. Then A-ABL runs end to end against the same poison
  (its generator read from the first run, short stages)."""
  workdir = str(tmp_path / attack)
  config = load(f'configs/{attack}.py:digits', perturb__name='none', eval__robust=False)
  results = experiment.run(config, workdir, verbose=False)
  assert results['asr'] >= 0.9 and results['clean_acc'] >= 0.9, results
  manifest = poison.read_manifest(workdir)
  if attack == 'ssba':
    trained = _finished_generator(workdir, 'ssba')
    assert trained['bit_acc_random'] >= 0.95, trained
    p = manifest['params']
    assert p['bit_acc'] >= 0.95 and p['linf'] <= config.attack.ssba_max_residual + 1e-6, p
  else:
    trained = _finished_generator(workdir, 'iab')
    assert trained['epochs'] == config.attack.iab_mask_epochs + config.attack.generator_epochs
    p = manifest['params']
    assert p['measured_mask_density'] > 0 and p['generator'] == 'trained'
    assert p['generator_classifier_clean_acc'] == trained['classifier_clean_acc']
  assert manifest['num_poisoned'] == int(0.1 * manifest['num_train'])

  defended = load(f'configs/aabl.py:{attack},digits', attack__generator_workdir=workdir,
                  train__epochs=2, defense__detector_epochs=2, eval__robust_subset=50)
  out = experiment.run(defended, str(tmp_path / 'aabl'), verbose=False)
  for key in ('clean_acc', 'asr', 'robust_acc', 'backdoor_acc'):
    assert 0 <= out[key] <= 1
  assert not os.path.exists(tmp_path / 'aabl' / f'generator_{attack}')
