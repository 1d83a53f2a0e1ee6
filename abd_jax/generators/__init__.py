"""The trained trigger generators of the sample-specific attacks, provided to poisoning.

    iab   pattern + mask generators (and a classifier) with IAB's losses   generators/iab.py
    ssba  StegaStamp encoder + decoder on random bit strings               generators/ssba.py

Like the surrogate of lc / trojan, a generator is trained by the layer that orchestrates
runs, never by poisoning: in `WORKDIR/generator_<attack>`, an ordinary run directory
(`config.json`, `metrics.jsonl`, `checkpoints/`, `results.json`) that resumes when
interrupted and is reused once finished; or it is read from `attack.generator_workdir`
(such a folder, or a workdir holding one). Its config keeps only what shapes the
generator (dataset, seed, batch size, IAB's classifier model, the attack's `generator_*`
and `<attack>_*` fields but `iab_cross_ratio`), so changing the poison rate, the trained
model's recipe or a defense reuses it. A generator read from `attack.generator_workdir`
must have been trained with the run's bit count, bound and width (`REUSED_FIELDS`): the
run is refused before anything trains otherwise.
"""

from __future__ import annotations

import os

import ml_collections

from abd_jax import config as config_lib
from abd_jax import workdir as workdir_lib
from abd_jax.data import Dataset
from abd_jax.errors import ConfigError
from abd_jax.generators import iab, ssba
from abd_jax.generators.runner import GeneratorTrainer, restore_final, train
from abd_jax.poison.base import TrainedGenerator
from abd_jax.train.checkpoint import CheckpointError
from abd_jax.train.subrun import run_once

TRAINERS = {'iab': iab, 'ssba': ssba}
GENERATOR_ATTACKS = tuple(TRAINERS)
_FIELD = 'attack.generator_workdir'
# Fields of the sample-specific attacks that act at poisoning time only.
POISONING_FIELDS = ('iab_cross_ratio',)

# The fields poisoning reads from a reused generator, not from the run: the run's must agree,
# or its config.json would record a bit count, bound or width that was not used.
REUSED_FIELDS = {'iab': ('generator_width',),
                 'ssba': ('ssba_bits', 'ssba_max_residual', 'generator_width')}

__all__ = ['GENERATOR_ATTACKS', 'GeneratorTrainer', 'check_reused', 'generator_config',
           'generator_dir', 'load_or_train_generator', 'total_epochs']


def generator_dir(workdir: str, attack: str) -> str:
  return os.path.join(workdir, f'generator_{attack}')


def total_epochs(attack_cfg: ml_collections.ConfigDict) -> int:
  """Epochs of the generator run: IAB's mask phase plus its pattern phase, or SSBA's."""
  extra = attack_cfg.iab_mask_epochs if attack_cfg.name == 'iab' else 0
  return extra + attack_cfg.generator_epochs


