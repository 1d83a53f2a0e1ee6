"""Training with a defense: the orchestration behind `defense.name`.

    none                   train on the (poisoned) training set as configured
    pgd_steps              train as configured, then count Algorithm 1's steps on the final
                           model for every training sample and apply Algorithm 2's removal
                           rule (ICLR'22 seed): detection only, the model is not retrained.
                           With 20 epochs of eps-8/255 AT this *is* the PGD defense.
    pipeline               phase 1 = pgd_steps with a warm-up detector (defense.detector_eps AT
                           for defense.detector_epochs) in WORKDIR/phase1; phase 2 = the
                           configured training from scratch on the purified set
    aabl                   stage 1 = naive training (Adam, defense.detector_lr) in
                           WORKDIR/stage1; stage 2 = iFGSM + SCE + Otsu split; stage 3 = the
                           configured training (PGD-AT in configs/aabl.py) on D_vul
    spectral               detector = the configured training in WORKDIR/detector; spectral
    activation_clustering  signatures (Tran et al. 2018) / activation clustering (Chen et al.
                           2018) on its penultimate features; retraining on the kept samples
    fp, nad                fine-pruning / neural attention distillation of a backdoored
                           model with the defender's clean data (`finetuning`)
    dpsgd                  the configured training with DP-SGD (per-example clipping and
                           noise in the step; `model.norm='group'`)
    abl                    anti-backdoor learning: LGA isolation in WORKDIR/isolation, the
                           lowest-loss samples isolated, WORKDIR/finetune on the rest, then
                           unlearning (`abl`)
    dbd                    decoupling: SimCLR backbone (WORKDIR/simclr), linear head with SCE
                           (WORKDIR/warmup), the low-SCE half labelled, MixMatch (`dbd`)
    dst                    D-ST: FCT sensitivity of an SD model (WORKDIR/sd, sd_finetune), a
                           clean / uncertain / poisoned split, then contrastive learning
                           (WORKDIR/contrastive) + a mixed-CE head, or AT on the split (`dst`)
    cbd                    CBD: an early backdoored model (WORKDIR/backdoored), then the
                           configured training reweighted against it with an MI penalty (`cbd`)

Every detecting defense (all but fp, nad, dpsgd, cbd) writes `detection.npz` (per-sample score,
removed flag, poison flag) and `detection.json` (its result keys) in the workdir before the
final training, so a run killed in its last phase resumes there without scoring again,
and a figure:
`step_counts.png`, `sce_split.png`, `detection_scores.png`, `abl_split.png`, `dbd_split.png`
or `dst_split.png`.
"""

from __future__ import annotations

import logging
import math
import os

import jax
import ml_collections
import numpy as np

from abd_jax import config as config_lib
from abd_jax import evaluate, parallel, plots
from abd_jax.data import Dataset
from abd_jax.defenses import aabl, abl, cbd, dbd, detection, dst, finetuning, scoring
from abd_jax.defenses.clustering import activation_clusters
from abd_jax.defenses.detection_files import DETECTION_NPZ, cached, save_npz
from abd_jax.defenses.sizes import check_sizes
from abd_jax.defenses.spectral import remove_top_per_class, spectral_scores
from abd_jax.defenses.step_count import count_dataset_steps
from abd_jax.errors import ConfigError
from abd_jax.train import train_and_evaluate
from abd_jax.train.objective import Objective
from abd_jax.train.restore import load_run_variables
from abd_jax.train.subrun import run_once

PHASE_DIRS = {'pipeline': 'phase1', 'aabl': 'stage1', 'spectral': 'detector',
              'activation_clustering': 'detector'}
DETECTOR_KEYS = ('clean_acc', 'robust_acc', 'asr')


def assumed_rate(config: ml_collections.ConfigDict, poisoned: np.ndarray) -> float:
  """defense.poison_rate, or (when -1) the true poisoned fraction of the training set."""
  rate = config.defense.poison_rate
  return float(poisoned.mean()) if rate == -1 else float(rate)


