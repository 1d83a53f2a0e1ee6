"""Run configuration: the one schema every config file starts from, and its validation.

Config files in `configs/` call `base_config()` and override fields; `main.py` locks the
result so a mistyped `--config.x.y=...` override is an error. `validate()` checks every
value before any data is loaded or anything is compiled, and raises `ConfigError` naming
the field, the bad value and what is allowed.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any, Iterable

import ml_collections
from ml_collections import config_dict

from abd_jax.data import DATASET_NAMES
from abd_jax.errors import ConfigError
from abd_jax.data.resize import RESIZE_METHODS
from abd_jax.models import MODEL_NAMES, NORMS
from abd_jax.perturb import PERTURB_NAMES
from abd_jax.poison import ATTACK_NAMES, LABEL_MODES, PATTERNS
from abd_jax.poison.triggers import POSITIONS

OPTIMIZERS = ('sgd', 'adam')
DTYPES = ('float32', 'bfloat16')
BN_MODES = ('eval', 'batch')
UNROLL_MODES = ('auto', 'full', 'none')
DEFENSE_NAMES = ('none', 'pgd_steps', 'pipeline', 'aabl', 'spectral', 'activation_clustering',
                 'fp', 'nad', 'dpsgd', 'abl', 'dbd', 'dst', 'cbd')
# A-ABL's (AISec'24, Table 3) training-time comparison defenses besides ABL.
AABL_BASELINES = ('dbd', 'dst', 'cbd')
DST_TRAININGS = ('secure', 'at_clean', 'at_clean_suspicious')
# The comparison defenses of Gao et al. (TNNLS'23); fp and nad assume a small clean set
# (defense.clean_fraction of the training set).
GAO_BASELINES = ('fp', 'nad', 'dpsgd', 'abl')
AC_REDUCTIONS = ('ica', 'pca')
# A-ABL stage 2: the iFGSM probe, or a strong augmentation (data.strong_augment.POLICIES).
SPLIT_METHODS = ('ifgsm', 'randaugment', 'autoaugment')


def base_config() -> ml_collections.ConfigDict:
  """Every field with its default. The README's config reference documents each one."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.dataset = ml_collections.ConfigDict(dict(
      name='digits', data_dir='', image_size=0, resize_method='nearest',
      test_fraction=0.2, num_train=1024, num_test=256, num_classes=10, channels=3,
      crop_padding=0, flip=False))

  c.model = ml_collections.ConfigDict(dict(name='cnn', width=1.0, dtype='float32', norm='batch'))

  c.train = ml_collections.ConfigDict(dict(
      epochs=10, batch_size=128, optimizer='sgd', lr=0.1, momentum=0.9,
      weight_decay=5e-4, milestones=(), lr_decay=0.1))

  # The inner maximization used to build training inputs ('none' = standard training).
  # step_size unset (None) = derived from eps as the papers do (`resolved_step_size`).
  c.perturb = ml_collections.ConfigDict(dict(
      name='linf', eps=8 / 255, step_size=config_dict.placeholder(float), steps=10,
      random_start=True,
      bn_mode='eval', unroll='auto',
      # Spatial flow-field budget (L-inf of the flow in normalized [-1, 1] grid units),
      # its step, and the relaxation weight beta of adversarial vs random perturbation.
      eps_spatial=0.05, step_size_spatial=0.0125, beta=1.0,
      # mixup / cutmix: lambda ~ Beta(mix_alpha, mix_alpha).
      mix_alpha=1.0))

  # Robust accuracy is measured with L-inf PGD of this budget (random start); step_size
  # unset (None) = 2.5·eps/steps, 2/255 for the default 8/255 in 10 steps.
  c.eval = ml_collections.ConfigDict(dict(
      eps=8 / 255, step_size=config_dict.placeholder(float), steps=10, batch_size=500,
      every_epochs=1,
      robust=True, robust_subset=0))

  # Backdoor poisoning (README: attacks). Fields prefixed sig_/wanet_ belong to one attack.
  c.attack = ml_collections.ConfigDict(dict(
      name='none', label_mode='dirty', target=0, poison_rate=0.1, target_class_rate=0.0,
      all_to_all=False,
      alpha=1.0, patch_size=3, pattern='checkerboard', position='bottom_right',
      pattern_file='',
      sig_delta=40 / 255, sig_freq=6.0,
      wanet_k=4, wanet_s=0.5, wanet_grid_rescale=1.0, wanet_cross_ratio=2.0,
      lc_eps=16 / 255, lc_step_size=2 / 255, lc_steps=30, lc_amplitude=16 / 255,
      lc_test_amplitude=1.0, lc_corner_size=3,
      trojan_neurons=1, trojan_steps=100, trojan_step_size=0.05,
      # iab / ssba stamp each image with networks trained first in WORKDIR/generator_<name>
      # (or read from generator_workdir); generator_epochs is IAB's pattern phase.
      generator_workdir='', generator_epochs=600, generator_lr=0.01, generator_width=32,
      iab_mask_epochs=25, iab_mask_density=0.032, iab_lambda_div=1.0, iab_lambda_norm=100.0,
      iab_attack_rate=0.1, iab_cross_rate=0.1, iab_cross_ratio=0.0,
      ssba_bits=100, ssba_max_residual=8 / 255, ssba_l2_weight=2.0, ssba_l2_start=0.01,
      ssba_ramp_fraction=0.1,
      # lc / trojan need a trained model: a finished run's workdir, or one trained in
      # WORKDIR/surrogate (same data and model; AT with surrogate_eps, 0 = standard).
      surrogate_workdir='', surrogate_epochs=0, surrogate_eps=8 / 255))
  # Detection / anti-backdoor defenses (README: defenses). The detector is the model that
  # scores the untrusted training set, trained in WORKDIR/<phase1|stage1|detector>.
  c.defense = ml_collections.ConfigDict(dict(
      name='none',
      # Removal: floor(removal_factor * p * n); p = poison_rate, -1 = the attack's true rate.
      poison_rate=-1.0, removal_factor=1.5,
      detector_epochs=20, detector_eps=8 / 255, detector_lr=1e-3,
      # Algorithm 1 (ICLR'22): signed-gradient steps of size step_size, at most max_steps.
      step_size=2 / 255, max_steps=100, count_every_epochs=0,
      # A-ABL stage 2: iFGSM probe, symmetric cross-entropy, Otsu split.
      # split_method: 'ifgsm', or a strong augmentation in its place (A-ABL Table 5:
      # 'randaugment', 'autoaugment').
      split_method='ifgsm', split_eps=2 / 255, split_step_size=2 / 255, split_steps=5,
      sce_alpha=0.1, sce_beta=1.0, sce_label_clamp=1e-4,
      # Activation clustering: reduce to ac_dims, 2-means, flag a cluster <= ac_size_threshold.
      ac_dims=10, ac_reduction='ica', ac_size_threshold=0.35,
      # fp / nad: the defender's clean data, a clean_fraction of the training set taken
      # out of training; the backdoored model is fine-tuned on it (finetune_* epochs / lr;
      # NAD's teacher the same way).
      clean_fraction=0.05, finetune_epochs=10, finetune_lr=0.01,
      # A finished run (or an fp / nad workdir) whose model is the backdoored one, e.g. the
      # "no defense" run of a comparison; '' = train it in WORKDIR/backdoored.
      backdoored_workdir='',
      # Fine-pruning: prune fp_prune_ratio of the last stage's channels; with fp_target_acc
      # >= 0, fine-tune every ratio of fp_ratios and keep the one whose clean accuracy is
      # closest to it (Gao et al.'s grid search).
      fp_prune_ratio=0.5, fp_target_acc=-1.0,
      fp_ratios=tuple(round(0.05 * i, 2) for i in range(1, 20)),
      # NAD: attention distillation for nad_epochs; nad_betas weigh the last len(betas)
      # stages, nad_power is p of the attention map.
      nad_epochs=20, nad_betas=(500.0, 1000.0, 1000.0), nad_power=2.0,
      # DP-SGD: per-example gradients clipped to L2 dp_clip, Gaussian noise dp_noise·dp_clip.
      dp_clip=1.0, dp_noise=0.1,
      # ABL: local gradient ascent (threshold abl_gamma) for abl_isolation_epochs, isolate
      # the abl_isolation_ratio lowest-loss samples, train abl_finetune_epochs on the rest,
      # then unlearn (gradient ascent) on the isolated ones for abl_unlearn_epochs.
      abl_gamma=0.5, abl_isolation_epochs=20, abl_isolation_ratio=0.01,
      abl_finetune_epochs=60, abl_unlearn_epochs=20, abl_unlearn_lr=5e-4,
      # DBD (Huang et al., ICLR'22; `dbd`): SimCLR pre-training, a linear head on the frozen
      # backbone with SCE (sce_* fields), the dbd_labelled_fraction lowest-SCE samples kept
      # labelled; the configured training is the MixMatch fine-tuning of the whole model.
      dbd_simclr_epochs=100, dbd_simclr_batch=512, dbd_simclr_lr=0.4, dbd_temperature=0.5,
      dbd_projection_dim=128, dbd_warmup_epochs=10, dbd_warmup_lr=0.002,
      dbd_labelled_fraction=0.5, dbd_lambda_u=15.0, dbd_sharpen_t=0.5, dbd_mix_alpha=0.75,
      # D-ST (Chen et al., NeurIPS'22; `dst`): a CE model without augmentation, fine-tuned
      # with the class-centre loss, scores the sensitivity to rotation + translation (FCT);
      # the dst_clean_ratio lowest are clean, the dst_poison_ratio highest poisoned. Then
      # dst_train = 'secure': semi-supervised contrastive learning, and the configured
      # training is the mixed-CE linear head; or the configured training from scratch on
      # the clean ('at_clean') or clean + uncertain ('at_clean_suspicious') samples (A-ABL
      # Table 4).
      dst_sd_epochs=2, dst_sd_lr=0.01, dst_sd_finetune_epochs=10, dst_clean_ratio=0.2,
      dst_poison_ratio=0.05, dst_train='secure', dst_contrastive_epochs=200,
      dst_contrastive_batch=512, dst_contrastive_lr=0.5, dst_temperature=0.1,
      dst_base_temperature=0.07, dst_ascent_weight=0.001,
      # CBD (Zhang et al., CVPR'23; `cbd`): the backdoored model f_B trained for
      # cbd_backdoor_epochs at train.lr; the configured training is the deconfounded model,
      # with f_B's sample weights and cbd_mi_weight·I(f_B features; features) (0 = no critic).
      cbd_backdoor_epochs=5, cbd_mi_weight=0.01, cbd_critic_lr=0.2))

  c.checkpoint = ml_collections.ConfigDict(dict(every_epochs=1, max_to_keep=2))
  c.log = ml_collections.ConfigDict(dict(progress=True, every_steps=10))
  # Several processes (hosts) as one job: `jax.distributed.initialize`. The cluster's
  # environment gives the coordinator and the ids (TPU, SLURM, Open MPI); elsewhere give
  # coordinator_address ('host:port' of process 0), num_processes and process_id (each
  # process its own). A process that stops sending heartbeats for heartbeat_timeout
  # seconds is declared dead and the job stops. Not compared between a run and its resume.
  c.distributed = ml_collections.ConfigDict(dict(
      initialize=False, coordinator_address='', num_processes=0, process_id=-1,
      local_device_ids=(), initialization_timeout=300, heartbeat_timeout=100))
  return c