def generator_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The run config of the generator of `config.attack`: the fields that do not shape it
  reset to their defaults, `train.epochs` = its epochs, no adversarial training."""
  base = config_lib.base_config()
  name = config.attack.name
  c = config.copy_and_resolve_references()
  own = {k: v for k, v in config.attack.items()
         if (k.startswith(('generator_', f'{name}_')) or k in ('name', 'target', 'all_to_all'))
         and k not in POISONING_FIELDS}
  c.attack.update(base.attack.to_dict())
  c.attack.update(own)
  c.attack.generator_workdir = ''
  if name == 'ssba':  # the encoder never sees the classifier
    c.model.update(base.model.to_dict())
  c.train.update(base.train.to_dict())
  c.train.update(batch_size=config.train.batch_size, epochs=total_epochs(config.attack))
  c.perturb.update(base.perturb.to_dict())
  c.perturb.name = 'none'
  c.eval.update(base.eval.to_dict())
  c.eval.robust = False
  c.defense.update(base.defense.to_dict())
  return c


def _stored_run(path: str, attack: str) -> tuple[str, ml_collections.ConfigDict]:
  """(run dir, its config) of the generator `attack.generator_workdir` names."""
  path = os.path.expanduser(path)
  # A workdir holding the generator first; the folder itself only when it is a generator
  # run (a main run's workdir has config.json and checkpoints/ too).
  candidates = [generator_dir(path, attack)]
  if os.path.basename(os.path.normpath(path)) == f'generator_{attack}':
    candidates.append(path)
  for run_dir in candidates:
    config_path = os.path.join(run_dir, 'config.json')
    if os.path.isdir(os.path.join(run_dir, 'checkpoints')) and os.path.exists(config_path):
      stored, problem = workdir_lib.read_object(config_path)
      if problem is not None:
        raise ConfigError(_FIELD, path, f'{config_path} {problem}')
      stored_attack = stored.get('attack', {}).get('name')
      if stored_attack != attack:
        continue
      if not os.path.exists(os.path.join(run_dir, 'results.json')):
        raise ConfigError(_FIELD, path, f'the {attack} generator in {run_dir} has not finished '
                          '(no results.json): run it to the end first')
      return run_dir, ml_collections.ConfigDict(stored)
  raise ConfigError(_FIELD, path, f'holds no finished {attack} generator run (a folder with '
                    f'config.json and checkpoints/, or a workdir with generator_{attack}/)')


def check_reused(config: ml_collections.ConfigDict
                 ) -> tuple[str, ml_collections.ConfigDict] | None:
  """(run dir, config) of the generator `attack.generator_workdir` names, None when it is
  unset. Raises ConfigError when it holds no finished generator of the attack, or one
  trained with other `REUSED_FIELDS` than the run's."""
  a = config.attack
  if a.name not in TRAINERS or not a.generator_workdir:
    return None
  run_dir, stored = _stored_run(a.generator_workdir, a.name)
  for field in REUSED_FIELDS[a.name]:
    trained = stored.attack.get(field)
    if a[field] != trained:
      raise ConfigError(f'attack.{field}', a[field],
                        f'the {a.name} generator reused from {run_dir} (attack.generator_workdir) '
                        f'was trained with {field} = {trained!r}: set that, or leave '
                        'attack.generator_workdir empty to train one')
  return run_dir, stored


def load_or_train_generator(config: ml_collections.ConfigDict, data: Dataset,
                            workdir: str) -> TrainedGenerator:
  """The trained generator of `config.attack` (iab or ssba) on the clean `data`: read from
  `attack.generator_workdir`, or trained (resumed, reused) in `generator_dir(workdir)`."""
  name = config.attack.name
  module = TRAINERS[name]
  if config.attack.generator_workdir:
    run_dir, gconfig = check_reused(config)
    source = run_dir
  else:
    run_dir, gconfig, source = generator_dir(workdir, name), generator_config(config), 'trained'

    def fit(c: ml_collections.ConfigDict, d: str) -> dict:
      return train(module.make_trainer(c, data), d, c.seed,
                   every_epochs=c.checkpoint.every_epochs,
                   max_to_keep=c.checkpoint.max_to_keep, progress=c.log.progress)

    run_once(gconfig, run_dir, fit, f'{name} trigger generator')
  trainer = module.make_trainer(gconfig, data)
  if source == 'trained':
    state = restore_final(trainer, run_dir)
  else:
    try:
      state = restore_final(trainer, run_dir)
    except CheckpointError as e:  # another image size, width or bit count
      raise ConfigError(_FIELD, run_dir, f'its checkpoint does not fit this run ({e})') from None
  results, _ = workdir_lib.read_object(os.path.join(run_dir, 'results.json'))
  return TrainedGenerator(modules=module.networks(gconfig.attack, data.image_shape),
                          variables=module.variables_of(state), results=results or {},
                          attack=gconfig.attack.to_dict(), source=source)