def assumed_class_rate(config: ml_collections.ConfigDict, poisoned: np.ndarray,
                       labels: np.ndarray) -> float:
  """Tran et al.'s eps for per-class removal: defense.poison_rate read as the poisoned
  fraction of a class, or (when -1) the true fraction in the most poisoned class."""
  if config.defense.poison_rate != -1:
    return float(config.defense.poison_rate)
  fractions = [poisoned[labels == c].mean() for c in np.unique(labels)]
  return float(max(fractions)) if fractions else 0.0


def detector_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config of the defense's detector run (see the module docstring)."""
  c = config.copy_and_resolve_references()
  d = config.defense
  base = config_lib.base_config().defense
  # Only the fields that shape the detector are kept, so that changing e.g. the Otsu
  # probe's budget reuses the detector instead of refusing its run directory.
  c.defense.update(base.to_dict())
  if d.name == 'pipeline':
    c.defense.update(name='pgd_steps', poison_rate=d.poison_rate, removal_factor=d.removal_factor,
                     step_size=d.step_size, max_steps=d.max_steps)
    c.train.epochs = d.detector_epochs
    # eps/4 is the 8/255 -> 2/255 step ratio of the seed's AT.
    c.perturb.update(name='linf', eps=d.detector_eps, step_size=d.detector_eps / 4,
                     random_start=True)
    if d.detector_eps == 0:
      c.perturb.name = 'none'
  elif d.name == 'aabl':
    c.train.update(epochs=d.detector_epochs, optimizer='adam', lr=d.detector_lr,
                   weight_decay=0.0, milestones=())
    c.perturb.name = 'none'
  else:
    c.train.epochs = d.detector_epochs or config.train.epochs
  c.eval.robust = bool(config.eval.robust and c.perturb.name != 'none')
  return c


def _kept_after_removal(config: ml_collections.ConfigDict, labels: np.ndarray,
                        poisoned: np.ndarray, factor: float) -> int:
  """How many training samples the removal of `config.defense.name` (pipeline: the top
  floor(factor·p·n) overall; spectral: the top floor(min(1, factor·p)·n_c) of each class)
  keeps; it depends on the counts only, not on the scores."""
  n = len(labels)
  if config.defense.name == 'spectral':
    fraction = min(1.0, factor * assumed_class_rate(config, poisoned, labels))
    return sum(int(m) - min(int(m), math.floor(fraction * int(m) + 1e-9))
               for m in np.unique(labels, return_counts=True)[1])
  return n - detection.removal_count(assumed_rate(config, poisoned), n, factor)


def check_removal_keeps_a_batch(config: ml_collections.ConfigDict, labels: np.ndarray,
                                poisoned: np.ndarray) -> None:
  """Before any detector is trained: the pipeline and spectral defenses retrain on what
  their removal rule keeps, which must be at least one batch. Raises ConfigError naming
  defense.removal_factor, with the largest factor the assumed poison rate allows."""
  d, batch = config.defense, config.train.batch_size
  if d.name not in ('pipeline', 'spectral'):
    return
  kept = _kept_after_removal(config, labels, poisoned, d.removal_factor)
  if kept >= batch:
    return
  spectral = d.name == 'spectral'
  rate = (assumed_class_rate(config, poisoned, labels) if spectral
          else assumed_rate(config, poisoned))
  source = (f'defense.poison_rate = {d.poison_rate:g}' if d.poison_rate != -1 else
            f"the attack's true poison rate{' in its most poisoned class' if spectral else ''}, "
            'as defense.poison_rate = -1')
  rule = ('floor(min(1, removal_factor · p) · n_c) of each class c' if spectral
          else 'floor(removal_factor · p · n)')
  if _kept_after_removal(config, labels, poisoned, 0.0) < batch:
    allowed = 'no factor does: the training set is smaller than one batch'
  else:
    # The largest factor that still keeps a batch (kept falls as the factor grows).
    low, high = 0.0, float(d.removal_factor)
    for _ in range(60):
      mid = (low + high) / 2
      if _kept_after_removal(config, labels, poisoned, mid) >= batch:
        low = mid
      else:
        high = mid
    allowed = f'with this p it must be at most {math.floor(low * 1e4) / 1e4:g}'
  raise ConfigError('defense.removal_factor', d.removal_factor,
                    f'the {d.name} defense removes {rule} of the n = {len(labels)} training '
                    f'samples, with p = {rate:.4g} ({source}); that keeps {kept}, fewer than '
                    f'one batch (train.batch_size = {batch}): {allowed}')


