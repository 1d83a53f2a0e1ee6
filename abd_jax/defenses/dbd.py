"""Backdoor defense via decoupling the training process (DBD; Huang et al., ICLR 2022),
as its code (SCLBD/DBD) runs it on CIFAR-10:

    WORKDIR/simclr   self-supervised SimCLR pre-training of the backbone on the training
                     images without labels (`contrastive`, 'simclr': two views, MLP
                     projection to defense.dbd_projection_dim, temperature 0.5, SGD 0.4,
                     wd 1e-4, batch 512, 100 epochs)
    WORKDIR/warmup   a fresh linear head on the frozen backbone, trained with symmetric
                     cross-entropy (α 0.1, β 1; Adam 2e-3, 10 epochs)
    detection.json   every sample's SCE under that model; the dbd_labelled_fraction (50%)
                     lowest keep their labels, the rest become unlabelled (dbd_split.png)
    WORKDIR          the configured training: MixMatch fine-tuning of the whole model
                     (`mixmatch`: λ_u 15 ramped up linearly over the run, T 0.5, α 0.75;
                     Adam 2e-3 for 190 epochs)

Where this differs from the original code (each for one fused, fixed-shape program): the
SimCLR lr is constant (the original's cosine over 1,000 epochs is still 0.39 at the
epoch-100 checkpoint it uses), the views have no Gaussian blur, and the projection head
has no BatchNorm; the warm-up keeps the backbone's BatchNorm statistics fixed (the
original's train mode updates them) and starts the fine-tuning's Adam afresh; the split is
made once on the un-augmented images (the original redraws it with the fine-tuned model
at every epoch, on augmented images); an epoch here is one pass over the set (the
original's is 1,024 batches of 64 + 64).
"""

from __future__ import annotations

import os

import jax
import numpy as np

from abd_jax import parallel, plots
from abd_jax.data import Dataset
from abd_jax.defenses import abl, detection
from abd_jax.defenses.detection_files import DETECTION_NPZ, cached, save_npz
from abd_jax.defenses.phases import phase_config
from abd_jax.defenses.scoring import map_samples
from abd_jax.train import train_and_evaluate
from abd_jax.train.objective import Objective
from abd_jax.train.programs import feature_width, make_model
from abd_jax.train.restore import load_run_variables
from abd_jax.train.sce import symmetric_cross_entropy
from abd_jax.train.subrun import run_once

SIMCLR_DIR, WARMUP_DIR = 'simclr', 'warmup'
SIMCLR_FIELDS = ('dbd_simclr_epochs', 'dbd_simclr_batch', 'dbd_simclr_lr', 'dbd_temperature',
                 'dbd_projection_dim')
WARMUP_FIELDS = SIMCLR_FIELDS + ('dbd_warmup_epochs', 'dbd_warmup_lr', 'sce_alpha', 'sce_beta',
                                 'sce_label_clamp')
REPORTED = ('clean_acc', 'asr')


def projection_objective(config, data: Dataset, loss: str, dim: int) -> Objective:
  """A contrastive objective whose MLP projection head is F -> F -> dim (F: the model's
  feature width), as DBD's and D-ST's 512 -> 512 -> 128 on ResNet-18."""
  width = feature_width(make_model(config.model, data.num_classes), data.image_shape)
  return Objective(loss, projection=(width, int(dim)))


def backbone_only(variables: dict) -> dict:
  """A pre-trained model's variables without its head (the classifier starts fresh)."""
  params = {k: v for k, v in variables['params'].items() if k not in ('head', 'head_hidden')}
  return {'params': params, 'batch_stats': variables.get('batch_stats', {})}


def pretrain_contrastive(config, data: Dataset, run_dir: str, objective: Objective, hp: dict,
                         what: str) -> dict:
  """Runs (or reuses) a contrastive pre-training sub-run; returns its backbone variables."""
  run_once(config, run_dir,
           lambda c, rd: train_and_evaluate(c, data, rd, objective=objective, extra_hp=hp,
                                            evaluation=False), what)
  _, variables = load_run_variables(run_dir, data, fallback=config, objective=objective)
  return backbone_only(variables)


