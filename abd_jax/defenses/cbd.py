"""Causality-inspired backdoor defense (CBD; Zhang et al., CVPR 2023, "Backdoor defense via
deconfounded representation learning"), as its code (zaixizhang/CBD) runs it on CIFAR-10:

    WORKDIR/backdoored  f_B: cross-entropy on the poisoned set for defense.cbd_backdoor_epochs
                        (5) at a constant train.lr (0.1); early training learns the
                        backdoor's shortcut before the clean features
    WORKDIR             the configured training (SGD 0.1, ÷ 10 at 20 and 70, 100 epochs)
                        of the deconfounded model f_D with
                          L = mean_i w_i·CE_D,i + Î(r; z),  w_i ∝ CE_B,i / (CE_B,i + CE_D,i)
                        (`objective.cbd_weights`), r and z the penultimate features of f_B
                        and f_D, Î the critic's estimate (`critic`; weight
                        defense.cbd_mi_weight = the code's 0.01, 0 = no critic)

The original code's default (`--disentangle 0`) leaves the mutual-information term out;
the paper's method, built here by default, has it. Differences: the critic is updated in
the same step as f_D on the same batch (the original runs a separate pass over the data
for it each epoch), and its SGD is not Nesterov. f_B runs in inference mode, as the
original's eval().
"""

from __future__ import annotations

import os

import numpy as np

from abd_jax.data import Dataset
from abd_jax.defenses.phases import phase_config
from abd_jax.train import train_and_evaluate
from abd_jax.train.objective import Objective
from abd_jax.train.programs import feature_width, make_model
from abd_jax.train.restore import load_run_variables
from abd_jax.train.subrun import run_once

BACKDOORED_DIR = 'backdoored'
REPORTED = ('clean_acc', 'asr')


def cbd_objective(config, data: Dataset) -> Objective:
  """Weighted cross-entropy, with a critic as wide as the features (the original's
  hidden = 64 for WRN-16-1's 64 features) unless cbd_mi_weight is 0."""
  d = config.defense
  width = 0
  if d.cbd_mi_weight > 0:
    width = feature_width(make_model(config.model, data.num_classes), data.image_shape)
  return Objective('weighted_ce', critic=width, critic_lr=float(d.cbd_critic_lr))


def deconfounded_training(config, data: Dataset, workdir: str, backdoor) -> dict:
  d = config.defense
  bconfig = phase_config(config, ('cbd_backdoor_epochs',), epochs=d.cbd_backdoor_epochs,
                         milestones=())
  bdir = os.path.join(workdir, BACKDOORED_DIR)
  bresults = run_once(bconfig, bdir,
                      lambda c, rd: train_and_evaluate(c, data, rd, backdoor=backdoor),
                      'CBD backdoored model f_B')
  _, teacher = load_run_variables(bdir, data, fallback=bconfig)
  results = train_and_evaluate(config, data, workdir, backdoor=backdoor,
                               objective=cbd_objective(config, data),
                               extra_hp={'teacher': teacher,
                                         'mi_weight': np.float32(d.cbd_mi_weight)})
  results.update({f'backdoored_{k}': bresults[k] for k in REPORTED if k in bresults})
  results['cbd_mi_weight'] = float(d.cbd_mi_weight)
  return results