def train_with_defense(config: ml_collections.ConfigDict, data: Dataset, workdir: str,
                       backdoor: evaluate.BackdoorTestSet | None,
                       poisoned: np.ndarray | None, modified: np.ndarray | None = None) -> dict:
  """Runs `config.defense.name` around training and returns the run's results with the
  defense's keys (DESIGN.md) added. `poisoned` is the true poison flag [N] (None or all
  False without an attack); it is used only to report, never to decide. `modified` (int
  indices, default: the poisoned rows) are the rows the attack changed: the clean data
  of fp / nad is drawn from the others, as the defender's clean data would be."""
  name = config.defense.name
  if poisoned is None:
    poisoned = np.zeros(len(data.y_train), bool)
  check_sizes(config, len(data.y_train), int(poisoned.sum()), jax.device_count())
  if name in ('none', 'dpsgd'):  # DP-SGD is in the step (train.optim, model.norm='group')
    results = train_and_evaluate(config, data, workdir, backdoor=backdoor)
    if name == 'dpsgd':
      results.update(dp_clip=config.defense.dp_clip, dp_noise=config.defense.dp_noise)
    return results
  if name in ('fp', 'nad'):
    untouched = ~poisoned
    if modified is not None:
      untouched[np.asarray(modified, np.int64)] = False
    run = finetuning.fine_pruning if name == 'fp' else finetuning.attention_distillation
    return run(config, data, workdir, backdoor, untouched)
  if name == 'abl':
    return _anti_backdoor_learning(config, data, workdir, backdoor, poisoned)
  if name == 'dbd':
    return dbd.decoupling(config, data, workdir, backdoor, poisoned)
  if name == 'dst':
    return dst.secure_training(config, data, workdir, backdoor, poisoned)
  if name == 'cbd':
    return cbd.deconfounded_training(config, data, workdir, backdoor)
  check_removal_keeps_a_batch(config, data.y_train, poisoned)
  if name == 'pgd_steps':
    hook = _count_during_training(config, data, poisoned, workdir)
    results = train_and_evaluate(config, data, workdir, backdoor=backdoor, epoch_hook=hook)
    results.update(cached(workdir, lambda: _count_and_remove(config, data, poisoned, workdir)))
    return results

  phase_dir = os.path.join(workdir, PHASE_DIRS[name])

  def detect() -> dict:
    dconfig = detector_config(config)
    dresults = run_once(
        dconfig, phase_dir,
        lambda c, d: train_with_defense(c, data, d, backdoor, poisoned), f'{name} detector')
    if name == 'pipeline':  # phase 1 is a pgd_steps run: take over its detection
      # (computed again from phase 1's final model should its detection files be damaged)
      summary = cached(phase_dir, lambda: _count_and_remove(dconfig, data, poisoned, phase_dir),
                        announce=False)
      with np.load(os.path.join(phase_dir, DETECTION_NPZ)) as saved:
        save_npz(workdir, **saved)
    else:
      model, variables = load_run_variables(phase_dir, data, fallback=dconfig)
      summary = DETECTORS[name](config, model, variables, data, poisoned, workdir)
    summary.update({f'detector_{k}': dresults[k] for k in DETECTOR_KEYS if k in dresults})
    return summary

  summary = cached(workdir, detect)
  with np.load(os.path.join(workdir, DETECTION_NPZ)) as saved:
    kept = ~saved['removed']
  if kept.sum() < config.train.batch_size:
    # The field that decides how much is removed.
    field = {'aabl': 'split_eps', 'activation_clustering': 'ac_size_threshold'}.get(
        name, 'removal_factor')
    raise ConfigError(f'defense.{field}', config.defense[field],
                      f'the {name} defense kept {int(kept.sum())} of {len(kept)} training samples, '
                      f'fewer than one batch (train.batch_size = {config.train.batch_size}): '
                      f'another {field} keeps another number, and reuses the trained detector')
  results = train_and_evaluate(config, data.train_rows(kept), workdir, backdoor=backdoor)
  results.update(summary)
  return results


