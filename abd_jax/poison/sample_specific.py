"""The sample-specific attacks: every poisoned image gets its own trigger, made by networks
trained beforehand (`abd_jax.generators`) and handed over in the `AttackContext`.

    iab   Input-Aware Backdoor (Nguyen & Tran, NeurIPS 2020): x + (G(x) - x) * M(x), a
          generated pattern in a sparse generated mask; dirty-label.
    ssba  Sample-Specific Backdoor Attack (Li et al., ICCV 2021): clip(x + E(x, s), 0, 1),
          a StegaStamp residual that hides the fixed bit string s; dirty-label.

The strength scales the trigger (1 = as trained): IAB's x + a (G(x) - x) M(x), SSBA's
clip(x + a E(x, s), 0, 1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from abd_jax.data import Dataset
from abd_jax.errors import ConfigError
from abd_jax.models.trigger_nets import generator_depth, iab_mask, iab_pattern, iab_stamp
from abd_jax.poison.base import Attack, AttackContext

Array = jax.Array
MEASURE_CHUNK = 512  # test images per compiled call when measuring a trigger


def check_image_fits(cfg: ml_collections.ConfigDict, data: Dataset) -> None:
  """The generators halve the image at least once: H and W even and at least 4."""
  h, w, _ = data.image_shape
  if generator_depth(h, w, 1) < 1:
    raise ConfigError('dataset.image_size', f'{h}x{w}',
                      f'the {cfg.name} generator needs images with even sides of at least 4 '
                      'pixels (set dataset.image_size)')


def over_test_set(measure, data: Dataset) -> dict[str, float]:
  """`measure(x)` (jitted; x float32 [<=512,H,W,C] in [0,1]) over the test images in
  chunks: per-image sums averaged over the test set, except 'linf', the largest."""
  totals: dict[str, float] = {}
  for start in range(0, len(data.x_test), MEASURE_CHUNK):
    x = jnp.asarray(data.x_test[start:start + MEASURE_CHUNK], jnp.float32) / 255.0
    for key, value in jax.device_get(measure(x)).items():
      combine = max if key == 'linf' else (lambda a, b: a + b)
      totals[key] = combine(totals[key], float(value)) if key in totals else float(value)
  return {k: v if k == 'linf' else v / len(data.x_test) for k, v in totals.items()}


def to_8bit(x: Array) -> Array:
  """x in [0, 1] rounded to the 8-bit grid the datasets store."""
  return jnp.round(x * 255.0) / 255.0


def psnr(x: Array, y: Array) -> Array:
  """Peak signal-to-noise ratio in dB per image, peak 1: [B,...] x [B,...] -> [B]
  (capped at 100 dB for identical images)."""
  mse = jnp.mean(jnp.square(x - y), axis=tuple(range(1, x.ndim)))
  return jnp.minimum(10 * jnp.log10(1.0 / jnp.maximum(mse, 1e-10)), 100.0)


def bit_accuracy(logits: Array, bits: Array) -> Array:
  """Fraction of bits read correctly (logit > 0 reads 1): [B,L] x [B,L] -> scalar."""
  return jnp.mean((logits > 0) == (bits > 0.5))


def iab(cfg: ml_collections.ConfigDict, data: Dataset, key: Array, ctx: AttackContext) -> Attack:
  """IAB from its trained pattern and mask generators. Cross mode (`iab_cross_ratio` > 0):
  images stamped with the trigger of another image of their chunk, labels kept."""
  del key
  gen = ctx.require_generator('iab')
  pattern_net, mask_net = gen.modules['pattern'], gen.modules['mask']

  def pattern_and_mask(x: Array) -> tuple[Array, Array]:
    return (iab_pattern(pattern_net.apply(gen.variables['pattern'], x)),
            iab_mask(mask_net.apply(gen.variables['mask'], x)))

  def trigger(x: Array, strength: Array) -> Array:
    return iab_stamp(x, *pattern_and_mask(x), strength)

  def cross(x: Array, k: Array) -> Array:
    # A shift of 1..n-1 never pairs an image with itself (a permutation could).
    shift = jax.random.randint(k, (), 1, max(x.shape[0], 2))
    return iab_stamp(x, *pattern_and_mask(jnp.roll(x, shift, axis=0)))

  @jax.jit
  def measure(x: Array) -> dict:
    _, m = pattern_and_mask(x)
    stamped = to_8bit(trigger(x, 1.0))
    return {'density': jnp.sum(jnp.mean(m > 0.5, axis=(1, 2, 3))),
            'linf': jnp.max(jnp.abs(stamped - x))}

  measured = over_test_set(measure, data)
  trained = {k: v for k, v in gen.results.items() if k.startswith(('classifier_', 'mask_'))}
  return Attack(
      poison=lambda x, k: trigger(x, 1.0), trigger=trigger, strength=1.0,
      params=dict(mask_density=gen.attack['iab_mask_density'], cross_ratio=cfg.iab_cross_ratio,
                  measured_mask_density=measured['density'], measured_linf=measured['linf'],
                  generator=gen.source, **{f'generator_{k}': v for k, v in trained.items()}),
      cross=cross if cfg.iab_cross_ratio > 0 else None, cross_ratio=cfg.iab_cross_ratio)


def ssba_secret(key: Array, num_bits: int) -> np.ndarray:
  """The attack's fixed bit string: float32 [num_bits] in {0, 1}, from the pattern key (so
  from the seed; SSBA encodes an attacker-chosen string, here a random one)."""
  return np.asarray(jax.random.bernoulli(key, 0.5, (num_bits,)), np.float32)


def ssba(cfg: ml_collections.ConfigDict, data: Dataset, key: Array, ctx: AttackContext) -> Attack:
  """SSBA from its trained StegaStamp encoder and decoder. The manifest records the
  residual's size on the test set stored as 8-bit pixels (mean PSNR in dB, largest L-inf,
  at most the generator's `ssba_max_residual`) and the decoder's accuracy at reading the
  attack's bit string back from those images. Bit count and bound are those the generator
  was trained with."""
  gen = ctx.require_generator('ssba')
  encoder, decoder = gen.modules['encoder'], gen.modules['decoder']
  num_bits, max_residual = gen.attack['ssba_bits'], gen.attack['ssba_max_residual']
  secret = jnp.asarray(ssba_secret(key, num_bits))

  def residual(x: Array) -> Array:
    return encoder.apply(gen.variables['encoder'], x,
                         jnp.broadcast_to(secret, (x.shape[0], secret.shape[0])))

  # The stored residual obeys the bound too: the encoded image is rounded to the 8-bit
  # grid here, and kept within the largest whole number of levels <= max_residual.
  bound = np.floor(max_residual * 255.0 + 1e-6) / 255.0

  def trigger(x: Array, strength: Array) -> Array:
    encoded = to_8bit(jnp.clip(x + strength * residual(x), 0.0, 1.0))
    return jnp.clip(encoded, x - bound, x + bound)

  @jax.jit
  def measure(x: Array) -> dict:
    encoded = trigger(x, 1.0)
    logits = decoder.apply(gen.variables['decoder'], encoded)
    return {'psnr': jnp.sum(psnr(encoded, x)), 'linf': jnp.max(jnp.abs(encoded - x)),
            'bits': x.shape[0] * bit_accuracy(logits, jnp.broadcast_to(secret, logits.shape))}

  measured = over_test_set(measure, data)
  return Attack(
      poison=lambda x, k: trigger(x, 1.0), trigger=trigger, strength=1.0,
      params=dict(num_bits=num_bits, max_residual=max_residual,
                  bits=''.join(str(int(b)) for b in np.asarray(secret)),
                  psnr=measured['psnr'], linf=measured['linf'], bit_acc=measured['bits'],
                  bit_acc_random=gen.results.get('bit_acc_random'), generator=gen.source))
