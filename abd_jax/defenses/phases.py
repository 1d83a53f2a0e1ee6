"""Configs of the sub-runs of a multi-phase defense (DBD, D-ST, CBD).

A phase is an ordinary sub-run (`subrun.run_once`: resumed when interrupted, reused when
finished). Its `config.json` says what trained it: of the defense fields, only those the
phase and the phases before it depend on; the later phases' fields stay at their defaults.
"""

from __future__ import annotations

import ml_collections

from abd_jax import config as config_lib
from abd_jax.errors import ConfigError


def phase_config(config: ml_collections.ConfigDict, keep: tuple[str, ...],
                 **train) -> ml_collections.ConfigDict:
  """`config` with `train` fields replaced, no perturbation, no robust evaluation, and
  the defense fields other than `name` and `keep` at their defaults."""
  c = config.copy_and_resolve_references()
  c.defense.update(config_lib.base_config().defense.to_dict())
  c.defense.update(name=config.defense.name, **{k: config.defense[k] for k in keep})
  c.train.update(train)
  c.perturb.name = 'none'
  c.eval.robust = False
  return c


def check_batch(config: ml_collections.ConfigDict, field: str, num_train: int) -> None:
  """A phase's batch (defense.`field`) must fit the training set: one line naming it."""
  batch = config.defense[field]
  if batch > num_train:
    raise ConfigError(f'defense.{field}', batch,
                      f'must be at most the {num_train} training images')