STEP_COUNTS_DIR = 'step_counts'


def _count(config, model, variables, data: Dataset):
  d = config.defense
  return count_dataset_steps(model, variables, data.x_train, data.y_train,
                             step_size=d.step_size, max_steps=d.max_steps,
                             batch_size=config.eval.batch_size, mesh=parallel.make_mesh(),
                             unroll=config.perturb.unroll)


def _count_during_training(config, data: Dataset, poisoned: np.ndarray, workdir: str):
  """The epoch hook that counts steps every `defense.count_every_epochs` epochs (Fig. 5's
  evolution), saving WORKDIR/step_counts/epoch_EEEE.npy; None when that is 0."""
  every = config.defense.count_every_epochs
  if not every:
    return None

  def hook(model, variables, epoch: int) -> dict:
    if epoch % every or epoch == config.train.epochs:  # the final count is made after training
      return {}
    steps = _count(config, model, variables, data).steps
    if jax.process_index() == 0:
      os.makedirs(os.path.join(workdir, STEP_COUNTS_DIR), exist_ok=True)
      np.save(os.path.join(workdir, STEP_COUNTS_DIR, f'epoch_{epoch:04d}.npy'), steps)
    return _step_statistics(steps, poisoned)

  return hook


def _step_statistics(steps: np.ndarray, poisoned: np.ndarray) -> dict:
  clean = ~poisoned
  return {'mean_steps_clean': float(steps[clean].mean()) if clean.any() else None,
          'mean_steps_poisoned': float(steps[poisoned].mean()) if poisoned.any() else None,
          'detection_auroc': detection.detection_auroc(steps, poisoned)}


def _count_and_remove(config, data: Dataset, poisoned: np.ndarray, workdir: str) -> dict:
  """Algorithms 1 and 2 on the run's final model."""
  d = config.defense
  model, variables = load_run_variables(workdir, data, fallback=config)
  counts = _count(config, model, variables, data)
  n = len(counts.steps)
  removed = detection.remove_top(counts.steps,
                                 detection.removal_count(assumed_rate(config, poisoned), n,
                                                         d.removal_factor))
  save_npz(workdir, score=counts.steps, removed=removed, poisoned=poisoned,
            max_steps=np.int32(d.max_steps))
  summary = detection.detection_summary(removed, poisoned, counts.steps)
  summary.update(_step_statistics(counts.steps, poisoned),
                 capped_fraction=float(counts.capped.mean()))
  if jax.process_index() == 0:
    by_epoch = {}
    folder = os.path.join(workdir, STEP_COUNTS_DIR)
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
      digits = name[len('epoch_'):-len('.npy')]
      if not (name.startswith('epoch_') and name.endswith('.npy') and digits.isdigit()):
        continue
      epoch = int(digits)
      if epoch < config.train.epochs:
        try:  # only drawn: a damaged intermediate count leaves its curve out
          by_epoch[epoch] = np.load(os.path.join(folder, name))
        except Exception as e:  # numpy raises many types for a damaged file
          logging.warning('%s cannot be read (%s); left out of step_counts.png',
                          os.path.join(folder, name), type(e).__name__)
    by_epoch[config.train.epochs] = counts.steps
    plots.step_count_densities(os.path.join(workdir, 'step_counts.png'), by_epoch, poisoned,
                               d.max_steps,
                               title=f'min. steps of {d.step_size:.4g} to flip the prediction')
  return summary