def sce_losses(model, variables: dict, data: Dataset, d, batch_size: int) -> np.ndarray:
  """float32 [N]: every training sample's SCE under `variables` (BatchNorm in inference
  mode, no augmentation)."""

  def per_batch(variables, x, y, valid, alpha, beta, clamp):
    del valid
    return symmetric_cross_entropy(model.apply(variables, x, train=False), y, alpha, beta, clamp)

  return map_samples(per_batch, variables, data.x_train, data.y_train, batch_size,
                     parallel.make_mesh(), np.float32(d.sce_alpha), np.float32(d.sce_beta),
                     np.float32(d.sce_label_clamp))


def decoupling(config, data: Dataset, workdir: str, backdoor,
               poisoned: np.ndarray) -> dict:
  d = config.defense
  sconfig = phase_config(config, SIMCLR_FIELDS, epochs=d.dbd_simclr_epochs,
                         batch_size=d.dbd_simclr_batch, optimizer='sgd', lr=d.dbd_simclr_lr,
                         momentum=0.9, weight_decay=1e-4, milestones=())
  sconfig.dataset.crop_padding = 0  # the step draws its own views
  backbone = pretrain_contrastive(
      sconfig, data, os.path.join(workdir, SIMCLR_DIR),
      projection_objective(config, data, 'simclr', d.dbd_projection_dim),
      {'temperature': np.float32(d.dbd_temperature)}, 'DBD self-supervised pre-training')

  wconfig = phase_config(config, WARMUP_FIELDS, epochs=d.dbd_warmup_epochs, optimizer='adam',
                         lr=d.dbd_warmup_lr, weight_decay=0.0, milestones=())
  warmup_dir = os.path.join(workdir, WARMUP_DIR)
  sce_hp = {'sce_alpha': np.float32(d.sce_alpha), 'sce_beta': np.float32(d.sce_beta),
            'sce_clamp': np.float32(d.sce_label_clamp)}
  wresults = run_once(wconfig, warmup_dir,
                      lambda c, rd: train_and_evaluate(c, data, rd, backdoor=backdoor,
                                                       objective=Objective('sce', head_only=True),
                                                       extra_hp=sce_hp, init_variables=backbone),
                      'DBD linear head on the frozen backbone')
  model, head_variables = load_run_variables(warmup_dir, data, fallback=wconfig)

  def split() -> dict:
    losses = sce_losses(model, head_variables, data, d, config.eval.batch_size)
    # The int(N·ε) lowest, as the original's np.argsort: ABL's isolation rule.
    labelled = abl.isolate_lowest(losses, d.dbd_labelled_fraction)
    save_npz(workdir, score=losses, removed=~labelled, poisoned=poisoned)
    threshold = float(losses[labelled].max())
    if jax.process_index() == 0:
      plots.loss_split_histogram(
          os.path.join(workdir, 'dbd_split.png'), losses, poisoned, threshold,
          xlabel='symmetric cross-entropy of the linear head on the self-supervised backbone',
          threshold_name='labelled threshold', selected='labelled', selected_below=True,
          selected_mask=labelled)
    # "removed" = the samples whose labels are dropped; a high loss is suspicious.
    summary = detection.detection_summary(~labelled, poisoned, losses)
    summary.update(labelled_threshold=threshold, **{f'warmup_{k}': wresults[k]
                                                    for k in REPORTED if k in wresults})
    return summary

  summary = cached(workdir, split)
  with np.load(os.path.join(workdir, DETECTION_NPZ)) as saved:
    labelled = ~np.asarray(saved['removed'], bool)
  steps = config.train.epochs * (len(data.y_train) // config.train.batch_size)
  hp = {'labelled': labelled, 'lambda_u': np.float32(d.dbd_lambda_u),
        'rampup_steps': np.float32(max(1, steps)), 'sharpen_t': np.float32(d.dbd_sharpen_t),
        'mix_alpha': np.float32(d.dbd_mix_alpha)}
  results = train_and_evaluate(config, data, workdir, backdoor=backdoor,
                               objective=Objective('mixmatch'), extra_hp=hp,
                               init_variables=head_variables)
  results.update(summary)
  return results