def to_dict(config: ml_collections.ConfigDict) -> dict:
  """Plain JSON-able dict (tuples become lists) — what `config.json` holds."""
  return json.loads(config.to_json())


def split_sweep(config: ml_collections.ConfigDict
                ) -> tuple[ml_collections.ConfigDict, ml_collections.ConfigDict | None]:
  """(the experiment config without its `sweep` block, a locked copy; a copy of that block,
  or None). A sweep config's experiment part is what `abd_jax.main` runs for one point.

  Works on a locked config; the copy keeps the field order, so its `to_json()` equals that
  of the same config built without a sweep block.
  """
  experiment = copy.deepcopy(config)
  block = None
  if 'sweep' in experiment:
    with experiment.unlocked():
      block = experiment['sweep']
      del experiment['sweep']
  experiment.lock()
  return experiment, block


# ---------------------------------------------------------------------------- step sizes

# Single-step attacks and the step their papers take when perturb.step_size is unset, as a
# multiple of eps: FGSM with random start 1.25·eps (Wong et al. 2020, "Fast is better than
# free"); least-likely-class FGSM one step of eps from x (Kurakin et al. 2017).
SINGLE_STEP_FACTORS = {'fgsm': 1.25, 'fgsm_targeted': 1.0}
# Iterative attacks: 2.5·eps/steps (Madry et al. 2018), i.e. 2/255 for 8/255 in 10 steps.
PGD_STEP_FACTOR = 2.5


