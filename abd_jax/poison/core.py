"""Poisoning a dataset once, vectorized: choose indices, apply the attack in fixed-size
jit'd chunks, relabel, and build the triggered test set for ASR."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from abd_jax.data import Dataset
from abd_jax.errors import ConfigError
from abd_jax.evaluate import BackdoorTestSet
from abd_jax.poison import lc, sample_specific, select
from abd_jax.poison.attacks import BUILDERS, GENERATOR_ATTACKS
from abd_jax.poison.base import Attack, AttackContext, check_patch_fits
from abd_jax.poison.manifest import build_manifest

CHUNK = 1024  # images per compiled call: one program, bounded memory


@dataclasses.dataclass(frozen=True)
class Poisoned:
  train: Dataset               # the poisoned training set (test split unchanged)
  is_poisoned: np.ndarray      # bool [N]: the ground-truth poison flag
  modified: np.ndarray         # int64 [M], sorted: the rows whose image changed (poisons, WaNet's noise mode)
  backdoor: BackdoorTestSet    # triggered test images for asr / backdoor_acc
  manifest: dict
  attack: Attack


def apply_uint8(fn, images: np.ndarray, key: jax.Array | None = None) -> np.ndarray:
  """fn(float32 [CHUNK,H,W,C] in [0,1], key) on uint8 images, chunk by chunk, rounded back
  to uint8. Every chunk has the same shape (the last is padded), so fn compiles once."""
  if len(images) == 0:
    return images.copy()
  jitted = jax.jit(lambda x, k: jnp.round(fn(x.astype(jnp.float32) / 255.0, k) * 255.0)
                   .astype(jnp.uint8))
  key = jax.random.key(0) if key is None else key
  out = []
  for start in range(0, len(images), CHUNK):
    chunk = images[start:start + CHUNK]
    pad = CHUNK - len(chunk) if len(images) > CHUNK else 0
    padded = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)]) if pad else chunk
    out.append(np.asarray(jitted(padded, jax.random.fold_in(key, start)))[:len(chunk)])
  return np.concatenate(out)


def check_attack_config(cfg: ml_collections.ConfigDict, data: Dataset) -> None:
  """The checks that need the loaded data (class count, image size)."""
  if not 0 <= cfg.target < data.num_classes:
    raise ConfigError('attack.target', cfg.target,
                      f'must be a class of {data.name}: 0..{data.num_classes - 1}')


def check_poisoning(config: ml_collections.ConfigDict, data: Dataset) -> int:
  """The checks of `config.attack` that need the data, made before anything is trained;
  returns the number of samples to poison."""
  cfg = config.attack
  check_attack_config(cfg, data)
  if cfg.name in ('badnets', 'trojan'):
    check_patch_fits(cfg, data)
  elif cfg.name == 'lc':
    lc.check_corners_fit(cfg, data)
  elif cfg.name in GENERATOR_ATTACKS:
    sample_specific.check_image_fits(cfg, data)
  return select.poison_count(data.y_train, cfg.target, cfg.label_mode, cfg.poison_rate,
                             cfg.target_class_rate, cfg.all_to_all)


def attack_keys(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(pattern, poison, cross) keys of the attack: the trigger pattern (blended noise, WaNet
  field, random patch), the per-image poison randomness, and WaNet's noise mode."""
  root = jax.random.fold_in(jax.random.key(seed), 0xB4D)
  return tuple(jax.random.fold_in(root, i) for i in range(3))


def build_attack(config: ml_collections.ConfigDict, data: Dataset,
                 context: AttackContext | None = None) -> Attack:
  """The `Attack` of `config.attack` on `data`, with the pattern a run of this seed uses."""
  check_attack_config(config.attack, data)
  return BUILDERS[config.attack.name](config.attack, data, attack_keys(config.seed)[0],
                                      context or AttackContext(unroll=config.perturb.unroll))


def poison_dataset(config: ml_collections.ConfigDict, data: Dataset,
                   context: AttackContext | None = None) -> Poisoned:
  """Poisons `data` as `config.attack` says, deterministically from `config.seed`.

  `context` carries the trained surrogate of the model-based attacks (lc, trojan) or the
  trigger generator of the sample-specific ones (iab, ssba); the run layer builds it
  (`abd_jax.surrogate.attack_context`)."""
  cfg = config.attack
  _, poison_key, cross_key = attack_keys(config.seed)
  rng = np.random.default_rng([config.seed, 0xB4D])
  y = data.y_train
  count = check_poisoning(config, data)
  idx = select.choose_indices(rng, y, cfg.target, cfg.label_mode, count, cfg.all_to_all)
  attack = build_attack(config, data, context)

  x_train, y_train = data.x_train.copy(), y.copy()
  x_train[idx] = apply_uint8(attack.poison, data.x_train[idx], poison_key)
  y_train[idx] = select.poisoned_labels(y[idx], cfg.target, cfg.label_mode, cfg.all_to_all,
                                        data.num_classes)
  extra = {}
  if attack.cross is not None:  # WaNet noise mode: warped with jitter, labels kept
    others = np.setdiff1d(np.arange(len(y)), idx)
    n_cross = min(int(round(attack.cross_ratio * len(idx))), len(others))
    cross_idx = np.sort(rng.choice(others, size=n_cross, replace=False))
    x_train[cross_idx] = apply_uint8(attack.cross, data.x_train[cross_idx], cross_key)
    extra['cross_indices'] = [int(i) for i in cross_idx]

  is_poisoned = np.zeros(len(y), bool)
  is_poisoned[idx] = True
  modified = np.union1d(idx, extra.get('cross_indices', [])).astype(np.int64)
  train = dataclasses.replace(data, x_train=x_train, y_train=y_train.astype(np.int32))
  manifest = build_manifest(
      attack=cfg.name, params=attack.params, target=cfg.target, label_mode=cfg.label_mode,
      all_to_all=cfg.all_to_all, poison_rate=cfg.poison_rate,
      target_class_rate=cfg.target_class_rate, indices=idx, seed=config.seed,
      num_train=len(y), extra=extra)
  return Poisoned(train, is_poisoned, modified, triggered_test_set(attack, cfg, data), manifest,
                  attack)


def triggered_test_set(attack: Attack, cfg: ml_collections.ConfigDict, data: Dataset,
                       strength: float | None = None) -> BackdoorTestSet:
  """Test images whose true label is not the target (all-to-all: every image), triggered at
  `strength` (default: the attack's own), with their true and target labels."""
  keep = np.ones(len(data.y_test), bool) if cfg.all_to_all else data.y_test != cfg.target
  labels = data.y_test[keep].astype(np.int32)
  s = attack.strength if strength is None else strength
  images = apply_uint8(lambda x, k: attack.trigger(x, s), data.x_test[keep])
  targets = select.poisoned_labels(labels, cfg.target, 'dirty', cfg.all_to_all, data.num_classes)
  return BackdoorTestSet(images, labels, targets)
