"""Decoupling-based secure training (D-ST; Chen et al., NeurIPS 2022, "Effective backdoor
defense by exploiting sensitivity of poisoned samples"), as its code
(SCLBD/Effective_backdoor_defense) runs it on CIFAR-10:

    WORKDIR/sd            the sample-distinguishment model: cross-entropy on the poisoned
                          set without augmentation (SGD 0.01, batch 128, 2 epochs)
    WORKDIR/sd_finetune   ... fine-tuned with the class-centre separation loss (10 epochs;
                          `objective.class_center_similarity`)
    detection.json        FCT, every sample's feature change under a strong transformation
                          (`sensitivity`); the dst_clean_ratio (20%) least sensitive are
                          clean, the dst_poison_ratio (5%) most sensitive poisoned, the
                          rest uncertain (dst_split.png)
    dst_train = 'secure' (D-ST):
      WORKDIR/contrastive semi-supervised contrastive learning from scratch on every sample
                          (`contrastive`, 'supcon': τ 0.1, τ_base 0.07, SGD 0.5, batch
                          512, 200 epochs)
      WORKDIR             the configured training: a linear head on the frozen encoder with
                          the mixed cross-entropy on the clean and poisoned subsets (descent
                          on clean, ascent weighted dst_ascent_weight on poisoned; SGD lr 5,
                          batch 512, 10 epochs)
    dst_train = 'at_clean' | 'at_clean_suspicious' (A-ABL Table 4):
      WORKDIR             the configured training (PGD-AT in `configs/dst.py:at`) from
                          scratch on the clean (and uncertain) subset

Where this differs from the original code: the split is by rank over one draw of the
transformation per sample (the original draws the transformation again after fixing the
quantile thresholds, so its subset sizes are only near 20% / 5%); the SD model is the run's
model (the original's has a max-pool stem), its fine-tuning starts a fresh optimizer at
the same constant lr (the original continues a cosine schedule at about 0.01); the
contrastive lr is constant (the original's cosine from 0.5 with a 10-epoch warm-up); the
head trains with the run's crop and flip (the original uses the contrastive views).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from abd_jax import parallel, plots
from abd_jax.data import Dataset
from abd_jax.data.strong_augment import rotate, translate_x, translate_y
from abd_jax.defenses import detection
from abd_jax.defenses.dbd import pretrain_contrastive, projection_objective
from abd_jax.defenses.detection_files import DETECTION_NPZ, cached, save_npz
from abd_jax.defenses.phases import phase_config
from abd_jax.defenses.scoring import map_samples
from abd_jax.train import train_and_evaluate
from abd_jax.train.objective import CLEAN, POISONED, SUSPICIOUS, Objective
from abd_jax.train.restore import load_run_variables
from abd_jax.train.subrun import run_once

SD_DIR, SD_FINETUNE_DIR, CONTRASTIVE_DIR = 'sd', 'sd_finetune', 'contrastive'
SD_FIELDS = ('dst_sd_epochs', 'dst_sd_lr', 'dst_sd_finetune_epochs')
CONTRASTIVE_FIELDS = SD_FIELDS + ('dst_clean_ratio', 'dst_poison_ratio', 'dst_contrastive_epochs',
                                  'dst_contrastive_batch', 'dst_contrastive_lr', 'dst_temperature',
                                  'dst_base_temperature')
SD_BATCH = 128  # the original's
PROJECTION_DIM = 128  # the original's 512 -> 512 -> 128 head on ResNet-18
MAX_ROTATION, MAX_TRANSLATION = 180.0, 0.2  # RandomRotation(180), RandomAffine(translate=0.2)
SENSITIVITY_KEY = 0xFC7  # the FCT transformations' stream of the seed


def sensitivity_transform(key: jax.Array, image: jax.Array) -> jax.Array:
  """D-ST's τ on one image [H,W,C]: a rotation by U(−180°, 180°) about the centre, then a
  shift by round(U(−0.2, 0.2)·size) pixels in each direction; nearest pixel, zeros enter."""
  k_angle, k_x, k_y = jax.random.split(key, 3)
  h, w = image.shape[:2]
  angle = jax.random.uniform(k_angle, (), minval=-MAX_ROTATION, maxval=MAX_ROTATION)
  dx = jnp.round(jax.random.uniform(k_x, (), minval=-MAX_TRANSLATION * w,
                                    maxval=MAX_TRANSLATION * w))
  dy = jnp.round(jax.random.uniform(k_y, (), minval=-MAX_TRANSLATION * h,
                                    maxval=MAX_TRANSLATION * h))
  return translate_y(translate_x(rotate(image, angle), dx), dy)


def feature_change(model, variables: dict, x: jax.Array, x_transformed: jax.Array) -> jax.Array:
  """FCT (D-ST Eq. 1, as the code computes it): mean over the F feature dimensions of
  (f(x) − f(τ(x)))², f the pooled penultimate features in inference mode. -> [B]."""
  def features(images):
    _, state = model.apply(variables, images, train=False, mutable=['intermediates'])
    return state['intermediates']['features'][0].astype(jnp.float32)

  return jnp.mean((features(x) - features(x_transformed)) ** 2, axis=-1)


def sensitivity(model, variables: dict, images: np.ndarray, labels: np.ndarray, key: jax.Array,
                batch_size: int, mesh) -> np.ndarray:
  """float32 [N]: every sample's FCT for one draw of τ (drawn with fold_in(key, row))."""

  def per_batch(variables, x, y, valid, rows):
    del y, valid
    keys = jax.vmap(lambda r: jax.random.fold_in(key, r))(rows)
    return feature_change(model, variables, x, jax.vmap(sensitivity_transform)(keys, x))

  return map_samples(per_batch, variables, images, labels, batch_size, mesh, with_rows=True)