def _aabl_split(config, model, variables, data: Dataset, poisoned: np.ndarray, workdir: str):
  d = config.defense
  sce = dict(sce_alpha=d.sce_alpha, sce_beta=d.sce_beta, label_clamp=d.sce_label_clamp,
             batch_size=config.eval.batch_size, mesh=parallel.make_mesh())
  if d.split_method == 'ifgsm':
    losses = aabl.adversarial_sce(model, variables, data.x_train, data.y_train,
                                  eps=d.split_eps, step_size=d.split_step_size,
                                  steps=d.split_steps, unroll=config.perturb.unroll, **sce)
  else:  # Table 5: a strong augmentation in place of the adversarial perturbation
    key = jax.random.fold_in(jax.random.key(config.seed), SPLIT_KEY)
    losses = aabl.augmented_sce(model, variables, data.x_train, data.y_train,
                                policy=d.split_method, key=key, **sce)
  split = aabl.split_by_vulnerability(losses)
  removed = ~split.vulnerable
  save_npz(workdir, score=split.losses, removed=removed, poisoned=poisoned,
            threshold=np.float64(split.threshold))
  # A low loss under attack marks a sample as robust, i.e. suspicious: score = -loss.
  summary = detection.detection_summary(removed, poisoned, -split.losses)
  summary['otsu_threshold'] = split.threshold
  if jax.process_index() == 0:
    how = 'after iFGSM' if d.split_method == 'ifgsm' else f'under {d.split_method}'
    plots.loss_split_histogram(os.path.join(workdir, 'sce_split.png'), split.losses, poisoned,
                               split.threshold, xlabel=f'symmetric cross-entropy {how}')
  return summary


def _spectral(config, model, variables, data: Dataset, poisoned: np.ndarray, workdir: str):
  features = scoring.penultimate_features(model, variables, data.x_train, data.y_train,
                                          config.eval.batch_size, parallel.make_mesh())
  scores = spectral_scores(features, data.y_train)
  fraction = min(1.0, config.defense.removal_factor
                 * assumed_class_rate(config, poisoned, data.y_train))
  removed = remove_top_per_class(scores, data.y_train, fraction)
  return _score_summary(workdir, scores, removed, poisoned,
                        'spectral signature score (projection on top singular vector)^2')


def _activation_clustering(config, model, variables, data: Dataset, poisoned: np.ndarray,
                           workdir: str):
  d = config.defense
  features = scoring.penultimate_features(model, variables, data.x_train, data.y_train,
                                          config.eval.batch_size, parallel.make_mesh())
  removed, scores = activation_clusters(features, data.y_train, dims=d.ac_dims,
                                        reduction=d.ac_reduction,
                                        size_threshold=d.ac_size_threshold, seed=config.seed)
  return _score_summary(workdir, scores, removed, poisoned,
                        'closeness to the smaller cluster (centroid-distance units)')


def _score_summary(workdir, scores, removed, poisoned, xlabel) -> dict:
  save_npz(workdir, score=scores, removed=removed, poisoned=poisoned)
  if jax.process_index() == 0:
    plots.score_histogram(os.path.join(workdir, 'detection_scores.png'), scores, poisoned,
                          removed, xlabel)
  return detection.detection_summary(removed, poisoned, scores)


SPLIT_KEY = 0x5B1  # the augmentation split's stream of the seed (independent of training)

DETECTORS = {'aabl': _aabl_split, 'spectral': _spectral,
             'activation_clustering': _activation_clustering}


