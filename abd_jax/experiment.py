"""One experiment end to end: validate -> claim workdir -> load data -> poison ->
(defend ->) train -> evaluate -> write `results.json`.

The steps are also available one by one for the sweep engine, which runs many points in
one process: `Shared` keeps what points have in common (loaded datasets, poisonings, the
surrogate models of lc / trojan), and the compiled programs are cached by
`abd_jax.train.programs`, so a point run after another of the same structure loads,
poisons and compiles nothing twice.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import os

import jax
import ml_collections

from abd_jax import config as config_lib
from abd_jax import figures, generators, models, parallel, poison, surrogate, timing
from abd_jax import workdir as workdir_lib
from abd_jax.data import Dataset, DatasetError, load_dataset
from abd_jax.defenses import check_sizes, train_with_defense
from abd_jax.errors import ConfigError
from abd_jax.train.loop import steps_per_epoch
from abd_jax.train.progress import format_table

RESULTS = 'results.json'
TIMING = 'timing.json'


def _key(value) -> str:
  return json.dumps(value, sort_keys=True)


@dataclasses.dataclass
class Shared:
  """What runs in one process share. `surrogate_root`: where lc / trojan surrogates and
  iab / ssba generators are trained when several runs share one (a sweep's
  `WORKDIR/surrogates`); '' = in each run's own workdir, as a single run does."""
  surrogate_root: str = ''
  datasets: dict = dataclasses.field(default_factory=dict)
  # A poisoning holds a whole training set: only the latest few are kept (a sweep runs
  # points with the same poisoning back to back).
  poisonings: collections.OrderedDict = dataclasses.field(default_factory=collections.OrderedDict)
  max_poisonings: int = 2

  def dataset(self, config: ml_collections.ConfigDict) -> Dataset:
    # Only the synthetic dataset depends on the seed.
    key = _key([config_lib.to_dict(config.dataset),
                config.seed if config.dataset.name == 'synthetic' else None])
    if key not in self.datasets:
      with timing.phase('data'):
        self.datasets[key] = load_dataset(config.dataset, config.seed)
    return self.datasets[key]

  def poisoned(self, config: ml_collections.ConfigDict, data: Dataset,
               workdir: str) -> poison.Poisoned:
    """The poisoning of `config` (computed once per attack, seed and dataset)."""
    trained = surrogate.trained_config(config)
    if config.attack.name in poison.SURROGATE_KINDS:
      # The surrogate is trained on the run's model and recipe: they shape the poison too.
      key = _key(config_lib.to_dict(config))
    else:
      key = _key([config_lib.to_dict(config.dataset), config_lib.to_dict(config.attack),
                  config.seed, config.perturb.unroll,
                  config_lib.to_dict(trained) if trained is not None else None])
    if key not in self.poisonings:
      root = workdir
      if self.surrogate_root and trained is not None:
        digest = hashlib.sha256(_key(config_lib.to_dict(trained)).encode()).hexdigest()[:12]
        root = os.path.join(self.surrogate_root, digest)
      with timing.phase('poison'):
        self.poisonings[key] = surrogate.poison_run(config, data, root)
      while len(self.poisonings) > self.max_poisonings:
        self.poisonings.popitem(last=False)
    self.poisonings.move_to_end(key)
    return self.poisonings[key]


def check_data(config: ml_collections.ConfigDict, data: Dataset) -> None:
  """The checks of `config` that need the data, made before the workdir is touched: a
  model too deep for the image size, a batch larger than the training set, a batch that
  does not split over the devices, the attack's (a trigger larger than the image, a
  target class out of range, a clean-label rate larger than the class, a reused
  generator trained with other settings) and the defense's (a reserve, split or phase
  batch that leaves a phase too few images: `defenses.check_sizes`)."""
  models.check_image_size(config.model.name, data.image_shape)
  steps_per_epoch(config, len(data.y_train))
  config_lib.validate_for_devices(config, jax.device_count())
  num_poisoned = 0
  if config.attack.name != 'none':
    num_poisoned = poison.check_poisoning(config, data)
    generators.check_reused(config)
  check_sizes(config, len(data.y_train), num_poisoned, jax.device_count())