def split_sizes(n: int, clean_ratio: float, poison_ratio: float) -> tuple[int, int]:
  """(clean, poisoned) subset sizes of `split_by_sensitivity` for N = n: they depend on
  the ratios only, so a split too small to train on is found before anything trains."""
  n_clean = int(np.floor(clean_ratio * n + 1e-9))
  return n_clean, min(n - n_clean, int(np.floor(poison_ratio * n + 1e-9)))


def trained_count(n: int, clean_ratio: float, poison_ratio: float, how: str) -> int:
  """How many samples the final phase of `dst_train = how` trains on (`_trained_rows`)."""
  n_clean, n_poison = split_sizes(n, clean_ratio, poison_ratio)
  return {'secure': n_clean + n_poison, 'at_clean': n_clean,
          'at_clean_suspicious': n - n_poison}[how]


def split_by_sensitivity(scores: np.ndarray, clean_ratio: float, poison_ratio: float) -> np.ndarray:
  """int8 [N] flags: the floor(clean_ratio·N) lowest scores CLEAN, the floor(poison_ratio·N)
  highest POISONED, the others SUSPICIOUS (ties: the lower index ranks lower)."""
  n = len(scores)
  order = np.argsort(np.asarray(scores, np.float64), kind='stable')
  flags = np.full(n, SUSPICIOUS, np.int8)
  n_clean, n_poison = split_sizes(n, clean_ratio, poison_ratio)
  flags[order[:n_clean]] = CLEAN
  if n_poison:
    flags[order[n - n_poison:]] = POISONED
  return flags


def _subset_summary(flags: np.ndarray, poisoned: np.ndarray) -> dict:
  out = {}
  for name, value in (('clean', CLEAN), ('suspicious', SUSPICIOUS), ('poisoned', POISONED)):
    members = flags == value
    out[f'dst_{name}_size'] = int(members.sum())
    out[f'dst_{name}_poisons'] = int((members & poisoned).sum())
  return out


def _trained_rows(flags: np.ndarray, how: str) -> np.ndarray:
  """bool [N]: the samples the final phase trains on."""
  if how == 'secure':
    return flags != SUSPICIOUS
  if how == 'at_clean':
    return flags == CLEAN
  return flags != POISONED


