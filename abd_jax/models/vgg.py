"""VGG-16 with BatchNorm for 32x32 inputs (kuangliu/pytorch-cifar's VGG('VGG16')).

Thirteen conv3x3 (with bias) - BN - ReLU layers in five blocks, each block
ending in a 2x2 max-pool, then one Dense layer: no 4096-wide FC layers, which
would be pure overhead on a 1x1 feature map. At width 1 and 10 classes the
'params' collection holds 14,728,266 numbers (see tests/test_models.py).

At 32x32 the last pool leaves a 1x1x512 map, so kuangliu's flatten is the
same as the global average pool used here; the pool also lets larger inputs
(e.g. 64x64) through with the same parameters. Inputs must be at least 32x32:
five halvings of anything smaller reach an empty map.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax.numpy as jnp

from abd_jax.models.common import Dtype, classifier_head, conv, norm_layer, scale_width, sow_stage

# Output channels of each conv; 'M' is a 2x2 max-pool.
VGG16_CFG = (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M',
             512, 512, 512, 'M')


class VGG(nn.Module):
  """VGG with BatchNorm. x: [B, H, W, C], H, W >= 32. Returns float32 logits [B, num_classes]."""
  num_classes: int
  width: float = 1.0
  dtype: Dtype = jnp.float32
  cfg: tuple = VGG16_CFG
  norm: str = 'batch'
  head_hidden: int = 0

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = x.astype(self.dtype)
    # The conv bias is redundant before BN, but kept to match kuangliu's parameters.
    conv3x3 = conv(self.dtype, kernel_size=(3, 3), padding=1, use_bias=True)
    norm = norm_layer(self.norm, train, self.dtype)
    for v in self.cfg:
      if v == 'M':  # a stage ends at each pooling
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        sow_stage(self, x)
      else:
        x = nn.relu(norm()(conv3x3(scale_width(v, self.width))(x)))
    return classifier_head(self, x, self.num_classes, self.dtype, self.head_hidden)


VGG16 = functools.partial(VGG, cfg=VGG16_CFG)
