"""The defenses that repair a backdoored model with a little clean data: fine-pruning
(FP; Liu, Dolan-Gavitt & Garg, RAID 2018) and neural attention distillation (NAD; Li et
al., ICLR 2021), as Gao et al. (TNNLS'23, Sec. V) compare them with CAT.

Both assume the defender holds clean data: `defense.clean_fraction` (5%) of the training
set, drawn with the seed from the rows the attack left untouched, is taken out of
training and given to the defender (`clean_reserve`). Then

    WORKDIR/backdoored   the configured training on the rest (the backdoored model)
    fp:  pruning.json    the last stage's channels ranked by their mean activation on the
                         clean data, and clean accuracy / ASR of the pruned model for every
                         ratio (fp_pruning.png); with defense.fp_target_acc >= 0 every ratio
                         of defense.fp_ratios is also fine-tuned in WORKDIR/prune/ratio_R
                         and the one whose clean accuracy is closest to the target is kept
         WORKDIR         the pruned model fine-tuned on the clean data (pruned channels
                         stay pruned)
    nad: WORKDIR/teacher the backdoored model fine-tuned on the clean data
         WORKDIR         the backdoored model trained on the clean data with cross-entropy
                         + attention distillation to the teacher (`objective`)

Fine-tuning runs are standard training (perturb 'none') with SGD at defense.finetune_lr,
no decay, on batches of min(train.batch_size, clean images) (cut to a multiple of the
devices). NAD's schedule with Gao's initial lr 0.01 is constant for its 20 epochs (the
original drops to 0.01 after 2 epochs from 0.1); its β = 500, 1000, 1000 for the last
three stages are the original README's (its argparse defaults are 0, 0, 5000). The
teacher is fine-tuned at the same lr for defense.finetune_epochs (the original's 10).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from abd_jax import config as config_lib
from abd_jax import evaluate, parallel, plots, workdir as workdir_lib
from abd_jax.data import Dataset
from abd_jax.defenses import pruning
from abd_jax.errors import ConfigError
from abd_jax.models import create_model
from abd_jax.perturb import make_perturbation
from abd_jax.train import train_and_evaluate
from abd_jax.train.objective import Objective, prune_head
from abd_jax.train.restore import RestoreError, load_run_variables
from abd_jax.train.subrun import run_once

BACKDOORED_DIR, TEACHER_DIR, PRUNE_DIR = 'backdoored', 'teacher', 'prune'
PRUNING_JSON = 'pruning.json'
REPORTED = ('clean_acc', 'asr')


def clean_reserve(num_train: int, untouched: np.ndarray, fraction: float, seed: int) -> np.ndarray:
  """bool [N]: the defender's clean images, max(1, floor(fraction·N)) rows drawn (with
  `seed`) from the `untouched` ones (bool [N], rows the attack did not change)."""
  count = max(1, math.floor(fraction * num_train + 1e-9))
  candidates = np.flatnonzero(untouched)
  if count > len(candidates):
    raise ConfigError('defense.clean_fraction', fraction,
                      f'asks for {count} clean images, but the attack left only '
                      f'{len(candidates)} of the {num_train} training images untouched')
  rng = np.random.default_rng([seed, 0xC1EA])
  reserve = np.zeros(num_train, bool)
  reserve[rng.choice(candidates, size=count, replace=False)] = True
  return reserve


def backdoored_config(config: ml_collections.ConfigDict,
                      keep: tuple[str, ...] = ('clean_fraction',)) -> ml_collections.ConfigDict:
  """The config of WORKDIR/backdoored: the run's own training without a defense; of the
  defense fields only `keep` stay (clean_fraction decides the training set), so changing
  the others reuses the backdoored model (and, keeping the finetune_* fields, the teacher)."""
  c = config.copy_and_resolve_references()
  c.defense.update(config_lib.base_config().defense.to_dict())
  c.defense.update({k: config.defense[k] for k in keep})
  return c


def finetune_config(config: ml_collections.ConfigDict, num_images: int, epochs: int,
                    lr: float) -> ml_collections.ConfigDict:
  """Standard training for `epochs` at a constant `lr` on `num_images` images, on batches
  of min(train.batch_size, num_images) rounded down to a multiple of the devices."""
  c = config.copy_and_resolve_references()
  c.train.update(epochs=epochs, lr=lr, milestones=(),
                 batch_size=parallel.fitted_batch(c.train.batch_size, num_images))
  c.perturb.name = 'none'
  # A few steps per epoch: evaluate about ten times, not after every epoch.
  c.eval.every_epochs = max(c.eval.every_epochs, epochs // 10)
  return c


def _json_cached(path: str, compute) -> dict:
  """compute()'s dict, or the one an earlier run saved at `path` (recomputed when damaged)."""
  saved, problem = workdir_lib.read_object(path) if os.path.exists(path) else (None, None)
  if parallel.agree(saved is not None):
    return saved
  if problem is not None:
    logging.warning('%s %s; computing it again', path, problem)
  result = compute()
  if parallel.is_writer():
    workdir_lib.write_json(path, result)
  return result


