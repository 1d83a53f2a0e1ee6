"""The backdoor attacks, each built from the `attack` config block into an `Attack`:
how a chosen training image is poisoned, and how a test image is triggered.

    badnets  patch, Eq. 3 of the ICLR'22 seed (alpha = transparency)    Gu et al. 2017
    blended  whole-image mix with a pattern (noise or an image file)    Chen et al. 2017
    sig      horizontal sinusoid x + delta sin(2 pi j f / W)           Barni et al. 2019
    wanet    smooth warping field + noise-mode cross samples            Nguyen & Tran 2021
    lc       adversarial perturbation + four-corner trigger, clean-label Turner et al. 2019
    trojan   patch optimized to excite penultimate-layer neurons        Liu et al. 2018
    iab      generated pattern in a generated mask, per image           Nguyen & Tran 2020
    ssba     StegaStamp residual hiding a bit string, per image          Li et al. 2021
"""

from __future__ import annotations

from typing import Callable

import jax
import ml_collections

from abd_jax.data import Dataset
from abd_jax.errors import ConfigError
from abd_jax.poison import lc, sample_specific, triggers, trojan, warp
from abd_jax.poison.base import Attack, AttackContext, check_patch_fits

Array = jax.Array


def _image_hw(data: Dataset) -> tuple[int, int]:
  return data.image_shape[0], data.image_shape[1]


def badnets(cfg: ml_collections.ConfigDict, data: Dataset, key: Array, ctx: AttackContext) -> Attack:
  del ctx
  check_patch_fits(cfg, data)
  h, w, c = data.image_shape
  pattern = (triggers.checkerboard(cfg.patch_size, c) if cfg.pattern == 'checkerboard'
             else triggers.random_pattern(key, cfg.patch_size, c))
  mask, (y0, x0) = triggers.patch_mask((h, w), cfg.patch_size, cfg.position)
  full = triggers.place_pattern(pattern, (h, w), y0, x0)
  trigger = lambda x, alpha: triggers.apply_patch(x, full, mask, alpha)
  return Attack(poison=lambda x, k: trigger(x, cfg.alpha), trigger=trigger, strength=cfg.alpha,
                params=dict(patch_size=cfg.patch_size, pattern=cfg.pattern,
                            position=cfg.position, alpha=cfg.alpha, corner=(y0, x0)))


def blended(cfg: ml_collections.ConfigDict, data: Dataset, key: Array, ctx: AttackContext) -> Attack:
  del ctx
  h, w, c = data.image_shape
  try:
    pattern = (triggers.load_pattern_image(cfg.pattern_file, (h, w), c) if cfg.pattern_file
               else triggers.noise_pattern(key, (h, w), c))
  except FileNotFoundError as e:
    raise ConfigError('attack.pattern_file', cfg.pattern_file, 'no such file') from e
  trigger = lambda x, alpha: triggers.blend(x, pattern, alpha)
  return Attack(poison=lambda x, k: trigger(x, cfg.alpha), trigger=trigger, strength=cfg.alpha,
                params=dict(alpha=cfg.alpha, pattern_file=cfg.pattern_file or None,
                            pattern='image' if cfg.pattern_file else 'uniform_noise'))


def sig(cfg: ml_collections.ConfigDict, data: Dataset, key: Array, ctx: AttackContext) -> Attack:
  del data, key, ctx
  trigger = lambda x, delta: triggers.sinusoid(x, delta, cfg.sig_freq)
  return Attack(poison=lambda x, k: trigger(x, cfg.sig_delta), trigger=trigger,
                strength=cfg.sig_delta, params=dict(delta=cfg.sig_delta, freq=cfg.sig_freq))


def wanet(cfg: ml_collections.ConfigDict, data: Dataset, key: Array, ctx: AttackContext) -> Attack:
  del ctx
  hw = _image_hw(data)
  field = warp.warping_field(key, hw, cfg.wanet_k, cfg.wanet_s, cfg.wanet_grid_rescale)
  # The strength rescales the warp: s * strength (strength 1 = the trained field).
  identity = warp.identity_grid(hw)
  trigger = lambda x, strength: warp.warp(x, identity + strength * (field - identity))
  cross = lambda x, k: warp.warp(x, warp.noise_grid(k, field, x.shape[0]))
  return Attack(poison=lambda x, k: trigger(x, 1.0), trigger=trigger, strength=1.0,
                params=dict(k=cfg.wanet_k, s=cfg.wanet_s, grid_rescale=cfg.wanet_grid_rescale,
                            cross_ratio=cfg.wanet_cross_ratio),
                cross=cross if cfg.wanet_cross_ratio > 0 else None,
                cross_ratio=cfg.wanet_cross_ratio)


BUILDERS: dict[str, Callable[..., Attack]] = {
    'badnets': badnets,
    'blended': blended,
    'sig': sig,
    'wanet': wanet,
    'lc': lc.build,
    'trojan': trojan.build,
    'iab': sample_specific.iab,
    'ssba': sample_specific.ssba,
}

# The attacks that craft their poison on a trained surrogate model, and which kind:
# lc an adversarially trained one (ICLR'22 seed, App. A), trojan a standard one (Liu et al.).
SURROGATE_KINDS = {'lc': 'adversarial', 'trojan': 'standard'}
# The attacks that stamp each image with the output of networks trained for them
# (`abd_jax.generators`).
GENERATOR_ATTACKS = ('iab', 'ssba')