def secure_training(config, data: Dataset, workdir: str, backdoor,
                    poisoned: np.ndarray) -> dict:
  d = config.defense
  mesh = parallel.make_mesh()
  sd_train = dict(batch_size=parallel.fitted_batch(SD_BATCH, len(data.y_train)), optimizer='sgd', lr=d.dst_sd_lr,
                  momentum=0.9, weight_decay=5e-4, milestones=())
  sconfig = phase_config(config, SD_FIELDS[:2], epochs=d.dst_sd_epochs, **sd_train)
  sconfig.dataset.update(crop_padding=0, flip=False)  # the original trains it without augmentation
  sd_dir = os.path.join(workdir, SD_DIR)
  run_once(sconfig, sd_dir, lambda c, rd: train_and_evaluate(c, data, rd), 'D-ST SD model')
  model, variables = load_run_variables(sd_dir, data, fallback=sconfig)
  if d.dst_sd_finetune_epochs:
    fconfig = phase_config(config, SD_FIELDS, epochs=d.dst_sd_finetune_epochs, **sd_train)
    fconfig.dataset.update(crop_padding=0, flip=False)
    f_dir = os.path.join(workdir, SD_FINETUNE_DIR)
    run_once(fconfig, f_dir,
             lambda c, rd: train_and_evaluate(c, data, rd, objective=Objective('class_centers'),
                                              init_variables=variables),
             'D-ST SD model fine-tuning')
    model, variables = load_run_variables(f_dir, data, fallback=fconfig)

  def distinguish() -> dict:
    key = jax.random.fold_in(jax.random.key(config.seed), SENSITIVITY_KEY)
    scores = sensitivity(model, variables, data.x_train, data.y_train, key,
                         config.eval.batch_size, mesh)
    flags = split_by_sensitivity(scores, d.dst_clean_ratio, d.dst_poison_ratio)
    removed = flags == POISONED
    save_npz(workdir, score=scores, removed=removed, poisoned=poisoned, flags=flags)
    if jax.process_index() == 0:
      plots.score_histogram(os.path.join(workdir, 'dst_split.png'), scores, poisoned, removed,
                            'FCT: mean squared feature change under rotation + translation')
    summary = detection.detection_summary(removed, poisoned, scores)
    summary.update(_subset_summary(flags, poisoned))
    return summary

  summary = cached(workdir, distinguish)
  with np.load(os.path.join(workdir, DETECTION_NPZ)) as saved:
    flags = np.asarray(saved['flags'], np.int8)
  rows = _trained_rows(flags, d.dst_train)
  summary.update(trained_fraction=float(rows.mean()),
                 trained_poison_rate=float(poisoned[rows].mean()) if rows.any() else None)
  if d.dst_train != 'secure':
    results = train_and_evaluate(config, data.train_rows(rows), workdir, backdoor=backdoor)
    results.update(summary)
    return results

  cconfig = phase_config(config, CONTRASTIVE_FIELDS, epochs=d.dst_contrastive_epochs,
                         batch_size=d.dst_contrastive_batch, optimizer='sgd',
                         lr=d.dst_contrastive_lr, momentum=0.9, weight_decay=1e-4, milestones=())
  cconfig.dataset.crop_padding = 0  # the step draws its own views
  hp = {'sample_flags': flags, 'temperature': np.float32(d.dst_temperature),
        'contrast_scale': np.float32(d.dst_temperature / d.dst_base_temperature)}
  encoder = pretrain_contrastive(cconfig, data, os.path.join(workdir, CONTRASTIVE_DIR),
                                 projection_objective(config, data, 'supcon', PROJECTION_DIM), hp,
                                 'D-ST semi-supervised contrastive learning')
  results = train_and_evaluate(
      config, data.train_rows(rows), workdir, backdoor=backdoor,
      objective=Objective('mixed_ce', head_only=True),
      extra_hp={'sample_flags': flags[rows], 'ascent_weight': np.float32(d.dst_ascent_weight)},
      init_variables=encoder)
  results.update(summary)
  return results