def _accuracies(config, model, data: Dataset, backdoor):
  """variables -> {'clean_acc', and with an attack 'asr'}; one compiled evaluation for
  every call (the pruning curve evaluates ~20 masks)."""
  mesh, batch = parallel.make_mesh(), config.eval.batch_size
  ev = evaluate.Evaluator(model, make_perturbation('none'), batch, mesh)
  test_set = evaluate.make_eval_set(data.x_test, data.y_test, batch, mesh)
  triggered = None
  if backdoor is not None:
    triggered = (evaluate.make_eval_set(backdoor.images, backdoor.labels, batch, mesh),
                 evaluate.put_labels(backdoor.targets, batch, mesh))

  def measure(variables) -> dict:
    out = {'clean_acc': ev.accuracy(variables, test_set)}
    if triggered is not None:
      out['asr'] = ev.accuracy(variables, *triggered)
    return out

  return measure


@dataclasses.dataclass(frozen=True)
class Backdoored:
  model: object
  variables: dict
  results: dict
  train: Dataset   # the training set without the clean reserve
  clean: Dataset   # the defender's clean images (train split) and the test set


def _stored_backdoored(path: str, config, data: Dataset):
  """(run_dir, results, model, variables) of `defense.backdoored_workdir`: a finished
  run's workdir, or an fp / nad workdir (its backdoored/ model)."""
  field = 'defense.backdoored_workdir'
  path = os.path.expanduser(path)
  run_dir = path
  if os.path.isfile(os.path.join(path, BACKDOORED_DIR, 'results.json')):
    run_dir = os.path.join(path, BACKDOORED_DIR)
  results, problem = workdir_lib.read_object(os.path.join(run_dir, 'results.json'))
  if results is None:
    raise ConfigError(field, path, f'must be the workdir of a finished run: its results.json '
                      f'{problem}')
  try:
    saved = workdir_lib.read_json(os.path.join(run_dir, 'config.json'))
  except (OSError, ValueError, UnicodeDecodeError) as e:
    raise ConfigError(field, path, f'its config.json cannot be read ({e})') from None
  for block in ('dataset', 'model'):
    if saved.get(block) != config_lib.to_dict(config)[block]:
      raise ConfigError(field, path, f'was trained with another {block} block than this run '
                        f'({saved.get(block)}); the backdoored model must fit this run')
  try:
    model, variables = load_run_variables(run_dir, data, fallback=config)
  except RestoreError as e:
    raise ConfigError(field, path, str(e)) from None
  return run_dir, results, model, variables


def train_backdoored(config, data: Dataset, workdir: str, backdoor, untouched) -> Backdoored:
  """The clean reserve and the backdoored model: trained without the reserve in
  WORKDIR/backdoored, or read from `defense.backdoored_workdir` (whose training set may
  have held the reserve's images, as in NAD's own setup; an fp / nad workdir's did not)."""
  reserve = clean_reserve(len(data.y_train), untouched, config.defense.clean_fraction,
                          config.seed)
  rest, clean = data.train_rows(~reserve), data.train_rows(reserve)
  if config.defense.backdoored_workdir:
    _, results, model, variables = _stored_backdoored(config.defense.backdoored_workdir,
                                                      config, data)
    return Backdoored(model, variables, results, rest, clean)
  bconfig = backdoored_config(config)
  run_dir = os.path.join(workdir, BACKDOORED_DIR)
  results = run_once(bconfig, run_dir,
                     lambda c, d: train_and_evaluate(c, rest, d, backdoor=backdoor),
                     'backdoored model')
  model, variables = load_run_variables(run_dir, data, fallback=bconfig)
  return Backdoored(model, variables, results, rest, clean)


def _defense_keys(b: Backdoored) -> dict:
  out = {f'backdoored_{k}': b.results[k] for k in REPORTED if k in b.results}
  out['clean_size'] = int(len(b.clean.y_train))
  return out


