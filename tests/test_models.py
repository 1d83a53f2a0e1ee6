"""Model zoo: parameter counts, shapes, dtypes and BatchNorm behaviour.

The full-size models are only traced (`jax.eval_shape`), never materialized;
behaviour tests run them at width 1/8 on tiny batches so the file stays fast
on a 2-core CPU.
"""

from __future__ import annotations

import math

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from abd_jax.models import MODEL_NAMES, PreActResNet18, create_model, scale_width

# Parameter counts at width 1 for 32x32x3 inputs and 10 classes.
#
# VGG-16 by hand: a conv3x3 cin->cout with bias has 9*cin*cout + cout weights,
# its BatchNorm 2*cout (scale, bias).
#   3->64      1,728 +    64 +   128 =      1,920
#   64->64    36,864 +    64 +   128 =     37,056
#   64->128   73,728 +   128 +   256 =     74,112
#   128->128 147,456 +   128 +   256 =    147,840
#   128->256 294,912 +   256 +   512 =    295,680
#   256->256 589,824 +   256 +   512 =    590,592  x2 =  1,181,184
#   256->512 1,179,648 + 512 + 1,024 =  1,181,184
#   512->512 2,359,296 + 512 + 1,024 =  2,360,832  x5 = 11,804,160
#   Dense 512->10: 5,120 + 10        =      5,130
#   total                                            = 14,728,266
# (the same as PyTorch's count for kuangliu's VGG('VGG16')).
#
# PreAct-ResNet-18: ResNet-18's 11,173,962 without the stem BN (-128), the three
# shortcut BNs (-1,792), with the first BN of stages 2-4 on their narrower inputs
# (-896), plus the final BN over 512 channels (+1,024) = 11,172,170; kuangliu's
# version, without that final BN, has 11,171,146.
PARAM_COUNTS = {
    'cnn': 94_762,
    'resnet18': 11_173_962,
    'resnet34': 21_282_122,
    'preact_resnet18': 11_172_170,
    'vgg16': 14_728_266,
}
CIFAR = (2, 32, 32, 3)
DIGITS = (2, 8, 8, 1)


def _abstract_variables(model, shape):
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)


def _size(tree) -> int:
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def _init(model, shape, seed=0):
  x = jax.random.uniform(jax.random.key(seed + 1), shape)
  return model.init(jax.random.key(seed), x, train=False), x


def test_model_names_cover_registry():
  assert set(PARAM_COUNTS) == set(MODEL_NAMES)


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_param_count(name):
  variables = _abstract_variables(create_model(name, 10), CIFAR)
  assert set(variables) == {'params', 'batch_stats'}
  assert _size(variables['params']) == PARAM_COUNTS[name]


def test_param_count_preact_without_final_norm_matches_kuangliu():
  model = PreActResNet18(num_classes=10, final_norm=False)
  assert _size(_abstract_variables(model, CIFAR)['params']) == 11_171_146


def test_param_count_scales_with_classes():
  # Only the head grows: 512 weights + 1 bias per extra class.
  variables = _abstract_variables(create_model('resnet18', 100), CIFAR)
  assert _size(variables['params']) == 11_173_962 + 90 * 513


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
@pytest.mark.parametrize('name', MODEL_NAMES)
def test_output_shape_and_dtypes(name, dtype):
  model = create_model(name, 7, dtype=dtype)
  variables = _abstract_variables(model, CIFAR)
  for leaf in jax.tree.leaves(variables):
    assert leaf.dtype == jnp.float32
  x = jax.ShapeDtypeStruct(CIFAR, jnp.float32)
  logits = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
  assert logits.shape == (2, 7) and logits.dtype == jnp.float32
  logits, updates = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']), variables, x)
  assert logits.shape == (2, 7) and logits.dtype == jnp.float32
  for leaf in jax.tree.leaves(updates):
    assert leaf.dtype == jnp.float32


@pytest.mark.parametrize('shape', [DIGITS, (2, 28, 28, 1), CIFAR])
def test_cnn_input_sizes(shape):
  model = create_model('cnn', 10)
  variables, x = _init(model, shape)
  assert model.apply(variables, x, train=False).shape == (2, 10)


def test_vgg_accepts_larger_inputs_with_same_params():
  model = create_model('vgg16', 10)
  variables = _abstract_variables(model, (1, 64, 64, 3))
  assert _size(variables['params']) == PARAM_COUNTS['vgg16']


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_batchnorm_train_and_eval(name):
  model = create_model(name, 10, width=0.125)
  variables, x = _init(model, (4, 32, 32, 3))

  # Eval mode needs no mutable collection and is deterministic.
  out1 = model.apply(variables, x, train=False)
  out2 = model.apply(variables, x, train=False)
  np.testing.assert_array_equal(np.asarray(out1), np.asarray(out2))
  assert np.all(np.isfinite(np.asarray(out1)))

  # Train mode normalizes with batch statistics and returns updated running ones.
  out_train, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
  assert set(updates) == {'batch_stats'}
  assert jax.tree.structure(updates['batch_stats']) == jax.tree.structure(
      variables['batch_stats'])
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), updates['batch_stats'],
                         variables['batch_stats'])
  assert all(jax.tree.leaves(changed))
  assert not np.allclose(np.asarray(out_train), np.asarray(out1))


