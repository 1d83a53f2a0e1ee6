"""Image classifiers, chosen by name (`model.name` in the config).

`create_model(name, num_classes, width, dtype)` returns a flax.linen Module
used as

  variables = model.init(key, x, train=False)       # {'params', 'batch_stats'}
  logits = model.apply(variables, x, train=False)   # BatchNorm running averages
  logits, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])

with x: [B, H, W, C] images and logits: float32 [B, num_classes]. `train`
is keyword-only and required, so evaluation can never silently use batch
statistics. Every model ends in global average pooling + Dense, whose input
is also sown as ('intermediates', 'features') for representation analyses, and each
stage's output as ('intermediates', 'stages') for attention distillation.

`check_image_size(name, image_shape)` raises a ConfigError when the images are too small
for the model's downsampling (e.g. VGG-16 needs 32x32).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from abd_jax.models.cnn import CNN
from abd_jax.models.common import NORMS, scale_width
from abd_jax.models.fit import check_image_size
from abd_jax.models.resnet import (BasicBlock, PreActBlock, PreActResNet, PreActResNet18, ResNet,
                                   ResNet18, ResNet34)
from abd_jax.models.vgg import VGG, VGG16

MODEL_NAMES = ('cnn', 'resnet18', 'resnet34', 'preact_resnet18', 'vgg16')
_CONSTRUCTORS = {
    'cnn': CNN,
    'resnet18': ResNet18,
    'resnet34': ResNet34,
    'preact_resnet18': PreActResNet18,
    'vgg16': VGG16,
}
_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def create_model(name: str, num_classes: int, width: float = 1.0,
                 dtype: str = 'float32', norm: str = 'batch', head_hidden: int = 0) -> nn.Module:
  """Builds model `name` with `num_classes` outputs.

  width: channel multiplier; each layer gets max(1, round(channels * width)).
  dtype: compute dtype, 'float32' or 'bfloat16'. Parameters and BatchNorm
    statistics are float32 either way, and logits are returned as float32.
  norm: 'batch' (BatchNorm) or 'group' (GroupNorm, no batch statistics: what per-example
    gradients, i.e. DP-SGD, need).
  head_hidden: > 0 puts a hidden Dense + ReLU of that size before the output layer (the
    projection head of contrastive pre-training; `num_classes` is then its dimension).
  """
  if name not in _CONSTRUCTORS:
    raise ValueError(f'model.name: unknown model {name!r}; allowed: {", ".join(MODEL_NAMES)}')
  if dtype not in _DTYPES:
    raise ValueError(f'model.dtype: unknown dtype {dtype!r}; allowed: {", ".join(_DTYPES)}')
  if norm not in NORMS:
    raise ValueError(f'model.norm: unknown normalization {norm!r}; allowed: {", ".join(NORMS)}')
  if not width > 0:
    raise ValueError(f'model.width: must be > 0, got {width!r}')
  if int(num_classes) != num_classes or num_classes < 1:
    raise ValueError(f'num_classes: must be a positive integer, got {num_classes!r}')
  return _CONSTRUCTORS[name](num_classes=int(num_classes), width=float(width),
                             dtype=_DTYPES[dtype], norm=norm, head_hidden=int(head_hidden))


__all__ = ['MODEL_NAMES', 'NORMS', 'check_image_size', 'create_model', 'scale_width', 'CNN', 'ResNet',
           'ResNet18', 'ResNet34', 'PreActResNet', 'PreActResNet18', 'VGG', 'VGG16', 'BasicBlock',
           'PreActBlock']