ABL_ISOLATION_DIR, ABL_FINETUNE_DIR = 'isolation', 'finetune'


def _abl_phase_config(config, **train) -> ml_collections.ConfigDict:
  c = config.copy_and_resolve_references()
  c.train.update(train)
  return c


def _anti_backdoor_learning(config, data: Dataset, workdir: str, backdoor,
                            poisoned: np.ndarray) -> dict:
  """ABL's three phases (see `abl`), each resumable."""
  d = config.defense
  # The isolation run does not depend on the later phases' fields.
  iconfig = _abl_phase_config(config, epochs=d.abl_isolation_epochs, milestones=())
  base = config_lib.base_config().defense
  later = ('abl_finetune_epochs', 'abl_unlearn_epochs', 'abl_unlearn_lr')
  iconfig.defense.update({k: base[k] for k in later})
  iso_dir = os.path.join(workdir, ABL_ISOLATION_DIR)
  gamma = {'gamma': np.float32(d.abl_gamma)}
  iresults = run_once(iconfig, iso_dir,
                      lambda c, rd: train_and_evaluate(c, data, rd, backdoor=backdoor,
                                                       objective=Objective('lga'),
                                                       extra_hp=gamma),
                      'ABL isolation model')
  model, variables = load_run_variables(iso_dir, data, fallback=iconfig)

  def isolate() -> dict:
    losses = abl.sample_losses(model, variables, data.x_train, data.y_train,
                               config.eval.batch_size, parallel.make_mesh())
    isolated = abl.isolate_lowest(losses, d.abl_isolation_ratio)
    save_npz(workdir, score=losses, removed=isolated, poisoned=poisoned)
    threshold = float(losses[isolated].max())
    if jax.process_index() == 0:
      plots.loss_split_histogram(
          os.path.join(workdir, 'abl_split.png'), np.log10(np.maximum(losses, 1e-12)), poisoned,
          np.log10(max(threshold, 1e-12)), threshold_name='log10 isolation threshold',
          xlabel='log10 cross-entropy after the isolation epochs (floored at 1e-12)',
          selected='isolated', selected_below=True, selected_mask=isolated)
    # A low loss marks a sample as suspicious: score = -loss.
    summary = detection.detection_summary(isolated, poisoned, -losses)
    summary['isolation_threshold'] = threshold
    summary.update({f'isolation_{k}': iresults[k] for k in DETECTOR_KEYS if k in iresults})
    return summary

  summary = cached(workdir, isolate)
  with np.load(os.path.join(workdir, DETECTION_NPZ)) as saved:
    isolated = np.asarray(saved['removed'], bool)
  start = variables
  if d.abl_finetune_epochs > 0:
    epochs = d.abl_finetune_epochs
    fconfig = _abl_phase_config(config, epochs=epochs, lr_decay=0.1,
                                milestones=(max(1, round(2 * epochs / 3)),) if epochs > 1 else ())
    fconfig.defense.update({k: base[k] for k in later[1:]})
    ft_dir = os.path.join(workdir, ABL_FINETUNE_DIR)
    fresults = run_once(fconfig, ft_dir,
                        lambda c, rd: train_and_evaluate(c, data.train_rows(~isolated), rd,
                                                         backdoor=backdoor,
                                                         init_variables=variables),
                        'ABL fine-tuning')
    summary.update({f'finetune_{k}': fresults[k] for k in DETECTOR_KEYS if k in fresults})
    _, start = load_run_variables(ft_dir, data, fallback=fconfig)
  uconfig = finetuning.finetune_config(config, int(isolated.sum()), d.abl_unlearn_epochs,
                                       d.abl_unlearn_lr)
  uconfig.dataset.update(crop_padding=0, flip=False)
  results = train_and_evaluate(uconfig, data.train_rows(isolated), workdir, backdoor=backdoor,
                               objective=Objective('ascent'), init_variables=start)
  results.update(summary)
  return results