def test_train_requires_mutable_batch_stats():
  model = create_model('cnn', 10)
  variables, x = _init(model, DIGITS)
  with pytest.raises(flax.errors.ModifyScopeVariableError):
    model.apply(variables, x, train=True)


def test_batchnorm_momentum_matches_pytorch():
  # Running mean after one step: 0.9 * 0 + 0.1 * batch mean (PyTorch momentum=0.1).
  model = create_model('cnn', 10)
  variables, x = _init(model, DIGITS)
  _, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
  first_bn = updates['batch_stats']['BatchNorm_0']
  conv_out = jax.lax.conv_general_dilated(
      x, variables['params']['Conv_0']['kernel'], (1, 1), ((1, 1), (1, 1)),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  np.testing.assert_allclose(first_bn['mean'], 0.1 * conv_out.mean(axis=(0, 1, 2)),
                             rtol=1e-4, atol=1e-6)


def test_bfloat16_computes_in_bfloat16_but_keeps_float32_interfaces():
  model32 = create_model('cnn', 10)
  model16 = create_model('cnn', 10, dtype='bfloat16')
  variables, x = _init(model16, DIGITS)
  for leaf in jax.tree.leaves(variables):
    assert leaf.dtype == jnp.float32
  out32 = model32.apply(variables, x, train=False)
  out16 = model16.apply(variables, x, train=False)
  assert out16.dtype == jnp.float32
  # Same function up to bfloat16 rounding, but really computed at lower precision.
  np.testing.assert_allclose(out16, out32, rtol=0.1, atol=0.1)
  assert not np.array_equal(np.asarray(out16), np.asarray(out32))

  _, updates = model16.apply(variables, x, train=True, mutable=['batch_stats'])
  for leaf in jax.tree.leaves(updates):
    assert leaf.dtype == jnp.float32

  # Input gradients (what the attacks use) come back in the input's dtype.
  def loss(x):
    return model16.apply(variables, x, train=False)[:, 0].sum()
  grad = jax.grad(loss)(x)
  assert grad.dtype == jnp.float32 and grad.shape == x.shape
  assert np.all(np.isfinite(np.asarray(grad)))


def test_width_multiplier():
  assert scale_width(64, 1.0) == 64
  assert scale_width(64, 0.5) == 32
  assert scale_width(64, 2.0) == 128
  assert scale_width(64, 0.001) == 1

  def conv_params(width):
    params = _abstract_variables(create_model('resnet18', 10, width=width), CIFAR)['params']
    kernels = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params)
               if path[-1].key == 'kernel' and leaf.ndim == 4]
    return _size(kernels)

  # Conv weights are cin * cout * k * k, so doubling both quadruples them (all but the
  # stem, whose input stays 3 channels).
  ratio = conv_params(2.0) / conv_params(1.0)
  assert 3.99 < ratio <= 4.0

  model = create_model('cnn', 10, width=0.5)
  variables, x = _init(model, DIGITS)
  assert variables['params']['Conv_0']['kernel'].shape == (3, 3, 1, 16)
  assert variables['params']['Conv_2']['kernel'].shape == (3, 3, 32, 64)
  assert model.apply(variables, x, train=False).shape == (2, 10)


def test_features_are_sown_only_on_request():
  model = create_model('resnet18', 10, width=0.125)
  variables, x = _init(model, CIFAR)
  assert 'intermediates' not in variables
  logits, state = model.apply(variables, x, train=False, mutable=['intermediates'])
  (features,) = state['intermediates']['features']
  assert features.shape == (2, scale_width(512, 0.125))
  assert logits.shape == (2, 10)


def test_jit_and_train_flag_is_keyword_only():
  model = create_model('cnn', 10)
  variables, x = _init(model, DIGITS)
  apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
  np.testing.assert_allclose(apply(variables, x), model.apply(variables, x, train=False),
                             rtol=1e-5, atol=1e-6)
  with pytest.raises(TypeError):
    model.apply(variables, x)


@pytest.mark.parametrize('kwargs, field', [
    (dict(name='resnet50'), 'model.name'),
    (dict(name='cnn', dtype='float16'), 'model.dtype'),
    (dict(name='cnn', width=0.0), 'model.width'),
    (dict(name='cnn', num_classes=0), 'num_classes'),
])
def test_invalid_arguments(kwargs, field):
  kwargs = dict(num_classes=10) | kwargs
  with pytest.raises(ValueError, match=field) as info:
    create_model(**kwargs)
  if field == 'model.name':
    assert 'resnet50' in str(info.value)
    for name in MODEL_NAMES:
      assert name in str(info.value)


def test_cnn_max_pool_matches_flax_max_pool():
  import flax.linen as nn
  from abd_jax.models.cnn import max_pool_2x2
  x = jax.random.normal(jax.random.key(0), (3, 9, 8, 5))
  np.testing.assert_array_equal(max_pool_2x2(x), nn.max_pool(x, (2, 2), strides=(2, 2)))
