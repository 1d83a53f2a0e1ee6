"""The trained model the model-based attacks (lc, trojan) craft their poison with.

Either a finished run of this library (`attack.surrogate_workdir`: its latest checkpoint
is restored), or one trained here on the clean data in `WORKDIR/surrogate_at` (lc) or
`WORKDIR/surrogate_st` (trojan), so both can share a workdir. That folder
is an ordinary run directory (`config.json`, `metrics.jsonl`, `checkpoints/`,
`results.json`): an interrupted surrogate resumes, a finished one is reused as is.

    lc      adversarially trained surrogate (ICLR'22 seed, App. A: AT with eps 8/255)
    trojan  standard-trained surrogate (Liu et al. 2018 start from a benign model)
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import jax
import ml_collections

from abd_jax import workdir as workdir_lib
from abd_jax.data import Dataset
from abd_jax.errors import ConfigError
from abd_jax.models import create_model

if TYPE_CHECKING:  # attacks imports the attack modules, which import this one
  from abd_jax.poison.attacks import AttackContext

_FIELD = 'attack.surrogate_workdir'


def surrogate_dir(workdir: str, adversarial: bool) -> str:
  return os.path.join(workdir, 'surrogate_at' if adversarial else 'surrogate_st')


def describe(config: ml_collections.ConfigDict) -> str:
  """What the manifest records as the surrogate: the configured run's path, or 'trained'
  (the one in WORKDIR/surrogate_*)."""
  return config.attack.surrogate_workdir or 'trained'


def surrogate_config(config: ml_collections.ConfigDict, adversarial: bool) -> ml_collections.ConfigDict:
  """The run config of the surrogate: `config` on clean data (attack 'none'), for
  `attack.surrogate_epochs` epochs (0 = `train.epochs`), with L-inf PGD AT of budget
  `attack.surrogate_eps` (step eps/4, `perturb.steps` steps) if `adversarial` and that
  budget is > 0, standard training otherwise."""
  from abd_jax import config as config_lib  # circular at import: config imports poison
  c = config.copy_and_resolve_references()
  a = config.attack
  # The attack's own fields do not shape the surrogate: reset them so that changing, say,
  # the trigger amplitude reuses the surrogate instead of refusing its run directory.
  c.attack.update(config_lib.base_config().attack.to_dict())
  c.train.epochs = a.surrogate_epochs or config.train.epochs
  if adversarial and a.surrogate_eps > 0:
    # eps/4 is the 8/255 -> 2/255 ratio of the seed's AT surrogate.
    c.perturb.update(name='linf', eps=float(a.surrogate_eps), step_size=a.surrogate_eps / 4,
                     random_start=True)
  else:
    c.perturb.name = 'none'
  # PGD accuracy of a standard-trained model is ~0 and not worth the evaluation time.
  c.eval.robust = bool(config.eval.robust and c.perturb.name != 'none')
  return c


def _restore_variables(run_dir: str, model_cfg: ml_collections.ConfigDict,
                       train_cfg: ml_collections.ConfigDict, data: Dataset,
                       max_to_keep: int) -> tuple:
  """(model, {'params', 'batch_stats'}) from the newest checkpoint in `run_dir`/checkpoints.
  Raises ConfigError naming `attack.surrogate_workdir` if there is none or it does not fit."""
  from abd_jax.train import CheckpointError, Checkpointer, create_train_state  # circular at import
  from abd_jax.train.optim import make_optimizer

  ckpt_dir = os.path.join(run_dir, 'checkpoints')
  if not os.path.isdir(ckpt_dir):  # checked first: the Checkpointer would create it
    raise ConfigError(_FIELD, run_dir, 'must be the workdir of a finished run (it has no '
                      'checkpoints/ folder)')
  model = create_model(model_cfg.name, data.num_classes, model_cfg.width, model_cfg.dtype)
  # The optimizer state is part of the checkpoint, so the template needs the same optimizer;
  # the steps per epoch only move the lr boundaries, not the state's structure.
  template = create_train_state(model, make_optimizer(train_cfg, 1), jax.random.key(0),
                                data.image_shape)
  ckpt = Checkpointer(ckpt_dir, max_to_keep)
  try:
    if ckpt.latest_epoch() is None:
      raise ConfigError(_FIELD, run_dir, f'holds no checkpoint in {ckpt_dir}: point it at a '
                        'finished run, or leave it empty to train a surrogate')
    try:
      state, _ = ckpt.restore_latest(template)
    except CheckpointError as e:
      raise ConfigError(_FIELD, run_dir, f'its checkpoint does not fit model '
                        f'{model_cfg.name!r} on {data.name} ({e})') from None
  finally:
    ckpt.close()
  return model, state.variables


def _run_blocks(run_dir: str, fallback: ml_collections.ConfigDict):
  """The model and train blocks the run in `run_dir` was made with (its config.json), or
  `fallback`'s when it has none: a surrogate may have another architecture than the victim."""
  path = os.path.join(run_dir, 'config.json')
  if not os.path.exists(path):
    return fallback.model, fallback.train
  saved = workdir_lib.read_json(path)
  return ml_collections.ConfigDict(saved['model']), ml_collections.ConfigDict(saved['train'])


def load_or_train_surrogate(ctx: AttackContext, data: Dataset, adversarial: bool) -> tuple:
  """(model, variables) of the surrogate for the run `ctx` describes.

  `data` is the clean dataset. With `attack.surrogate_workdir` set, its latest checkpoint
  is restored (model and optimizer from its config.json, else from `ctx.config`);
  otherwise a surrogate is trained in `surrogate_dir(ctx.workdir, adversarial)`, or resumed there, or
  reused once that run has written its results.json.
  """
  config = ctx.config
  if config.attack.surrogate_workdir:
    run_dir = os.path.expanduser(config.attack.surrogate_workdir)
    model_cfg, train_cfg = _run_blocks(run_dir, config)
    return _restore_variables(run_dir, model_cfg, train_cfg, data, config.checkpoint.max_to_keep)

  from abd_jax import config as config_lib  # circular at import: config imports poison
  from abd_jax import train as train_lib

  run_dir = surrogate_dir(ctx.workdir, adversarial)
  sconfig = surrogate_config(config, adversarial)
  config_lib.validate(sconfig)
  is_writer = jax.process_index() == 0
  if is_writer:
    workdir_lib.prepare(run_dir, config_lib.to_dict(sconfig), overwrite=False)
  results_path = os.path.join(run_dir, 'results.json')
  if not os.path.exists(results_path):
    logging.info('training the %s surrogate in %s', 'adversarially trained' if adversarial
                 else 'standard', run_dir)
    results = train_lib.train_and_evaluate(sconfig, data, run_dir)
    if is_writer:
      workdir_lib.write_json(results_path, results)
  return _restore_variables(run_dir, sconfig.model, sconfig.train, data,
                            config.checkpoint.max_to_keep)
