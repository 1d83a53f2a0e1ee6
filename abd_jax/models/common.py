"""Pieces shared by the model definitions.

Every model takes images `x` of shape [B, H, W, C] (NHWC, any float dtype;
the data pipeline decides the value range, typically [0, 1]) and returns
float32 logits of shape [B, num_classes]. `dtype` is the compute dtype;
parameters and BatchNorm statistics are always float32.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

Dtype = Any
ModuleDef = Any

# He-normal over fan-out, as in torchvision's ResNet: keeps the activation
# variance roughly constant through ReLU layers.
conv_kernel_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def scale_width(channels: int, width: float) -> int:
  """Channel count for a width multiplier: max(1, round(channels * width))."""
  return max(1, round(channels * width))


def conv(dtype: Dtype, **kwargs) -> ModuleDef:
  """nn.Conv partial with float32 parameters and `dtype` compute."""
  return functools.partial(nn.Conv, dtype=dtype, param_dtype=jnp.float32,
                           kernel_init=conv_kernel_init, **kwargs)


def batch_norm(train: bool, dtype: Dtype) -> ModuleDef:
  """nn.BatchNorm partial with PyTorch's defaults.

  momentum 0.9 here is PyTorch's momentum=0.1 (flax weights the old running
  average, PyTorch the new batch statistic). Scale/bias and the running
  mean/var stay float32, and flax reduces the batch statistics in float32
  even when `dtype` is bfloat16.
  """
  return functools.partial(nn.BatchNorm, use_running_average=not train,
                           momentum=0.9, epsilon=1e-5, dtype=dtype,
                           param_dtype=jnp.float32)


NORMS = ('batch', 'group')


class GroupNorm(nn.Module):
  """nn.GroupNorm with gcd(channels, 32) groups, so that every width multiplier works
  (32 groups is Wu & He's default). No batch statistics: each example is normalized on
  its own, which per-example (DP-SGD) gradients need."""
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    return nn.GroupNorm(num_groups=math.gcd(x.shape[-1], 32), epsilon=1e-5, dtype=self.dtype,
                        param_dtype=jnp.float32, name='gn')(x)


def norm_layer(kind: str, train: bool, dtype: Dtype) -> ModuleDef:
  """The normalization of `model.norm`: 'batch' (`batch_norm`) or 'group' (`GroupNorm`,
  as DP-SGD needs)."""
  if kind == 'group':
    return functools.partial(GroupNorm, dtype=dtype)
  return batch_norm(train, dtype)


def sow_stage(module: nn.Module, x) -> None:
  """Records a stage's output activation [B,H,W,C] in ('intermediates', 'stages') (a
  tuple, in forward order), for attention distillation (NAD). Like the pooled features,
  nothing is recorded unless that collection is mutable."""
  if not module.is_initializing():
    module.sow('intermediates', 'stages', x)


def classifier_head(module: nn.Module, x, num_classes: int, dtype: Dtype, hidden: int = 0):
  """Global average pool + Dense; returns float32 logits [B, num_classes].

  With `hidden` > 0 a Dense(hidden, 'head_hidden') + ReLU comes first: the MLP projection
  head of contrastive learning (SimCLR), whose output dimension is then `num_classes`. The
  backbone's parameter names are the same either way, so a classifier can start from a
  contrastively trained backbone.

  The pooled features [B, C] are sown as ('intermediates', 'features'), so
  representation-based analyses can read them with
  `apply(..., mutable=['intermediates'])` instead of a second model
  definition. Nothing is recorded when that collection is not mutable, nor
  at init, which would otherwise return it next to 'params'. Must be called
  from inside `module`'s compact __call__.
  """
  x = jnp.mean(x, axis=(1, 2))
  if not module.is_initializing():
    module.sow('intermediates', 'features', x)
  if hidden:
    x = nn.relu(nn.Dense(hidden, dtype=dtype, param_dtype=jnp.float32, name='head_hidden')(x))
  x = nn.Dense(num_classes, dtype=dtype, param_dtype=jnp.float32,
               name='head')(x)
  # Losses (and their gradients w.r.t. inputs in attacks) are computed in
  # float32 whatever the compute dtype.
  return x.astype(jnp.float32)