def resolved_step_size(block: ml_collections.ConfigDict) -> float:
  """`block.step_size` (the perturb or eval block), or when it is unset (None) the step of
  the papers for the block's attack: 1.25·eps for fgsm, eps for fgsm_targeted, and
  2.5·eps/steps for the iterative ones (PGD, L2, ...). The eval block (no `name`) is PGD."""
  if block.step_size is not None:
    return float(block.step_size)
  name = block.name if 'name' in block else 'linf'
  if name in SINGLE_STEP_FACTORS:
    return SINGLE_STEP_FACTORS[name] * float(block.eps)
  return PGD_STEP_FACTOR * float(block.eps) / int(block.steps)


def hparam(block: ml_collections.ConfigDict, field: str) -> float:
  """The value of a traced hyperparameter `field` of the perturb or eval block, with an
  unset step size resolved (`resolved_step_size`)."""
  return resolved_step_size(block) if field == 'step_size' else block[field]


# ---------------------------------------------------------------------------- validation


def _one_of(field: str, value: Any, allowed: Iterable[str]) -> None:
  allowed = tuple(allowed)
  if value not in allowed:
    raise ConfigError(field, value, f'must be one of {", ".join(map(repr, allowed))}')


def _int_at_least(field: str, value: Any, low: int) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < low:
    raise ConfigError(field, value, f'must be an integer >= {low}')


def _number_in(field: str, value: Any, low: float, high: float,
               low_open: bool = False, high_open: bool = False) -> None:
  ok = isinstance(value, (int, float)) and not isinstance(value, bool)
  if ok:
    ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
  if not ok:
    lb, hb = '(' if low_open else '[', ')' if high_open else ']'
    raise ConfigError(field, value, f'must be a number in {lb}{low}, {high}{hb}')