def fine_pruning(config, data: Dataset, workdir: str, backdoor, untouched) -> dict:
  d = config.defense
  b = train_backdoored(config, data, workdir, backdoor, untouched)
  mesh = parallel.make_mesh()

  def rank_and_sweep() -> dict:
    activations = pruning.channel_activations(b.model, b.variables, b.clean.x_train,
                                              b.clean.y_train, config.eval.batch_size, mesh)
    order = pruning.prune_order(activations)
    measure = _accuracies(config, b.model, data, backdoor)
    curve = []
    for ratio in sorted({0.0, *map(float, d.fp_ratios), float(d.fp_prune_ratio)}):
      keep = jnp.asarray(pruning.keep_mask(order, ratio))
      pruned = {**b.variables, 'params': prune_head(b.variables['params'], keep)}
      curve.append({'ratio': ratio, 'pruned': pruning.pruned_count(ratio, len(order)),
                    **measure(pruned)})
    return {'order': [int(i) for i in order], 'activations': [float(a) for a in activations],
            'curve': curve}

  ranking = _json_cached(os.path.join(workdir, PRUNING_JSON), rank_and_sweep)
  order = np.asarray(ranking['order'])
  n_clean = len(b.clean.y_train)
  ft_config = finetune_config(config, n_clean, d.finetune_epochs, d.finetune_lr)

  def finetune(ratio: float, run_dir: str, run_config) -> dict:
    keep = pruning.keep_mask(order, ratio)
    start = {**b.variables, 'params': prune_head(b.variables['params'], jnp.asarray(keep))}
    return train_and_evaluate(run_config, b.clean, run_dir, backdoor=backdoor,
                              objective=Objective(freeze_pruned=True),
                              extra_hp={'head_keep': keep}, init_variables=start)

  ratio, search = float(d.fp_prune_ratio), None
  if d.fp_target_acc >= 0:
    search = []
    for r in d.fp_ratios:
      r = float(r)
      # The search runs differ from the final one only in their ratio.
      sconfig = config.copy_and_resolve_references()
      sconfig.defense.update(fp_prune_ratio=r, fp_target_acc=-1.0)
      run_config = finetune_config(sconfig, n_clean, d.finetune_epochs, d.finetune_lr)
      res = run_once(run_config, os.path.join(workdir, PRUNE_DIR, f'ratio_{r:g}'),
                     lambda c, rd, r=r: finetune(r, rd, c), f'fine-pruning at ratio {r:g}')
      search.append({'ratio': r, **{k: res[k] for k in REPORTED if k in res}})
    ratio = pruning.closest_ratio({s['ratio']: s['clean_acc'] for s in search}, d.fp_target_acc)
  results = finetune(ratio, workdir, ft_config)
  results.update(_defense_keys(b), fp_prune_ratio=ratio,
                 fp_pruned_channels=pruning.pruned_count(ratio, len(order)),
                 fp_channels=int(len(order)), fp_curve=ranking['curve'])
  if search is not None:
    results['fp_search'] = search
  if jax.process_index() == 0:
    plots.pruning_curves(os.path.join(workdir, 'fp_pruning.png'), ranking['curve'], search,
                         ratio, target=d.fp_target_acc if d.fp_target_acc >= 0 else None)
  return results


def stage_count(config, data: Dataset) -> int:
  """How many stage activations the configured model sows (shapes only, nothing runs)."""
  m = config.model
  model = create_model(m.name, data.num_classes, m.width, m.dtype, m.norm)
  x = jax.ShapeDtypeStruct((1, *data.image_shape), jnp.float32)

  def stages(x):
    variables = model.init(jax.random.key(0), x, train=False)
    _, state = model.apply(variables, x, train=False, mutable=['intermediates'])
    return state['intermediates']['stages']

  return len(jax.eval_shape(stages, x))


def attention_distillation(config, data: Dataset, workdir: str, backdoor, untouched) -> dict:
  d = config.defense
  available = stage_count(config, data)
  if len(d.nad_betas) > available:
    raise ConfigError('defense.nad_betas', d.nad_betas,
                      f'weighs {len(d.nad_betas)} stages, but model {config.model.name!r} has '
                      f'{available}: give at most {available} weights (the last stages)')
  b = train_backdoored(config, data, workdir, backdoor, untouched)
  n_clean = len(b.clean.y_train)
  tconfig = finetune_config(
      backdoored_config(config, ('clean_fraction', 'backdoored_workdir', 'finetune_epochs',
                                 'finetune_lr')),
      n_clean, d.finetune_epochs, d.finetune_lr)
  teacher_dir = os.path.join(workdir, TEACHER_DIR)
  teacher_results = run_once(
      tconfig, teacher_dir,
      lambda c, rd: train_and_evaluate(c, b.clean, rd, backdoor=backdoor,
                                       init_variables=b.variables),
      'NAD teacher')
  _, teacher = load_run_variables(teacher_dir, data, fallback=tconfig)
  sconfig = finetune_config(config, n_clean, d.nad_epochs, d.finetune_lr)
  results = train_and_evaluate(
      sconfig, b.clean, workdir, backdoor=backdoor,
      objective=Objective('nad', nad_power=float(d.nad_power)),
      extra_hp={'teacher': teacher, 'nad_betas': np.asarray(d.nad_betas, np.float32)},
      init_variables=b.variables)
  results.update(_defense_keys(b))
  results.update({f'teacher_{k}': teacher_results[k] for k in REPORTED if k in teacher_results})
  return results
