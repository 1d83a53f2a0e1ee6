"""The trained model the model-based attacks (lc, trojan) craft their poison with, and the
`AttackContext` of every attack (with the trigger generator of iab / ssba).

Poisoning never trains: this module, part of the layer that orchestrates runs, provides
the surrogate and hands it to `abd_jax.poison` in an `AttackContext`. It is either a
finished run of this library (`attack.surrogate_workdir`: its latest checkpoint is
restored), or one trained here on the clean data in `WORKDIR/surrogate_at` (lc) or
`WORKDIR/surrogate_st` (trojan), so both can share a workdir. That folder is an ordinary
run directory (`config.json`, `metrics.jsonl`, `checkpoints/`, `results.json`): an
interrupted surrogate resumes, a finished one is reused as is.

    lc      adversarially trained surrogate (ICLR'22 seed, App. A: AT with eps 8/255)
    trojan  standard-trained surrogate (Liu et al. 2018 start from a benign model)
"""

from __future__ import annotations

import os

import ml_collections

from abd_jax import config as config_lib
from abd_jax import generators, parallel, poison
from abd_jax import train as train_lib
from abd_jax.data import Dataset
from abd_jax.errors import ConfigError
from abd_jax.train.restore import RestoreError, load_run_variables
from abd_jax.train.subrun import run_once

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


def load_or_train_surrogate(config: ml_collections.ConfigDict, data: Dataset, workdir: str,
                            adversarial: bool) -> tuple:
  """(model, variables) of the surrogate of the run `config` in `workdir`.

  `data` is the clean dataset. With `attack.surrogate_workdir` set, its latest checkpoint
  is restored (model and optimizer from its config.json, else from `config`); otherwise a
  surrogate is trained in `surrogate_dir(workdir, adversarial)`, or resumed there, or
  reused once that run has written its results.json.
  """
  if config.attack.surrogate_workdir:
    run_dir = os.path.expanduser(config.attack.surrogate_workdir)
    try:
      return load_run_variables(run_dir, data, fallback=config)
    except RestoreError as e:
      raise ConfigError(_FIELD, run_dir, str(e)) from None

  run_dir = surrogate_dir(workdir, adversarial)
  sconfig = surrogate_config(config, adversarial)
  # Looked up at call time, so a test can replace the training function.
  run_once(sconfig, run_dir, lambda c, d: train_lib.train_and_evaluate(c, data, d),
           'adversarially trained surrogate' if adversarial else 'standard surrogate')
  return load_run_variables(run_dir, data, fallback=sconfig)


def attack_context(config: ml_collections.ConfigDict, data: Dataset,
                   workdir: str) -> poison.AttackContext:
  """The `AttackContext` of `config.attack`: with the surrogate trained or loaded when the
  attack crafts its poison on one (lc, trojan), with the trigger generator when it stamps
  each image with one (iab, ssba: `abd_jax.generators`)."""
  if config.attack.name in poison.GENERATOR_ATTACKS:
    return poison.AttackContext(
        unroll=config.perturb.unroll,
        generator=generators.load_or_train_generator(config, data, workdir))
  kind = poison.SURROGATE_KINDS.get(config.attack.name)
  if kind is None:
    return poison.AttackContext(unroll=config.perturb.unroll)
  model, variables = load_or_train_surrogate(config, data, workdir,
                                             adversarial=kind == 'adversarial')
  # Host copies: poisoning runs on one device of each process (every process poisons the
  # same way), not on the training mesh.
  return poison.AttackContext(surrogate=(model, parallel.fetch(variables)),
                              surrogate_source=describe(config), unroll=config.perturb.unroll)


def trained_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict | None:
  """The run config of what `config.attack` trains before poisoning (its surrogate or its
  trigger generator), or None when it trains nothing (or reads it from another workdir)."""
  name = config.attack.name
  if name in poison.GENERATOR_ATTACKS:
    if config.attack.generator_workdir:
      return None
    return generators.generator_config(config)
  if name in poison.SURROGATE_KINDS and not config.attack.surrogate_workdir:
    return surrogate_config(config, poison.SURROGATE_KINDS[name] == 'adversarial')
  return None


def poison_run(config: ml_collections.ConfigDict, data: Dataset, workdir: str) -> poison.Poisoned:
  """`poison.poison_dataset` for the run in `workdir`: the data-dependent checks first, then
  the surrogate or generator (if the attack needs one), then the poisoning."""
  poison.check_poisoning(config, data)
  return poison.poison_dataset(config, data, attack_context(config, data, workdir))