def validate(c: ml_collections.ConfigDict) -> None:
  """Checks every field; raises `ConfigError` on the first bad value."""
  _int_at_least('seed', c.seed, 0)

  d = c.dataset
  _one_of('dataset.name', d.name, DATASET_NAMES)
  _int_at_least('dataset.image_size', d.image_size, 0)
  _one_of('dataset.resize_method', d.resize_method, RESIZE_METHODS)
  _number_in('dataset.test_fraction', d.test_fraction, 0.0, 1.0, low_open=True, high_open=True)
  _int_at_least('dataset.num_train', d.num_train, 1)
  _int_at_least('dataset.num_test', d.num_test, 1)
  _int_at_least('dataset.num_classes', d.num_classes, 2)
  _one_of('dataset.channels', d.channels, (1, 3))
  _int_at_least('dataset.crop_padding', d.crop_padding, 0)
  if not isinstance(d.flip, bool):
    raise ConfigError('dataset.flip', d.flip, 'must be true or false')

  m = c.model
  _one_of('model.name', m.name, MODEL_NAMES)
  _number_in('model.width', m.width, 0.0, 64.0, low_open=True)
  _one_of('model.dtype', m.dtype, DTYPES)
  _one_of('model.norm', m.norm, NORMS)

  t = c.train
  _int_at_least('train.epochs', t.epochs, 1)
  _int_at_least('train.batch_size', t.batch_size, 1)
  _one_of('train.optimizer', t.optimizer, OPTIMIZERS)
  _number_in('train.lr', t.lr, 0.0, 10.0, low_open=True)
  _number_in('train.momentum', t.momentum, 0.0, 1.0, high_open=True)
  _number_in('train.weight_decay', t.weight_decay, 0.0, 1.0)
  _number_in('train.lr_decay', t.lr_decay, 0.0, 1.0, low_open=True)
  milestones = tuple(t.milestones)
  for i, ms in enumerate(milestones):
    _int_at_least(f'train.milestones[{i}]', ms, 1)
  # Milestones past train.epochs are allowed (they never fire), so a shortened run
  # needs no second override.
  if list(milestones) != sorted(set(milestones)):
    raise ConfigError('train.milestones', milestones, 'must be strictly increasing epochs')

  p = c.perturb
  _one_of('perturb.name', p.name, PERTURB_NAMES)
  _number_in('perturb.eps', p.eps, 0.0, 1e3)
  if p.step_size is not None:  # None: derived from eps (resolved_step_size)
    _number_in('perturb.step_size', p.step_size, 0.0, 1e3)
  _int_at_least('perturb.steps', p.steps, 1)
  _one_of('perturb.bn_mode', p.bn_mode, BN_MODES)
  _one_of('perturb.unroll', p.unroll, UNROLL_MODES)
  _number_in('perturb.eps_spatial', p.eps_spatial, 0.0, 2.0)
  _number_in('perturb.step_size_spatial', p.step_size_spatial, 0.0, 2.0)
  _number_in('perturb.beta', p.beta, 0.0, 1.0)
  _number_in('perturb.mix_alpha', p.mix_alpha, 0.0, 1e3, low_open=True)
  if p.name in ('linf', 'fgsm', 'fgsm_targeted', 'ifgsm'):
    _number_in('perturb.eps', p.eps, 0.0, 1.0)  # an L-inf budget beyond 1 is the whole [0,1] cube

  e = c.eval
  _number_in('eval.eps', e.eps, 0.0, 1.0)
  if e.step_size is not None:
    _number_in('eval.step_size', e.step_size, 0.0, 1.0)
  _int_at_least('eval.steps', e.steps, 1)
  _int_at_least('eval.batch_size', e.batch_size, 1)
  _int_at_least('eval.every_epochs', e.every_epochs, 1)
  _int_at_least('eval.robust_subset', e.robust_subset, 0)

  a = c.attack
  _one_of('attack.name', a.name, ATTACK_NAMES)
  _one_of('attack.label_mode', a.label_mode, LABEL_MODES)
  _int_at_least('attack.target', a.target, 0)
  _number_in('attack.poison_rate', a.poison_rate, 0.0, 1.0)
  _number_in('attack.target_class_rate', a.target_class_rate, 0.0, 1.0)
  if a.all_to_all and a.label_mode != 'dirty':
    raise ConfigError('attack.all_to_all', a.all_to_all, "needs attack.label_mode='dirty'")
  _number_in('attack.alpha', a.alpha, 0.0, 1.0, low_open=True)
  _int_at_least('attack.patch_size', a.patch_size, 1)
  _one_of('attack.pattern', a.pattern, PATTERNS)
  _one_of('attack.position', a.position, POSITIONS)
  _number_in('attack.sig_delta', a.sig_delta, 0.0, 1.0, low_open=True)
  _number_in('attack.sig_freq', a.sig_freq, 0.0, 1e3, low_open=True)
  _int_at_least('attack.wanet_k', a.wanet_k, 2)
  _number_in('attack.wanet_s', a.wanet_s, 0.0, 1e3)
  _number_in('attack.wanet_grid_rescale', a.wanet_grid_rescale, 0.0, 1e3, low_open=True)
  _number_in('attack.wanet_cross_ratio', a.wanet_cross_ratio, 0.0, 100.0)
  _number_in('attack.lc_eps', a.lc_eps, 0.0, 1.0)
  _number_in('attack.lc_step_size', a.lc_step_size, 0.0, 1.0)
  _int_at_least('attack.lc_steps', a.lc_steps, 0)
  _number_in('attack.lc_amplitude', a.lc_amplitude, 0.0, 1.0, low_open=True)
  _number_in('attack.lc_test_amplitude', a.lc_test_amplitude, 0.0, 1.0, low_open=True)
  _int_at_least('attack.lc_corner_size', a.lc_corner_size, 1)
  _int_at_least('attack.trojan_neurons', a.trojan_neurons, 1)
  _int_at_least('attack.trojan_steps', a.trojan_steps, 1)
  _number_in('attack.trojan_step_size', a.trojan_step_size, 0.0, 1.0, low_open=True)
  _int_at_least('attack.surrogate_epochs', a.surrogate_epochs, 0)
  _number_in('attack.surrogate_eps', a.surrogate_eps, 0.0, 1.0)
  if a.surrogate_workdir and not os.path.isdir(os.path.join(a.surrogate_workdir, 'checkpoints')):
    raise ConfigError('attack.surrogate_workdir', a.surrogate_workdir,
                      'must be the workdir of a finished run (it has no checkpoints/ folder)')
  _int_at_least('attack.generator_epochs', a.generator_epochs, 1)
  _number_in('attack.generator_lr', a.generator_lr, 0.0, 10.0, low_open=True)
  _int_at_least('attack.generator_width', a.generator_width, 1)
  if a.generator_workdir and not os.path.isdir(os.path.expanduser(a.generator_workdir)):
    raise ConfigError('attack.generator_workdir', a.generator_workdir,
                      'no such folder: give the workdir of a run that trained the generator, or '
                      'its generator_<attack> folder')
  _int_at_least('attack.iab_mask_epochs', a.iab_mask_epochs, 1)
  _number_in('attack.iab_mask_density', a.iab_mask_density, 0.0, 1.0, low_open=True)
  _number_in('attack.iab_lambda_div', a.iab_lambda_div, 0.0, 1e6)
  _number_in('attack.iab_lambda_norm', a.iab_lambda_norm, 0.0, 1e6)
  _number_in('attack.iab_attack_rate', a.iab_attack_rate, 0.0, 1.0, low_open=True, high_open=True)
  _number_in('attack.iab_cross_rate', a.iab_cross_rate, 0.0, 1.0, high_open=True)
  if a.iab_attack_rate + a.iab_cross_rate >= 1:
    raise ConfigError('attack.iab_cross_rate', a.iab_cross_rate,
                      f'with attack.iab_attack_rate={a.iab_attack_rate:g} leaves no clean '
                      'images in a batch: the two must sum to less than 1')
  _number_in('attack.iab_cross_ratio', a.iab_cross_ratio, 0.0, 100.0)
  _int_at_least('attack.ssba_bits', a.ssba_bits, 1)
  _number_in('attack.ssba_max_residual', a.ssba_max_residual, 0.0, 1.0, low_open=True)
  _number_in('attack.ssba_l2_weight', a.ssba_l2_weight, 0.0, 1e6)
  _number_in('attack.ssba_l2_start', a.ssba_l2_start, 0.0, 1.0)
  _number_in('attack.ssba_ramp_fraction', a.ssba_ramp_fraction, 0.0, 1.0)
  if a.name == 'iab' and int(a.iab_attack_rate * t.batch_size) < 1:
    raise ConfigError('attack.iab_attack_rate', a.iab_attack_rate,
                      f'gives no backdoor image in a batch of train.batch_size={t.batch_size}: '
                      f'must be at least 1/{t.batch_size}')
  if a.name in ('iab', 'ssba') and a.label_mode != 'dirty':
    raise ConfigError('attack.label_mode', a.label_mode,
                      f"the {a.name} attack is dirty-label: use 'dirty'")
  if a.name == 'lc' and a.label_mode != 'clean':
    raise ConfigError('attack.label_mode', a.label_mode, "the lc attack is clean-label: use 'clean'")
  if a.name == 'blended' and a.pattern_file and not os.path.isfile(os.path.expanduser(a.pattern_file)):
    raise ConfigError('attack.pattern_file', a.pattern_file, 'no such file')
  df = c.defense
  _one_of('defense.name', df.name, DEFENSE_NAMES)
  rate = df.poison_rate
  if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (rate == -1 or 0 <= rate <= 1):
    raise ConfigError('defense.poison_rate', rate,
                      "must be -1 (the configured attack's true rate) or a number in [0, 1]")
  _number_in('defense.removal_factor', df.removal_factor, 0.0, 100.0, low_open=True)
  _int_at_least('defense.detector_epochs', df.detector_epochs,
                0 if df.name in ('spectral', 'activation_clustering') else 1)
  _number_in('defense.detector_eps', df.detector_eps, 0.0, 1.0)
  _number_in('defense.detector_lr', df.detector_lr, 0.0, 10.0, low_open=True)
  _number_in('defense.step_size', df.step_size, 0.0, 1.0, low_open=True)
  _int_at_least('defense.max_steps', df.max_steps, 1)
  _int_at_least('defense.count_every_epochs', df.count_every_epochs, 0)
  _one_of('defense.split_method', df.split_method, SPLIT_METHODS)
  _number_in('defense.split_eps', df.split_eps, 0.0, 1.0)
  _number_in('defense.split_step_size', df.split_step_size, 0.0, 1.0)
  _int_at_least('defense.split_steps', df.split_steps, 1)
  _number_in('defense.sce_alpha', df.sce_alpha, 0.0, 1e3)
  _number_in('defense.sce_beta', df.sce_beta, 0.0, 1e3)
  if df.sce_alpha == 0 and df.sce_beta == 0:
    raise ConfigError('defense.sce_beta', df.sce_beta, 'sce_alpha and sce_beta cannot both be 0')
  _number_in('defense.sce_label_clamp', df.sce_label_clamp, 0.0, 1.0, low_open=True, high_open=True)
  _int_at_least('defense.ac_dims', df.ac_dims, 1)
  _one_of('defense.ac_reduction', df.ac_reduction, AC_REDUCTIONS)
  _number_in('defense.ac_size_threshold', df.ac_size_threshold, 0.0, 1.0)
  _number_in('defense.clean_fraction', df.clean_fraction, 0.0, 1.0, low_open=True, high_open=True)
  _int_at_least('defense.finetune_epochs', df.finetune_epochs, 1)
  if not isinstance(df.backdoored_workdir, str):
    raise ConfigError('defense.backdoored_workdir', df.backdoored_workdir,
                      "must be a run's workdir or '' (train the backdoored model)")
  _number_in('defense.finetune_lr', df.finetune_lr, 0.0, 10.0, low_open=True)
  _number_in('defense.fp_prune_ratio', df.fp_prune_ratio, 0.0, 1.0, high_open=True)
  target = df.fp_target_acc
  if isinstance(target, bool) or not isinstance(target, (int, float)) or not (
      target == -1 or 0 <= target <= 1):
    raise ConfigError('defense.fp_target_acc', target,
                      'must be -1 (prune defense.fp_prune_ratio) or a clean accuracy in [0, 1]')
  ratios = df.fp_ratios
  if (not isinstance(ratios, (tuple, list)) or not ratios or any(
      isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 <= r < 1 for r in ratios)):
    raise ConfigError('defense.fp_ratios', ratios, 'must be a non-empty list of ratios in [0, 1)')
  _int_at_least('defense.nad_epochs', df.nad_epochs, 1)
  betas = df.nad_betas
  if (not isinstance(betas, (tuple, list)) or not betas or any(
      isinstance(b, bool) or not isinstance(b, (int, float)) or b < 0 for b in betas)):
    raise ConfigError('defense.nad_betas', betas, 'must be a non-empty list of weights >= 0')
  _number_in('defense.nad_power', df.nad_power, 0.0, 16.0, low_open=True)
  _number_in('defense.dp_clip', df.dp_clip, 0.0, 1e6, low_open=True)
  _number_in('defense.dp_noise', df.dp_noise, 0.0, 1e3)
  if df.name == 'dpsgd' and c.perturb.name in ('mixup', 'cutmix'):
    raise ConfigError('perturb.name', c.perturb.name,
                      "DP-SGD bounds each example's gradient; mixing puts two examples in one: "
                      "use another regime with defense.name='dpsgd'")
  if df.name == 'dpsgd' and c.model.norm != 'group':
    raise ConfigError('model.norm', c.model.norm,
                      "DP-SGD clips per-example gradients, which BatchNorm's batch statistics "
                      "mix across examples: use model.norm='group' with defense.name='dpsgd'")
  _number_in('defense.abl_gamma', df.abl_gamma, -1e6, 1e6)
  _int_at_least('defense.abl_isolation_epochs', df.abl_isolation_epochs, 1)
  _number_in('defense.abl_isolation_ratio', df.abl_isolation_ratio, 0.0, 1.0,
             low_open=True, high_open=True)
  _int_at_least('defense.abl_finetune_epochs', df.abl_finetune_epochs, 0)
  _int_at_least('defense.abl_unlearn_epochs', df.abl_unlearn_epochs, 1)
  _number_in('defense.abl_unlearn_lr', df.abl_unlearn_lr, 0.0, 10.0, low_open=True)
  for field in ('dbd_simclr_epochs', 'dbd_simclr_batch', 'dbd_projection_dim', 'dbd_warmup_epochs',
                'dst_sd_epochs', 'dst_contrastive_epochs', 'dst_contrastive_batch',
                'cbd_backdoor_epochs'):
    _int_at_least(f'defense.{field}', df[field], 1)
  _int_at_least('defense.dst_sd_finetune_epochs', df.dst_sd_finetune_epochs, 0)
  for field in ('dbd_simclr_lr', 'dbd_warmup_lr', 'dst_sd_lr', 'dst_contrastive_lr',
                'cbd_critic_lr'):
    _number_in(f'defense.{field}', df[field], 0.0, 100.0, low_open=True)
  for field in ('dbd_temperature', 'dbd_sharpen_t', 'dst_temperature', 'dst_base_temperature'):
    _number_in(f'defense.{field}', df[field], 0.0, 100.0, low_open=True)
  _number_in('defense.dbd_labelled_fraction', df.dbd_labelled_fraction, 0.0, 1.0,
             low_open=True, high_open=True)
  _number_in('defense.dbd_lambda_u', df.dbd_lambda_u, 0.0, 1e4)
  _number_in('defense.dbd_mix_alpha', df.dbd_mix_alpha, 0.0, 100.0, low_open=True)
  _number_in('defense.dst_clean_ratio', df.dst_clean_ratio, 0.0, 1.0, low_open=True)
  _number_in('defense.dst_poison_ratio', df.dst_poison_ratio, 0.0, 1.0)
  if df.dst_clean_ratio + df.dst_poison_ratio > 1.0:
    raise ConfigError('defense.dst_poison_ratio', df.dst_poison_ratio,
                      f'dst_clean_ratio + dst_poison_ratio must be at most 1 '
                      f'(dst_clean_ratio = {df.dst_clean_ratio:g})')
  _one_of('defense.dst_train', df.dst_train, DST_TRAININGS)
  _number_in('defense.dst_ascent_weight', df.dst_ascent_weight, 0.0, 1e3)
  _number_in('defense.cbd_mi_weight', df.cbd_mi_weight, 0.0, 1e3)
  if df.name == 'dbd' and c.perturb.name != 'none':
    raise ConfigError('perturb.name', c.perturb.name,
                      "defense.name='dbd' trains with MixMatch, which has no inner maximization "
                      "or mixing regime: must be 'none'")
  _int_at_least('checkpoint.every_epochs', c.checkpoint.every_epochs, 1)
  _int_at_least('checkpoint.max_to_keep', c.checkpoint.max_to_keep, 1)
  _int_at_least('log.every_steps', c.log.every_steps, 1)
  validate_distributed(c.distributed)


