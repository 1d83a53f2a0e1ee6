"""CIFAR-style ResNets: ResNet-18/34 and pre-activation ResNet-18.

These follow kuangliu/pytorch-cifar, the variant common in CIFAR adversarial-
training and backdoor work: a 3x3 stride-1 stem and no max-pool, so a
32x32 input reaches the last stage at 4x4. Stage widths are 64, 128, 256, 512
times `width`; each later stage halves the resolution in its first block.

Parameter counts at width 1 (float32 'params' only):

  model             10 classes    100 classes
  ResNet-18         11,173,962    11,220,132
  ResNet-34         21,282,122    21,328,292
  PreAct-ResNet-18  11,172,170    11,218,340

The ResNet counts equal PyTorch's for kuangliu's code (running BatchNorm
statistics live in 'batch_stats', as PyTorch's buffers are not parameters).
PreAct-ResNet-18 ends in a BN-ReLU before pooling, as He et al. (2016) end
their pre-activation networks; kuangliu's PreActResNet18 omits it and has
1,024 fewer parameters (11,171,146), see `PreActResNet.final_norm`.
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from abd_jax.models.common import (Dtype, ModuleDef, classifier_head, conv, norm_layer,
                                   scale_width, sow_stage)


class BasicBlock(nn.Module):
  """conv3x3-BN-ReLU-conv3x3-BN, plus shortcut, then ReLU (He et al. 2015).

  [B, H, W, C] -> [B, H / strides, W / strides, features].
  """
  features: int
  strides: int = 1
  dtype: Dtype = jnp.float32
  norm: str = 'batch'

  @nn.compact
  def __call__(self, x, *, train: bool):
    conv3x3 = conv(self.dtype, kernel_size=(3, 3), padding=1, use_bias=False)
    norm = norm_layer(self.norm, train, self.dtype)
    y = nn.relu(norm()(conv3x3(self.features, strides=self.strides)(x)))
    y = norm()(conv3x3(self.features)(y))
    if x.shape != y.shape:
      # Projection shortcut (option B): 1x1 conv + BN where resolution or width changes.
      x = conv(self.dtype, kernel_size=(1, 1), use_bias=False)(
          self.features, strides=self.strides, name='proj_conv')(x)
      x = norm(name='proj_bn')(x)
    return nn.relu(x + y)


class PreActBlock(nn.Module):
  """BN-ReLU-conv3x3-BN-ReLU-conv3x3, plus shortcut; no activation after the sum.

  The projection shortcut is applied to the pre-activated input (as in
  He et al. 2016 and kuangliu's code), the identity shortcut to the raw input,
  so the residual stream itself is never normalized.
  [B, H, W, C] -> [B, H / strides, W / strides, features].
  """
  features: int
  strides: int = 1
  dtype: Dtype = jnp.float32
  norm: str = 'batch'

  @nn.compact
  def __call__(self, x, *, train: bool):
    conv3x3 = conv(self.dtype, kernel_size=(3, 3), padding=1, use_bias=False)
    norm = norm_layer(self.norm, train, self.dtype)
    y = nn.relu(norm()(x))
    shortcut = x
    if self.strides != 1 or x.shape[-1] != self.features:
      shortcut = conv(self.dtype, kernel_size=(1, 1), use_bias=False)(
          self.features, strides=self.strides, name='proj_conv')(y)
    y = conv3x3(self.features, strides=self.strides)(y)
    y = conv3x3(self.features)(nn.relu(norm()(y)))
    return y + shortcut


def _stages(module: nn.Module, x, stage_sizes: Sequence[int], block_cls: ModuleDef,
            train: bool, last_stage_hook=None):
  """The residual stages; each stage's output is sown (`sow_stage`), the last one after
  `last_stage_hook` (PreAct's final BN-ReLU)."""
  for i, num_blocks in enumerate(stage_sizes):
    for j in range(num_blocks):
      strides = 2 if i > 0 and j == 0 else 1
      x = block_cls(scale_width(64 * 2**i, module.width), strides, module.dtype,
                    module.norm)(x, train=train)
    if i == len(stage_sizes) - 1 and last_stage_hook is not None:
      x = last_stage_hook(x)
    sow_stage(module, x)
  return x


class ResNet(nn.Module):
  """CIFAR ResNet with post-activation BasicBlocks.

  x: [B, H, W, C] images, 32x32 for CIFAR; global average pooling makes any
  size work. Returns float32 logits [B, num_classes].
  """
  stage_sizes: Sequence[int]
  num_classes: int
  width: float = 1.0
  dtype: Dtype = jnp.float32
  norm: str = 'batch'
  head_hidden: int = 0

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = x.astype(self.dtype)
    x = conv(self.dtype, kernel_size=(3, 3), padding=1, use_bias=False)(
        scale_width(64, self.width), name='stem_conv')(x)
    x = nn.relu(norm_layer(self.norm, train, self.dtype)(name='stem_bn')(x))
    x = _stages(self, x, self.stage_sizes, BasicBlock, train)
    return classifier_head(self, x, self.num_classes, self.dtype, self.head_hidden)


class PreActResNet(nn.Module):
  """CIFAR ResNet with pre-activation blocks (He et al. 2016).

  The stem is a bare conv (the first block normalizes its input). With
  `final_norm` a BN-ReLU follows the last block, since pre-activation blocks
  leave the summed residual stream un-normalized; set it False for kuangliu's
  exact PreActResNet18. x: [B, H, W, C] images of any size. Returns float32
  logits [B, num_classes].
  """
  stage_sizes: Sequence[int]
  num_classes: int
  width: float = 1.0
  dtype: Dtype = jnp.float32
  final_norm: bool = True
  norm: str = 'batch'
  head_hidden: int = 0

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = x.astype(self.dtype)
    x = conv(self.dtype, kernel_size=(3, 3), padding=1, use_bias=False)(
        scale_width(64, self.width), name='stem_conv')(x)
    final = None
    if self.final_norm:
      final = lambda y: nn.relu(norm_layer(self.norm, train, self.dtype)(name='final_bn')(y))
    x = _stages(self, x, self.stage_sizes, PreActBlock, train, final)
    return classifier_head(self, x, self.num_classes, self.dtype, self.head_hidden)


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2))
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3))
PreActResNet18 = functools.partial(PreActResNet, stage_sizes=(2, 2, 2, 2))
