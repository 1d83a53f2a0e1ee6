"""Gao et al.'s comparison defenses, unit by unit: fine-pruning (ranking, masks, the pruned
head), NAD's attention maps and distillation loss, DP-SGD's per-example clipping and noise
(optimizer and fused step), ABL's isolation and local gradient ascent, the defender's clean
reserve, and their config checks. No training runs."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from abd_jax import config as config_lib
from abd_jax import parallel
from abd_jax.defenses import abl, pruning
from abd_jax.defenses.finetuning import clean_reserve
from abd_jax.errors import ConfigError
from abd_jax.models import create_model
from abd_jax.perturb import make_perturbation
from abd_jax.train import objective
from abd_jax.train.optim import DPSettings, make_optimizer
from abd_jax.train.state import create_train_state
from abd_jax.train.step import make_train_step, zero_metrics
from cli import REPO

ce = optax.softmax_cross_entropy_with_integer_labels


@functools.lru_cache(maxsize=None)
def tiny_model(norm='batch', width=0.25):
  """(model, variables) of the digits CNN on 8x8x1 inputs, initialized with key 0. Cached:
  the first initialization of a model compiles its initializers, which takes seconds."""
  model = create_model('cnn', 10, width=width, norm=norm)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False)
  return model, variables


def random_images(n, seed=0):
  """(uint8 images [n,8,8,1], int32 labels [n])."""
  rng = np.random.default_rng(seed)
  return (rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8),
          rng.integers(0, 10, n).astype(np.int32))


def pooled_features(model, variables, x):
  """(logits, pooled features [B,C], last stage [B,H,W,C]) in inference mode."""
  logits, state = model.apply(variables, x, train=False, mutable=['intermediates'])
  inter = state['intermediates']
  return np.asarray(logits), np.asarray(inter['features'][0]), np.asarray(inter['stages'][-1])


def fast_jit(fn, **kwargs):
  """jax.jit without XLA's backend optimizations: DP-SGD's noise (a normal draw per leaf)
  takes ~10 s to compile optimized on a busy 2-core machine, ~1 s like this."""
  return jax.jit(fn, compiler_options={'xla_backend_optimization_level': 0}, **kwargs)


def sgd_train_cfg(lr=1.0):
  cfg = config_lib.base_config().train
  cfg.update(optimizer='sgd', lr=lr, momentum=0.0, weight_decay=0.0, milestones=())
  return cfg


def numpy_clip_mean(grads, clip):
  """grads: list of per-example pytrees (dicts of numpy arrays) -> mean of the clipped ones."""
  out = {k: np.zeros_like(np.asarray(v), np.float64) for k, v in grads[0].items()}
  for g in grads:
    norm = np.sqrt(sum(np.sum(np.asarray(v, np.float64) ** 2) for v in g.values()))
    scale = min(1.0, clip / norm)
    for k in out:
      out[k] += np.asarray(g[k], np.float64) * scale / len(grads)
  return out


# ------------------------------------------------------------------------ fine-pruning


def test_prune_order_sorts_by_increasing_activation_with_stable_ties():
  acts = np.array([0.5, 0.1, 0.3, 0.1, 0.0, 0.3])
  np.testing.assert_array_equal(pruning.prune_order(acts), [4, 1, 3, 2, 5, 0])
  np.testing.assert_array_equal(pruning.prune_order(np.zeros(4)), [0, 1, 2, 3])


def test_pruned_count_is_floor_of_ratio_times_channels_but_never_all():
  assert pruning.pruned_count(0.5, 32) == 16
  assert pruning.pruned_count(0.29, 100) == 29  # 0.29 * 100 = 28.999999999999996
  assert pruning.pruned_count(0.33, 10) == 3
  assert pruning.pruned_count(0.0, 10) == 0
  assert pruning.pruned_count(0.95, 10) == 9
  assert pruning.pruned_count(0.99, 10) == 9
  assert pruning.pruned_count(1.0, 10) == 9  # one channel always stays
  assert pruning.pruned_count(0.5, 1) == 0


def test_keep_mask_zeroes_the_first_pruned_count_channels_of_the_order():
  order = np.array([4, 1, 3, 2, 5, 0])
  keep = pruning.keep_mask(order, 0.5)
  assert keep.dtype == np.float32
  np.testing.assert_array_equal(keep, [1, 0, 1, 0, 0, 1])
  np.testing.assert_array_equal(pruning.keep_mask(order, 0.0), np.ones(6))
  np.testing.assert_array_equal(pruning.keep_mask(order, 1.0), [1, 0, 0, 0, 0, 0])  # channel 0 is last


def test_pruned_head_equals_masked_features_and_masked_last_stage():
  model, variables = tiny_model()
  images, _ = random_images(6)
  x = jnp.asarray(images, jnp.float32) / 255.0
  logits, feats, stage = pooled_features(model, variables, x)
  head = jax.tree.map(np.asarray, variables['params']['head'])
  channels = feats.shape[1]
  assert channels == 32 and stage.shape == (6, 8 // 2, 8 // 2, channels)
  np.testing.assert_allclose(stage.mean(axis=(1, 2)), feats, rtol=1e-5, atol=1e-6)

  keep = pruning.keep_mask(pruning.prune_order(feats.mean(axis=0)), 0.5)
  assert keep.sum() == 16
  pruned_vars = {**variables, 'params': objective.prune_head(variables['params'], jnp.asarray(keep))}
  pruned = np.asarray(model.apply(pruned_vars, x, train=False))

  by_hand = (feats.astype(np.float64) * keep) @ head['kernel'] + head['bias']
  np.testing.assert_allclose(pruned, by_hand, rtol=1e-4, atol=1e-5)
  masked_stage = (stage.astype(np.float64) * keep).mean(axis=(1, 2)) @ head['kernel'] + head['bias']
  np.testing.assert_allclose(pruned, masked_stage, rtol=1e-4, atol=1e-5)
  assert np.abs(pruned - logits).max() > 1e-3  # the pruned channels did carry signal
  # Only the head's kernel changed; the original params are untouched.
  np.testing.assert_array_equal(pruned_vars['params']['head']['bias'], head['bias'])
  np.testing.assert_array_equal(variables['params']['head']['kernel'], head['kernel'])
  for name in variables['params']:
    if name != 'head':
      assert pruned_vars['params'][name] is variables['params'][name]


def test_channel_activations_are_the_mean_pooled_features():
  model, variables = tiny_model()
  images, labels = random_images(10, seed=1)
  acts = pruning.channel_activations(model, variables, images, labels, 4, parallel.make_mesh())
  assert acts.dtype == np.float64 and acts.shape == (32,)
  _, feats, _ = pooled_features(model, variables, jnp.asarray(images, jnp.float32) / 255.0)
  np.testing.assert_allclose(acts, feats.astype(np.float64).mean(axis=0), rtol=1e-5, atol=1e-6)


def test_closest_ratio_picks_the_nearest_accuracy_and_the_smaller_ratio_on_ties():
  assert pruning.closest_ratio({0.1: 0.9, 0.2: 0.8, 0.3: 0.7}, 0.79) == 0.2
  assert pruning.closest_ratio({0.1: 0.9, 0.2: 0.8, 0.3: 0.7}, 0.0) == 0.3
  # Exact ties (binary fractions): the smaller ratio, whatever the dict's order.
  assert pruning.closest_ratio({0.3: 0.75, 0.1: 0.25, 0.2: 0.0}, 0.5) == 0.1
  assert pruning.closest_ratio({0.4: 0.6, 0.2: 0.6}, 0.6) == 0.2


# ------------------------------------------------------------------------ NAD


def numpy_attention(f, p=2.0):
  a = np.sum(np.abs(np.asarray(f, np.float64)) ** p, axis=-1)
  return a / (np.sqrt(np.sum(a ** 2, axis=(1, 2), keepdims=True)) + 1e-6)


def test_attention_map_matches_numpy():
  f = np.random.default_rng(0).normal(size=(2, 3, 3, 4)).astype(np.float32)
  for p in (2.0, 1.0, 3.0):
    a = np.asarray(objective.attention_map(jnp.asarray(f), p))
    assert a.shape == (2, 3, 3) and a.dtype == np.float32
    np.testing.assert_allclose(a, numpy_attention(f, p), rtol=1e-5, atol=1e-7)
  # unit L2 norm over H x W for each example
  np.testing.assert_allclose(np.sqrt((numpy_attention(f) ** 2).sum(axis=(1, 2))), 1.0, atol=1e-5)


def test_attention_distillation_is_the_weighted_sum_of_map_mses():
  rng = np.random.default_rng(1)
  shapes = [(2, 6, 6, 3), (2, 4, 4, 5), (2, 2, 2, 7)]
  student = tuple(rng.normal(size=s).astype(np.float32) for s in shapes)
  teacher = tuple(rng.normal(size=s).astype(np.float32) for s in shapes)
  betas = np.array([0.5, 2.0, 7.0], np.float32)
  expected = sum(b * np.mean((numpy_attention(s) - numpy_attention(t)) ** 2)
                 for b, s, t in zip(betas, student, teacher))
  got = objective.attention_distillation(tuple(map(jnp.asarray, student)),
                                         tuple(map(jnp.asarray, teacher)), jnp.asarray(betas))
  np.testing.assert_allclose(float(got), expected, rtol=1e-5)
  assert expected > 0

  # Four stages, two weights: only the last two stages count.
  extra_s = rng.normal(size=(2, 8, 8, 2)).astype(np.float32)
  extra_t = rng.normal(size=(2, 8, 8, 2)).astype(np.float32)
  four_s, four_t = (extra_s, *student), (extra_t, *teacher)
  betas2 = np.array([3.0, 5.0], np.float32)
  expected2 = sum(b * np.mean((numpy_attention(s) - numpy_attention(t)) ** 2)
                  for b, s, t in zip(betas2, student[1:], teacher[1:]))
  got2 = objective.attention_distillation(tuple(map(jnp.asarray, four_s)),
                                          tuple(map(jnp.asarray, four_t)), jnp.asarray(betas2))
  np.testing.assert_allclose(float(got2), expected2, rtol=1e-5)

  same = objective.attention_distillation(tuple(map(jnp.asarray, student)),
                                          tuple(map(jnp.asarray, student)), jnp.asarray(betas))
  assert float(same) == 0.0
  with pytest.raises(ValueError, match='defense.nad_betas'):
    objective.attention_distillation(tuple(map(jnp.asarray, student[:2])),
                                     tuple(map(jnp.asarray, teacher[:2])), jnp.asarray(betas))


def test_models_sow_their_stages_in_forward_order():
  model, variables = tiny_model()
  x = jnp.asarray(random_images(2)[0], jnp.float32) / 255.0
  _, state = model.apply(variables, x, train=False, mutable=['intermediates'])
  stages = state['intermediates']['stages']
  assert [s.shape for s in stages] == [(2, 8, 8, 8), (2, 8, 8, 16), (2, 4, 4, 32)]


# ------------------------------------------------------------------------ DP-SGD


def test_dp_optimizer_clips_each_example_and_averages():
  rng = np.random.default_rng(0)
  clip, lr = 1.0, 0.5
  params = {'a': jnp.zeros((3, 4)), 'b': jnp.zeros(5)}
  norms = [0.25, 3.0, 0.8, 7.0]  # two below the bound, two above
  per_example = []
  for n in norms:
    g = {'a': rng.normal(size=(3, 4)), 'b': rng.normal(size=5)}
    total = np.sqrt(sum(np.sum(v ** 2) for v in g.values()))
    per_example.append({k: (v * n / total).astype(np.float32) for k, v in g.items()})
  stacked = {k: jnp.asarray(np.stack([g[k] for g in per_example])) for k in params}

  tx = make_optimizer(sgd_train_cfg(lr), 1, DPSettings(clip, 0.0, 0))
  updates, _ = fast_jit(tx.update)(stacked, tx.init(params), params)
  expected = numpy_clip_mean(per_example, clip)
  for k in params:
    assert updates[k].shape == params[k].shape
    np.testing.assert_allclose(np.asarray(updates[k]), -lr * expected[k], rtol=1e-5, atol=1e-7)
  # Not the plain mean: clipping changed something.
  plain = np.mean(np.asarray(stacked['a']), axis=0)
  assert np.abs(np.asarray(updates['a']) + lr * plain).max() > 1e-2


def test_dp_noise_has_std_sigma_clip_over_batch():
  clip, sigma, batch = 2.0, 0.7, 8
  params = {'w': jnp.zeros(20000)}
  tx = make_optimizer(sgd_train_cfg(1.0), 1, DPSettings(clip, sigma, 3))
  updates, _ = fast_jit(tx.update)({'w': jnp.zeros((batch, 20000))}, tx.init(params), params)
  u = np.asarray(updates['w'], np.float64)
  expected = sigma * clip / batch
  assert abs(u.std() / expected - 1) < 0.05, (u.std(), expected)
  assert abs(u.mean()) < 5 * expected / np.sqrt(u.size)


def test_dp_state_holds_a_plain_key_that_advances_and_repeats_with_the_seed():
  params = {'w': jnp.zeros(64)}
  zeros = {'w': jnp.zeros((4, 64))}
  tx = make_optimizer(sgd_train_cfg(1.0), 1, DPSettings(1.0, 1.0, 5))
  state0 = tx.init(params)
  key0 = state0[0].rng_key
  assert key0.dtype == jnp.uint32 and not jax.dtypes.issubdtype(key0.dtype, jax.dtypes.prng_key)
  np.asarray(key0)  # a typed key could not become a numpy array (nor a checkpoint leaf)

  update = fast_jit(tx.update)
  u1, state1 = update(zeros, state0, params)
  u2, state2 = update(zeros, state1, params)
  assert state1[0].rng_key.dtype == jnp.uint32
  assert not np.array_equal(np.asarray(state1[0].rng_key), np.asarray(key0))
  assert not np.allclose(np.asarray(u1['w']), np.asarray(u2['w']))

  again = make_optimizer(sgd_train_cfg(1.0), 1, DPSettings(1.0, 1.0, 5))
  s = again.init(params)
  np.testing.assert_array_equal(np.asarray(s[0].rng_key), np.asarray(key0))
  np.testing.assert_array_equal(np.asarray(fast_jit(again.update)(zeros, s, params)[0]['w']), np.asarray(u1['w']))
  other = make_optimizer(sgd_train_cfg(1.0), 1, DPSettings(1.0, 1.0, 6))
  assert not np.allclose(np.asarray(fast_jit(other.update)(zeros, other.init(params), params)[0]['w']),
                         np.asarray(u1['w']))


def test_fused_step_with_per_example_gradients_applies_clipped_mean():
  batch, lr = 4, 0.5
  model, variables = tiny_model(norm='group')
  images, labels = random_images(8, seed=2)
  order = np.array([3, 0, 6, 1, 7, 2, 5, 4], np.int32)
  index = 1
  rows = order[index * batch:(index + 1) * batch]
  key = jax.random.key(0)  # tiny_model's: the same initial parameters

  # Per-example gradients by hand, at the same initial parameters.
  params0 = variables['params']

  def one_loss(p, xi, yi):
    logits, _ = model.apply({'params': p}, xi[None], train=True, mutable=['batch_stats'])
    return ce(logits, yi[None]).mean()

  grad = jax.jit(jax.value_and_grad(one_loss))
  losses, grads = [], []
  for r in rows:
    loss, g = grad(params0, jnp.asarray(images[r], jnp.float32) / 255.0, jnp.int32(labels[r]))
    losses.append(float(loss))
    grads.append(jax.tree.map(np.asarray, g))
  flat = [dict(enumerate(jax.tree.leaves(g))) for g in grads]
  norms = sorted(np.sqrt(sum(np.sum(v.astype(np.float64) ** 2) for v in f.values())) for f in flat)
  clip = float((norms[1] + norms[2]) / 2)  # two examples clipped, two not
  expected = numpy_clip_mean(flat, clip)

  tx = make_optimizer(sgd_train_cfg(lr), 1, DPSettings(clip, 0.0, 0))
  state = create_train_state(model, tx, key, (8, 8, 1))
  assert state.batch_stats == {}
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(params0)):
    np.testing.assert_array_equal(a, b)
  step = fast_jit(make_train_step(model, make_perturbation('none'), batch_size=batch,
                                 crop_padding=0, flip=False, bn_mode='eval', per_example=True))
  new, metrics = step(state, zero_metrics(), jnp.asarray(images), jnp.asarray(labels),
                      jnp.asarray(order), jnp.int32(index), jax.random.key(9), {})

  before, after = jax.tree.leaves(state.params), jax.tree.leaves(new.params)
  for i, (a, b) in enumerate(zip(before, after)):
    np.testing.assert_allclose(np.asarray(b, np.float64) - np.asarray(a, np.float64),
                               -lr * expected[i], rtol=1e-3, atol=1e-7)
  # The unclipped mean would be a different step.
  unclipped = np.mean([f[0] for f in flat], axis=0)
  assert np.abs((np.asarray(after[0]) - np.asarray(before[0])) + lr * unclipped).max() > 1e-4
  assert int(metrics['count']) == batch and int(new.step) == 1
  np.testing.assert_allclose(float(metrics['loss_sum']), batch * np.mean(losses), rtol=1e-5)


def test_dpsgd_needs_group_norm():
  c = config_lib.load_file(os.path.join(REPO, 'configs/dpsgd.py') + ':digits')
  assert c.defense.name == 'dpsgd' and c.model.norm == 'group'
  config_lib.validate(c)
  c.model.norm = 'batch'
  with pytest.raises(ConfigError, match='model.norm'):
    config_lib.validate(c)


def test_group_norm_model_has_no_batch_stats_and_normalizes_each_example_alone():
  model, variables = tiny_model(norm='group')
  assert 'batch_stats' not in variables
  x = jnp.asarray(random_images(4, seed=3)[0], jnp.float32) / 255.0
  y = x.at[1:].set(jnp.asarray(random_images(3, seed=4)[0], jnp.float32) / 255.0)
  apply = fast_jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats'])[0])
  full, other, alone = apply(variables, x), apply(variables, y), apply(variables, x[:1])
  np.testing.assert_allclose(full[0], alone[0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(full[0], other[0], rtol=1e-5, atol=1e-6)
  assert np.abs(np.asarray(full[1:]) - np.asarray(other[1:])).max() > 1e-4
  # BatchNorm in training mode does mix the examples (the check above can fail).
  bn_model, bn_vars = tiny_model(norm='batch')
  bn_apply = fast_jit(lambda v, x: bn_model.apply(v, x, train=True, mutable=['batch_stats'])[0])
  bn_full, bn_other = bn_apply(bn_vars, x), bn_apply(bn_vars, y)
  assert np.abs(np.asarray(bn_full[0]) - np.asarray(bn_other[0])).max() > 1e-4


# ------------------------------------------------------------------------ ABL


def test_isolate_lowest_marks_exactly_the_lowest_losses():
  losses = np.random.default_rng(0).exponential(size=1000).astype(np.float32)
  isolated = abl.isolate_lowest(losses, 0.01)
  assert isolated.dtype == bool and isolated.sum() == 10
  np.testing.assert_array_equal(np.flatnonzero(isolated), np.sort(np.argsort(losses)[:10]))
  assert losses[isolated].max() < losses[~isolated].min()


def test_isolation_count_and_ties():
  assert abl.isolation_count(0.01, 1000) == 10
  assert abl.isolation_count(0.29, 100) == 29  # 0.29 * 100 = 28.999999999999996
  assert abl.isolation_count(0.5, 7) == 3
  assert abl.isolation_count(0.001, 50) == 1  # at least one
  np.testing.assert_array_equal(abl.isolate_lowest(np.array([1.0, 0.0, 0.0, 0.0, 2.0]), 0.4),
                                [False, True, True, False, False])


def test_local_gradient_ascent_flips_the_sign_below_gamma():
  ce_values = jnp.array([0.1, 0.3, 0.8, 2.0])
  np.testing.assert_allclose(objective.local_gradient_ascent(ce_values, 0.5),
                             [-0.1, -0.3, 0.8, 2.0], rtol=1e-6)
  np.testing.assert_allclose(objective.local_gradient_ascent(ce_values, 0.0), ce_values, rtol=1e-6)
  d = jax.grad(objective.local_gradient_ascent)
  assert float(d(jnp.float32(0.2), 0.5)) == -1.0
  assert float(d(jnp.float32(0.9), 0.5)) == 1.0
  assert float(d(jnp.float32(0.9), 0.0)) == 1.0


def test_sample_losses_are_the_cross_entropy_of_each_image():
  model, variables = tiny_model()
  images, labels = random_images(10, seed=5)
  losses = abl.sample_losses(model, variables, images, labels, 4, parallel.make_mesh())
  assert losses.shape == (10,) and losses.dtype == np.float32
  logits = model.apply(variables, jnp.asarray(images, jnp.float32) / 255.0, train=False)
  direct = np.asarray(ce(logits, jnp.asarray(labels)))
  np.testing.assert_allclose(losses, direct, rtol=1e-5, atol=1e-6)
  assert np.ptp(losses) > 0


# ------------------------------------------------------------------------ clean reserve


def test_clean_reserve_draws_untouched_rows_deterministically():
  untouched = np.ones(100, bool)
  untouched[::3] = False  # 66 untouched rows
  a = clean_reserve(100, untouched, 0.1, 0)
  assert a.dtype == bool and a.shape == (100,) and a.sum() == 10
  assert not (a & ~untouched).any()
  np.testing.assert_array_equal(a, clean_reserve(100, untouched, 0.1, 0))
  assert not np.array_equal(a, clean_reserve(100, untouched, 0.1, 1))
  assert clean_reserve(100, untouched, 0.29, 0).sum() == 29
  assert clean_reserve(100, untouched, 0.66, 0).sum() == 66
  with pytest.raises(ConfigError, match='defense.clean_fraction'):
    clean_reserve(100, untouched, 0.67, 0)


# ------------------------------------------------------------------------ configs


def test_base_config_and_the_defense_configs_validate():
  config_lib.validate(config_lib.base_config())
  for name in ('fp', 'nad', 'abl', 'dpsgd'):
    c = config_lib.load_file(os.path.join(REPO, f'configs/{name}.py') + ':digits')
    assert c.defense.name == name
    config_lib.validate(c)


@pytest.mark.parametrize('field, value', [
    ('defense.clean_fraction', 0.0),
    ('defense.clean_fraction', 1.0),
    ('defense.fp_prune_ratio', 1.0),
    ('defense.fp_target_acc', 1.5),
    ('defense.fp_ratios', ()),
    ('defense.fp_ratios', (1.2,)),
    ('defense.nad_betas', (-1.0,)),
    ('defense.abl_isolation_ratio', 0.0),
    ('defense.abl_unlearn_epochs', 0),
    ('defense.dp_clip', 0.0),
    ('model.norm', 'layer'),
])
def test_bad_defense_fields_are_rejected(field, value):
  c = config_lib.base_config()
  block, name = field.split('.')
  c[block][name] = value
  with pytest.raises(ConfigError, match=field.replace('.', r'\.')) as info:
    config_lib.validate(c)
  assert info.value.field == field


def test_stage_count_and_too_many_nad_betas():
  from abd_jax.data import Dataset
  from abd_jax.defenses import finetuning
  x = np.zeros((4, 8, 8, 1), np.uint8)
  y = np.zeros(4, np.int32)
  data = Dataset('tiny', x, y, x, y, 10)
  config = config_lib.base_config()
  assert finetuning.stage_count(config, data) == 3
  config.model.update(name='resnet18', width=0.125)
  assert finetuning.stage_count(config, data) == 4
  config.defense.nad_betas = (1.0,) * 5
  with pytest.raises(ConfigError, match='defense.nad_betas.*has 4'):
    finetuning.attention_distillation(config, data, '/nonexistent', None, np.ones(4, bool))