def finished_results(config: ml_collections.ConfigDict, workdir: str,
                     overwrite: bool = False) -> dict | None:
  """The results of the finished run of `config` in `workdir`, or None when there is work
  to do. Writes nothing; raises WorkdirError when `workdir` holds another run and not
  `overwrite`. A damaged results.json is recomputed (from the final checkpoint)."""
  workdir_lib.check_path(workdir)
  if not workdir_lib.inspect(workdir, config_lib.to_dict(config), overwrite):
    return None
  path = os.path.join(workdir, RESULTS)
  if not os.path.exists(path):
    return None
  results, problem = workdir_lib.read_object(path)
  if results is not None:
    return results
  logging.warning('%s %s; recomputing it from the run\'s final checkpoint', path, problem)
  return None


def claim(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False) -> bool:
  """Validates `config` and claims `workdir` for it: resumes an earlier run of the same
  config (returns True), refuses another one unless `overwrite`. The caller holds the
  workdir's lock (`workdir.locked`)."""
  config_lib.validate(config)
  parallel.maybe_initialize_distributed(config.distributed)
  resumed = False
  if jax.process_index() == 0:
    resumed = workdir_lib.prepare(workdir, config_lib.to_dict(config), overwrite)
    if resumed:
      logging.info('resuming the run in %s', workdir)
  return resumed


def poison_run(config: ml_collections.ConfigDict, data: Dataset, workdir: str,
               shared: Shared) -> poison.Poisoned | None:
  """The run's poisoning (None without an attack), its manifest written to `workdir`."""
  if config.attack.name == 'none':
    return None
  poisoned = shared.poisoned(config, data, workdir)
  if jax.process_index() == 0:
    poison.write_manifest(workdir, poisoned.manifest)
  return poisoned


def finish(config: ml_collections.ConfigDict, workdir: str, results: dict,
           poisoned: poison.Poisoned | None) -> None:
  """The run's figures and its results.json (written last: it marks the run finished)."""
  if poisoned is not None and config.perturb.name in figures.SPATIAL_REGIMES:
    figures.spatial_examples(config, poisoned.train, poisoned.manifest['indices'], workdir)
  if parallel.is_writer():
    workdir_lib.write_json(os.path.join(workdir, RESULTS), results)


def run(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False,
        shared: Shared | None = None, verbose: bool = True) -> dict:
  """Runs (or resumes, or just reports) the experiment `config` in `workdir`.

  Everything that can refuse the run is checked before the workdir is touched; the
  workdir is locked while the run works in it."""
  shared = shared or Shared()
  config_lib.validate(config)
  parallel.maybe_initialize_distributed(config.distributed)
  results = finished_results(config, workdir, overwrite)
  if parallel.agree(results is not None):
    if verbose:
      print(f'{workdir} already holds the finished run:')
  else:
    data = shared.dataset(config)
    check_data(config, data)
    is_writer = jax.process_index() == 0
    created = not os.path.isdir(workdir)
    with workdir_lib.locked(workdir, enabled=is_writer):
      resumed = claim(config, workdir, overwrite)
      try:
        poisoned = poison_run(config, data, workdir, shared)
        train_data = data if poisoned is None else poisoned.train
        with timing.phase('train'):
          results = train_with_defense(config, train_data, workdir,
                                       None if poisoned is None else poisoned.backdoor,
                                       None if poisoned is None else poisoned.is_poisoned,
                                       None if poisoned is None else poisoned.modified)
        finish(config, workdir, results, poisoned)
      except (ConfigError, DatasetError, workdir_lib.WorkdirError) as e:
        # Refused after the claim (a phase's folder holds another config, or a check that
        # needed a trained phase): the corrected command needs no --overwrite.
        if is_writer:
          workdir_lib.hand_back(workdir, created, resumed, str(e))
        raise
  if verbose:
    print(format_table(results))
  return results


def write_timing(workdir: str) -> None:
  """`timing.json`: this process's seconds per phase (data, poison, train) and in XLA
  compilation. Apart from results.json: timings differ between machines and runs."""
  if jax.process_index() == 0 and os.path.isdir(workdir):
    workdir_lib.write_json(os.path.join(workdir, TIMING), timing.snapshot())
