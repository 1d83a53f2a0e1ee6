"""The networks the sample-specific attacks train to make their triggers.

    IAB   EncoderDecoder: the pattern generator G (C outputs) and the mask generator M
          (1 output) of Nguyen & Tran (NeurIPS 2020), Sec. 3 and their released
          networks/models.py: `depth` levels of two 3x3 conv blocks and a 2x2 max-pool,
          a middle block, then `depth` levels of upsampling and two conv blocks.
    SSBA  StegaEncoder / StegaDecoder: StegaStamp (Tancik et al., CVPR 2020) as SSBA
          (Li et al., ICCV 2021) uses it: the encoder maps (image, bit string) to an
          additive residual, the decoder reads the bits back from the encoded image.

Two departures from the originals, both for small images and a pure per-image trigger:
IAB's conv blocks normalize each image on its own (InstanceNorm) where the original uses
BatchNorm, so an image's trigger does not depend on which images share its batch (the
normalization matters: without it the thresholded mask starts, and stays, all off); and
StegaStamp's secret is projected by one
Dense layer to a full-resolution map instead of a 50x50 map upsampled 8x (an 8x8 image
has no room for the upsampling). The encoder's residual is bounded:
`max_residual * tanh(.)`, so the trigger's L-inf size never exceeds the configured one.

All take float32 images [B,H,W,C] in [0, 1] and are used through `model.apply`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
_EPS = 1e-7  # the original's tanh / (2 + eps): outputs stay strictly inside (0, 1)


def generator_depth(height: int, width: int, max_depth: int) -> int:
  """Number of 2x downsamplings for an image: at most `max_depth`, the image must halve
  evenly, and the coarsest map keeps at least 2x2 pixels (8x8 digits: 2; 32x32: 3)."""
  depth = 0
  while (depth < max_depth and height % 2 ** (depth + 1) == 0 and width % 2 ** (depth + 1) == 0
         and min(height, width) // 2 ** (depth + 1) >= 2):
    depth += 1
  return depth


def _conv(features: int, stride: int = 1) -> nn.Conv:
  return nn.Conv(features, (3, 3), strides=(stride, stride), padding=1)


def _upsample_axis(x: Array, axis: int) -> Array:
  """2x bilinear along `axis` (half-pixel centres, edges clamped): output 2i is
  0.75 x[i] + 0.25 x[i-1], output 2i+1 is 0.75 x[i] + 0.25 x[i+1]."""
  n = x.shape[axis]
  prev = jnp.take(x, jnp.clip(jnp.arange(n) - 1, 0, n - 1), axis=axis)
  nxt = jnp.take(x, jnp.clip(jnp.arange(n) + 1, 0, n - 1), axis=axis)
  pair = jnp.stack([0.75 * x + 0.25 * prev, 0.75 * x + 0.25 * nxt], axis=axis + 1)
  return pair.reshape(x.shape[:axis] + (2 * n,) + x.shape[axis + 1:])


def _upsample(x: Array) -> Array:
  """[B,H,W,C] -> [B,2H,2W,C], bilinear (torch's nn.Upsample(scale_factor=2, mode='bilinear'),
  which IAB uses). Written out: `jax.image.resize` took 20 s to run eagerly on CPU."""
  return _upsample_axis(_upsample_axis(x, 1), 2)


def _downsample(x: Array) -> Array:
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class EncoderDecoder(nn.Module):
  """IAB's generator: x [B,H,W,C] in [0,1] -> raw outputs [B,H,W,out_channels] (real).

  `base_channels` doubles per level (the original: 32 and 3 levels on CIFAR-10, 16 and 2
  on MNIST); H and W must be divisible by 2**depth (`generator_depth`).
  """
  out_channels: int
  base_channels: int = 32
  depth: int = 3

  @nn.compact
  def __call__(self, x: Array) -> Array:
    def block(y: Array, features: int, relu: bool = True) -> Array:
      y = nn.InstanceNorm()(_conv(features)(y))
      return nn.relu(y) if relu else y

    x = x - 0.5
    channels = self.base_channels
    for level in range(self.depth):
      x = block(block(x, channels), channels)
      x = _downsample(x)
      if level < self.depth - 1:
        channels *= 2
    x = block(x, channels)
    for level in range(self.depth):
      x = block(_upsample(x), channels)
      last = level == self.depth - 1
      channels = self.out_channels if last else max(channels // 2, self.out_channels)
      x = block(x, channels, relu=not last)
    return x


def iab_pattern(raw: Array) -> Array:
  """The generator's pattern in (0, 1): tanh(raw) / (2 + 1e-7) + 0.5 (IAB models.py)."""
  return jnp.tanh(raw) / (2 + _EPS) + 0.5


def iab_mask(raw: Array) -> Array:
  """The mask generator's near-binary mask in (0, 1): tanh(20 raw - 10) / (2 + 1e-7) + 0.5
  (IAB's `threshold`: raw > 0.5 is on)."""
  return jnp.tanh(raw * 20 - 10) / (2 + _EPS) + 0.5


def iab_stamp(x: Array, pattern: Array, mask: Array, strength: Array | float = 1.0) -> Array:
  """IAB's backdoor input x + strength * (pattern - x) * mask (train.py `create_bd`; the
  strength is 1 there): x, pattern [B,H,W,C] in [0,1], mask [B,H,W,1] in (0,1)."""
  return x + strength * (pattern - x) * mask


class StegaEncoder(nn.Module):
  """(x [B,H,W,C] in [0,1], bits [B,L] in {0,1}) -> residual [B,H,W,C] in
  [-max_residual, max_residual]; the encoded image is clip(x + residual, 0, 1).

  A U-Net over the image and the projected secret (StegaStamp's encoder, scaled down):
  `depth` stride-2 levels from `base_channels`, skip connections at every level.
  """
  max_residual: float
  base_channels: int = 32
  depth: int = 3

  @nn.compact
  def __call__(self, x: Array, bits: Array) -> Array:
    b, h, w, c = x.shape
    secret = nn.relu(nn.Dense(h * w * 3)(bits.astype(jnp.float32) - 0.5)).reshape(b, h, w, 3)
    y = jnp.concatenate([x - 0.5, secret], axis=-1)
    y = nn.relu(_conv(self.base_channels)(y))
    skips, channels = [], self.base_channels
    for _ in range(self.depth):
      skips.append(y)
      channels *= 2
      y = nn.relu(_conv(channels, stride=2)(y))
    for skip in reversed(skips):
      channels //= 2
      y = nn.relu(_conv(channels)(_upsample(y)))
      y = nn.relu(_conv(channels)(jnp.concatenate([y, skip], axis=-1)))
    y = jnp.concatenate([y, x - 0.5, secret], axis=-1)
    y = nn.relu(_conv(self.base_channels)(y))
    raw = nn.Conv(c, (1, 1))(y)
    return self.max_residual * jnp.tanh(raw)


class StegaDecoder(nn.Module):
  """x [B,H,W,C] in [0,1] -> bit logits [B,L] (StegaStamp's decoder without its spatial
  transformer: the encoded images are never warped here)."""
  num_bits: int
  base_channels: int = 32
  depth: int = 3

  @nn.compact
  def __call__(self, x: Array) -> Array:
    y = nn.relu(_conv(self.base_channels)(x - 0.5))
    channels = self.base_channels
    for _ in range(self.depth):
      channels *= 2
      y = nn.relu(_conv(channels, stride=2)(y))
    y = nn.relu(nn.Dense(256)(y.reshape(y.shape[0], -1)))
    return nn.Dense(self.num_bits)(y)