def validate_distributed(ds: ml_collections.ConfigDict) -> None:
  """The `distributed` block: given together, the three launch fields name a job JAX does
  not detect itself (`coordinator_address` 'host:port', `num_processes`, `process_id`)."""
  if not isinstance(ds.initialize, bool):
    raise ConfigError('distributed.initialize', ds.initialize, 'must be true or false')
  address = ds.coordinator_address
  host, _, port = str(address).rpartition(':')
  if not isinstance(address, str) or (address and not (
      host and port.isdigit() and 0 < int(port) < 65536)):
    raise ConfigError('distributed.coordinator_address', address,
                      "must be '' (from the cluster's environment) or 'host:port' of process 0, "
                      "e.g. '10.0.0.1:1234' (port 1-65535)")
  _int_at_least('distributed.num_processes', ds.num_processes, 0)
  _int_at_least('distributed.process_id', ds.process_id, -1)
  given = {'distributed.coordinator_address': bool(address),
           'distributed.num_processes': ds.num_processes > 0,
           'distributed.process_id': ds.process_id >= 0}
  if any(given.values()):
    if not ds.initialize:
      field = next(f for f, g in given.items() if g)
      raise ConfigError(field, ds[field.split('.')[1]],
                        'is used only with distributed.initialize=true')
    missing = [f for f, g in given.items() if not g]
    if missing:
      raise ConfigError(missing[0], ds[missing[0].split('.')[1]],
                        'must be given too: with ' + ' and '.join(f for f, g in given.items() if g)
                        + ' set, a job JAX does not detect needs coordinator_address, '
                        'num_processes and process_id')
    if ds.process_id >= ds.num_processes:
      raise ConfigError('distributed.process_id', ds.process_id,
                        f'must be in [0, {ds.num_processes - 1}] '
                        f'(distributed.num_processes = {ds.num_processes})')
  ids = ds.local_device_ids
  if (not isinstance(ids, (tuple, list)) or len(set(ids)) != len(ids)
      or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids)):
    raise ConfigError('distributed.local_device_ids', ids,
                      'must be a tuple of distinct device ids >= 0 (empty: every local device)')
  if ids and not ds.initialize:
    raise ConfigError('distributed.local_device_ids', ids,
                      'is used only with distributed.initialize=true')
  _int_at_least('distributed.initialization_timeout', ds.initialization_timeout, 1)
  _int_at_least('distributed.heartbeat_timeout', ds.heartbeat_timeout, 1)


