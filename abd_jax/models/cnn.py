"""A small CNN for scikit-learn's 8x8 digits and quick experiments.

conv3x3(32) - BN - ReLU - conv3x3(64) - BN - ReLU - maxpool 2x2 -
conv3x3(128) - BN - ReLU - global average pool - Dense(num_classes),
channels times `width` (GroupNorm for BN with `norm='group'`). The three ReLU outputs are
its stages (`sow_stage`). 94,186 parameters for 8x8x1 inputs, width 1 and 10 classes.
On an 8x8x1 input the third conv sees the whole image (receptive field
10x10), so the global pool loses no layout the classifier needs; the pool also
makes any input size >= 2x2 work (8x8 digits, 28x28 MNIST, 32x32 CIFAR).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from abd_jax.models.common import Dtype, classifier_head, conv, norm_layer, scale_width, sow_stage


class CNN(nn.Module):
  """x: [B, H, W, C] images, H, W >= 2. Returns float32 logits [B, num_classes]."""
  num_classes: int
  width: float = 1.0
  dtype: Dtype = jnp.float32
  norm: str = 'batch'
  head_hidden: int = 0

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = x.astype(self.dtype)
    # No conv bias: the BatchNorm right after it has its own.
    conv3x3 = conv(self.dtype, kernel_size=(3, 3), padding=1, use_bias=False)
    norm = norm_layer(self.norm, train, self.dtype)
    for i, channels in enumerate((32, 64, 128)):
      if i == 2:
        x = max_pool_2x2(x)
      x = nn.relu(norm()(conv3x3(scale_width(channels, self.width))(x)))
      sow_stage(self, x)
    return classifier_head(self, x, self.num_classes, self.dtype, self.head_hidden)


def max_pool_2x2(x):
  """2x2 max-pool, stride 2, [B,H,W,C] -> [B,H//2,W//2,C] (odd edges dropped, as VALID).

  A reshape + max: XLA:CPU turns `nn.max_pool`'s gradient into a reduce-window over index
  arrays plus a scatter, which measured 15-20% of a CNN attack step.
  """
  b, h, w, c = x.shape
  x = x[:, :h // 2 * 2, :w // 2 * 2]
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