def device_batches(c: ml_collections.ConfigDict, phases: bool = True) -> list[tuple[str, int]]:
  """(field, value) of every batch the run splits over the devices: train and eval, and
  with `phases` the contrastive phase of dbd or of dst's 'secure' training (the other
  phases fit their batch to the devices themselves)."""
  batches = [('train.batch_size', c.train.batch_size), ('eval.batch_size', c.eval.batch_size)]
  d = c.defense
  if phases and d.name == 'dbd':
    batches.append(('defense.dbd_simclr_batch', d.dbd_simclr_batch))
  elif phases and d.name == 'dst' and d.dst_train == 'secure':
    batches.append(('defense.dst_contrastive_batch', d.dst_contrastive_batch))
  return batches


def validate_for_devices(c: ml_collections.ConfigDict, num_devices: int,
                         phases: bool = True) -> None:
  """Checks that need the device count (known only once JAX is up): every batch of
  `device_batches(c, phases)` splits evenly over the devices."""
  for field, value in device_batches(c, phases):
    if value % num_devices:
      raise ConfigError(field, value, f'must be a multiple of the {num_devices} devices')


# ---------------------------------------------------------------------------- presets


def apply_digits_scale(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The offline preset: scikit-learn digits, the small CNN, and digits-scale budgets.

  Digits pixels are near binary, so useful L-inf budgets are MNIST-like (0.05–0.4), far
  above CIFAR's 8/255; a 0.1 ball with 0.025 steps is what a small CNN can still learn to
  resist in a few epochs.
  """
  c.dataset.name, c.dataset.image_size = 'digits', 0
  c.dataset.crop_padding, c.dataset.flip = 0, False
  c.model.name, c.model.width, c.model.dtype = 'cnn', 1.0, 'float32'
  c.train.update(epochs=15, batch_size=64, optimizer='sgd', lr=0.05, momentum=0.9,
                 weight_decay=5e-4, milestones=(10,), lr_decay=0.1)
  c.perturb.update(eps=0.1, step_size=0.025, steps=5, eps_spatial=0.15, step_size_spatial=0.0375)
  if c.perturb.name in SINGLE_STEP_FACTORS:  # one step: the paper's multiple of eps
    c.perturb.step_size = None
  if c.perturb.name == 'l2':  # 64 near-binary pixels: an L2 ball of 1 ~ one flipped pixel
    c.perturb.update(eps=1.0, step_size=0.25)
  if c.perturb.name == 'random_linf':  # random noise needs a larger ball to matter
    c.perturb.eps = 0.3
  c.eval.update(eps=0.1, step_size=0.025, steps=10, batch_size=120)
  # 8x8 images: the surrogate of lc / trojan needs no more than a few epochs, and a
  # 16/255 LC perturbation is invisible against near-binary pixels.
  c.attack.update(surrogate_epochs=5, surrogate_eps=0.1, lc_eps=0.2, lc_step_size=0.05,
                  lc_steps=10, lc_amplitude=0.3)
  if c.attack.name == 'trojan':
    c.attack.patch_size = 3
  if c.attack.name == 'iab':  # the original's MNIST generator (16 channels); short phases
    c.attack.update(generator_width=16, generator_epochs=30, iab_mask_epochs=10)
  if c.attack.name == 'ssba':  # 16 bits in 64 near-binary pixels; the secret first
    c.attack.update(generator_width=16, generator_epochs=60, generator_lr=1e-3, ssba_bits=16,
                    ssba_max_residual=0.1, ssba_l2_start=0.3, ssba_ramp_fraction=0.2)
  if c.attack.name == 'sig':  # an 8-pixel row holds at most 4 periods; 6 would alias
    c.attack.sig_freq = 2.0
  # Defenses: digits-scale probes (a 2/255 iFGSM or step would not move near-binary
  # pixels) and short detector runs.
  # Measured on BadNets 10% (README, defenses): poisons need more steps than clean samples
  # only once the warm-up AT budget is 0.2 or more, and stage 1 of A-ABL needs 30 epochs
  # before the backdoor resists the iFGSM probe.
  c.defense.update(detector_eps=0.2, detector_epochs=20, step_size=0.02, max_steps=100,
                   split_eps=0.3, split_step_size=0.1)
  if c.defense.name == 'aabl':
    c.defense.detector_epochs = 30
  # fp / nad: 5% of digits is 71 images, one batch: fine-tune 40 steps at the digits lr
  # (CIFAR's 10 epochs of 2,500 images are 390 steps). abl: phases in proportion to the
  # 15-epoch digits run.
  c.defense.update(finetune_epochs=40, finetune_lr=0.05, nad_epochs=40,
                   abl_isolation_epochs=5, abl_finetune_epochs=10, abl_unlearn_epochs=5)
  # dbd / dst: contrastive phases on batches of 128 (a 512 batch is a third of digits);
  # the final phases scaled like the 15-epoch digits run.
  c.defense.update(dbd_simclr_epochs=40, dbd_simclr_batch=128, dst_sd_epochs=3,
                   dst_contrastive_epochs=40, dst_contrastive_batch=128, cbd_backdoor_epochs=3)
  if c.defense.name == 'dbd':
    c.train.update(epochs=15, optimizer='adam', lr=0.002, weight_decay=0.0, milestones=())
  if c.defense.name == 'dst' and c.defense.dst_train == 'secure':
    c.train.update(epochs=20, batch_size=128, lr=1.0, weight_decay=0.0, milestones=())
  return c


def apply_cifar10_recipe(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """CIFAR-10 ResNet-18 (ICLR'22 basic setting): SGD 0.9, wd 5e-4, lr 0.1 / 10 at 60 and
  90 of 120 epochs, batch 128, crop 4 + flip, PGD-10 8/255 step 2/255."""
  c.dataset.update(name='cifar10', image_size=0, crop_padding=4, flip=True)
  c.model.update(name='resnet18', width=1.0, dtype='float32')
  c.train.update(epochs=120, batch_size=128, optimizer='sgd', lr=0.1, momentum=0.9,
                 weight_decay=5e-4, milestones=(60, 90), lr_decay=0.1)
  c.perturb.update(name='linf', eps=8 / 255, step_size=2 / 255, steps=10)
  c.eval.update(eps=8 / 255, step_size=2 / 255, steps=10, batch_size=500)
  return c


def apply_attack_defaults(c: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """The field's defaults for attack `name` (DESIGN.md / BackdoorBench / the seeds).

  badnets, blended, wanet, trojan, iab, ssba: dirty-label, 10% of the training set,
  target 0 (A-ABL).
  sig, lc: clean-label, half of the target class (A-ABL's CLB setting).
  """
  a = c.attack
  a.name, a.target = name, 0
  dirty = dict(label_mode='dirty', poison_rate=0.1, target_class_rate=0.0)
  clean = dict(label_mode='clean', poison_rate=0.0, target_class_rate=0.5)
  if name == 'badnets':
    a.update(alpha=1.0, patch_size=3, pattern='checkerboard', position='bottom_right', **dirty)
  elif name == 'blended':
    a.update(alpha=0.2, pattern_file='', **dirty)
  elif name == 'sig':
    a.update(sig_delta=40 / 255, sig_freq=6.0, **clean)
  elif name == 'wanet':
    a.update(wanet_k=4, wanet_s=0.5, wanet_grid_rescale=1.0, wanet_cross_ratio=2.0, **dirty)
  elif name == 'lc':
    a.update(lc_eps=16 / 255, lc_step_size=2 / 255, lc_steps=30, **clean)
  elif name == 'trojan':
    a.update(alpha=1.0, patch_size=5, position='bottom_right', **dirty)
  elif name == 'iab':  # Nguyen & Tran's CIFAR-10 settings (their config.py)
    a.update(generator_epochs=600, generator_lr=0.01, generator_width=32, iab_mask_epochs=25,
             iab_mask_density=0.032, iab_lambda_div=1.0, iab_lambda_norm=100.0,
             iab_attack_rate=0.1, iab_cross_rate=0.1, iab_cross_ratio=0.0, **dirty)
  elif name == 'ssba':  # StegaStamp's Adam 1e-4, 100 bits, l2 weight 2, ramped in
    a.update(generator_epochs=20, generator_lr=1e-4, generator_width=32, ssba_bits=100,
             ssba_max_residual=8 / 255, ssba_l2_weight=2.0, ssba_l2_start=0.01,
             ssba_ramp_fraction=0.1, **dirty)
  else:
    raise ValueError(f'no defaults for attack {name!r}')
  return c


def apply_iclr22_basic(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The ICLR'22 basic setting: clean-label BadNets, 3x3 checkerboard, target 2 (bird),
  5% of the target class (250 of 5,000)."""
  c.attack.update(name='badnets', label_mode='clean', target=2, poison_rate=0.0,
                  target_class_rate=0.05, patch_size=3, pattern='checkerboard', alpha=1.0)
  return c


def apply_regime(c: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """Training-regime defaults of Gao et al. (TNNLS'23) on CIFAR-10.

  cat: relaxed spatial (eps_s 0.05) then relaxed L-inf (4/255), beta 0.8 (Algorithm 1);
  spatial: flow-field AT, eps_s 0.05; l2: L2 PGD, eps 128/255; random_linf: random sign
  noise of 16/255 (Table I); mixup / cutmix: Beta(1, 1) mixing.
  """
  p = c.perturb
  p.name = name
  if name == 'cat':
    p.update(eps=4 / 255, step_size=1 / 255, eps_spatial=0.05, step_size_spatial=0.0125,
             beta=0.8, steps=10)
  elif name == 'spatial':
    p.update(eps_spatial=0.05, step_size_spatial=0.0125, beta=1.0, steps=10)
  elif name == 'l2':
    p.update(eps=128 / 255, step_size=32 / 255, steps=10)
  elif name == 'random_linf':
    p.update(eps=16 / 255)
  elif name in ('mixup', 'cutmix'):
    p.mix_alpha = 1.0
  else:
    raise ValueError(f'no regime defaults for {name!r}')
  return c


def apply_defense(c: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """The seeds' settings for defense `name` (DESIGN.md, reference hyperparameters).

  pgd_steps / pipeline (ICLR'22, Sec. 4): detector AT eps 8/255 for T = 20 epochs, steps
  of beta = 2/255, remove 1.5·p·n. aabl (AISec'24, Sec. 6): stage 1 Adam 1e-3 for 20
  epochs; iFGSM 2/255, 5 steps of 2/255; SCE alpha 0.1, beta 1; stage 3 PGD-AT 8/255 for
  100 epochs, lr 0.1 / 10 at 50, 75, 90. spectral / activation_clustering: Tran et al.'s
  1.5·eps per class; Chen et al.'s ICA to 10 dimensions, 2-means, relative size <= 0.35.
  fp / nad / dpsgd / abl (Gao et al., TNNLS'23, Sec. V): standard training; 5% clean data
  for fp and nad (NAD at lr 0.01); DP-SGD with GroupNorm, sigma 0.1, clip 1; ABL with
  gamma 0, 1% isolated.
  """
  c.defense.update(base_config().defense.to_dict(), name=name)
  if name in GAO_BASELINES:
    # Gao et al. (TNNLS'23, Sec. V): the defenses guard a standardly trained model.
    c.perturb.name = 'none'
  if name == 'dpsgd':  # Gao: GroupNorm for BatchNorm, sigma = 0.1
    c.model.norm = 'group'
  if name == 'abl':  # Gao: gamma = 0 "for a better detection rate" (ABL's own: 0.5)
    c.defense.abl_gamma = 0.0
  if name == 'aabl':
    c.train.update(epochs=100, milestones=(50, 75, 90), lr=0.1, lr_decay=0.1)
    c.perturb.update(name='linf', eps=8 / 255, step_size=2 / 255, steps=10)
  if name in AABL_BASELINES:  # their own training, no AT
    c.perturb.name = 'none'
  if name == 'dbd':  # the MixMatch fine-tuning: Adam 2e-3, 190 epochs (+ 10 of warm-up)
    c.train.update(epochs=190, batch_size=128, optimizer='adam', lr=0.002, weight_decay=0.0,
                   milestones=())
  if name == 'dst':  # the linear head: SGD lr 5, no decay, batch 512, 10 epochs
    c.train.update(epochs=10, batch_size=512, optimizer='sgd', lr=5.0, momentum=0.9,
                   weight_decay=0.0, milestones=())
  if name == 'cbd':  # f_D: SGD 0.1 (÷10 at 20 and 70), wd 1e-4, batch 64, 100 epochs
    c.train.update(epochs=100, batch_size=64, optimizer='sgd', lr=0.1, momentum=0.9,
                   weight_decay=1e-4, milestones=(20, 70), lr_decay=0.1)
  return c


def apply_dst_adversarial(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A-ABL Table 4: PGD-AT from scratch (A-ABL's stage 3: 8/255, 10 steps of 2/255, 100
  epochs, lr 0.1 ÷ 10 at 50, 75, 90) on D-ST's clean + uncertain samples."""
  c = apply_cifar10_recipe(c) if c.dataset.name == 'cifar10' else c
  c.defense.dst_train = 'at_clean_suspicious'
  c.train.update(epochs=100, batch_size=128, optimizer='sgd', lr=0.1, momentum=0.9,
                 weight_decay=5e-4, milestones=(50, 75, 90), lr_decay=0.1)
  c.perturb.update(name='linf', eps=8 / 255, step_size=2 / 255, steps=10)
  return c


def apply_smoke_scale(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Every phase as short as it can be: each `*epochs` field at most 1 (no lr steps), each
  `*steps` field at most 2. Checks that a config runs end to end in seconds (`:digits,smoke`);
  its numbers mean nothing."""
  for name, block in c.items():
    if isinstance(block, ml_collections.ConfigDict) and name != 'log':
      for field, value in block.items():
        if isinstance(value, int) and not isinstance(value, bool):
          if field.endswith('epochs') and value > 1:
            block[field] = 1
          elif field.endswith('steps') and value > 2:
            block[field] = 2
  c.train.milestones = ()
  return c


PRESETS = {'digits': apply_digits_scale, 'smoke': apply_smoke_scale}


def digits_without_attack(preset: str | None) -> bool:
  """True for a preset list that asks for the digits scale but names no attack."""
  names = (preset or '').split(',')
  return 'digits' in names and not any(a in names for a in ATTACK_NAMES)


def apply_preset(c: ml_collections.ConfigDict, preset: str | None, file: str,
                 extra: dict | None = None) -> ml_collections.ConfigDict:
  """`configs/X.py:a,b` applies presets a then b; no preset -> the file's default.
  Every file accepts `digits` (the offline scale) and an attack name (that attack at its
  defaults, e.g. `configs/cat.py:blended,digits`); `extra` adds file-specific ones."""
  presets = {**PRESETS, **{a: (lambda cc, a=a: apply_attack_defaults(cc, a)) for a in ATTACK_NAMES
                            if a != 'none'}, **(extra or {})}
  for name in filter(None, (preset or '').split(',')):
    if name not in presets:
      raise ValueError(f'unknown preset {name!r}: {file} accepts '
                       + ', '.join(repr(p) for p in presets) + ' (comma-separated)')
    c = presets[name](c)
  return c


def load_file(spec: str) -> ml_collections.ConfigDict:
  """`'configs/X.py[:preset]'` -> the file's `get_config(preset)`, unvalidated."""
  import importlib.util
  path, _, preset = spec.partition(':')
  module_spec = importlib.util.spec_from_file_location('abd_jax_config_file', path)
  if module_spec is None or not os.path.isfile(path):
    raise FileNotFoundError(f'no config file at {path!r}')
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(preset or None)


def from_file(spec: str) -> ml_collections.ConfigDict:
  """`'configs/X.py[:preset]'` -> the validated, locked config, as the command line builds
  it (for notebooks and scripts)."""
  config = load_file(spec)
  validate(config)
  config.lock()
  return config
