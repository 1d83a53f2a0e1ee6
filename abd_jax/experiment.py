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
from abd_jax import figures, parallel, poison, surrogate, timing, workdir as workdir_lib
from abd_jax.data import Dataset, load_dataset
from abd_jax.defenses import train_with_defense
from abd_jax.train.progress import format_table

RESULTS = 'results.json'
TIMING = 'timing.json'


def _key(value) -> str:
  return json.dumps(value, sort_keys=True)


@dataclasses.dataclass
class Shared:
  """What runs in one process share. `surrogate_root`: where lc / trojan surrogates are
  trained when several runs share one (a sweep's `WORKDIR/surrogates`); '' = in each run's
  own workdir, as a single run does."""
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
    if config.attack.name in poison.SURROGATE_KINDS:
      # The surrogate is trained on the run's model and recipe: they shape the poison too.
      key = _key(config_lib.to_dict(config))
    else:
      key = _key([config_lib.to_dict(config.dataset), config_lib.to_dict(config.attack),
                  config.seed, config.perturb.unroll])
    if key not in self.poisonings:
      root = workdir
      if self.surrogate_root and config.attack.name in poison.SURROGATE_KINDS:
        kind = poison.SURROGATE_KINDS[config.attack.name] == 'adversarial'
        sconfig = surrogate.surrogate_config(config, kind)
        digest = hashlib.sha256(_key(config_lib.to_dict(sconfig)).encode()).hexdigest()[:12]
        root = os.path.join(self.surrogate_root, digest)
      with timing.phase('poison'):
        self.poisonings[key] = surrogate.poison_run(config, data, root)
      while len(self.poisonings) > self.max_poisonings:
        self.poisonings.popitem(last=False)
    self.poisonings.move_to_end(key)
    return self.poisonings[key]


def claim(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False) -> dict | None:
  """Validates `config` and claims `workdir` for it (resumes an earlier run of the same
  config; refuses another one unless `overwrite`). Returns the finished run's results, or
  None when there is work to do."""
  config_lib.validate(config)
  parallel.maybe_initialize_distributed(config.distributed.initialize)
  if jax.process_index() == 0:
    if workdir_lib.prepare(workdir, config_lib.to_dict(config), overwrite):
      logging.info('resuming the run in %s', workdir)
  path = os.path.join(workdir, RESULTS)
  return workdir_lib.read_json(path) if os.path.exists(path) else None


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
  if jax.process_index() != 0:
    return
  if poisoned is not None and config.perturb.name in figures.SPATIAL_REGIMES:
    figures.spatial_examples(config, poisoned.train, poisoned.manifest['indices'], workdir)
  workdir_lib.write_json(os.path.join(workdir, RESULTS), results)


def run(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False,
        shared: Shared | None = None, verbose: bool = True) -> dict:
  """Runs (or resumes, or just reports) the experiment `config` in `workdir`."""
  shared = shared or Shared()
  results = claim(config, workdir, overwrite)
  if results is not None:
    if verbose:
      print(f'{workdir} already holds the finished run:')
  else:
    data = shared.dataset(config)
    poisoned = poison_run(config, data, workdir, shared)
    train_data = data if poisoned is None else poisoned.train
    with timing.phase('train'):
      results = train_with_defense(config, train_data, workdir,
                                   None if poisoned is None else poisoned.backdoor,
                                   None if poisoned is None else poisoned.is_poisoned)
    finish(config, workdir, results, poisoned)
  if verbose:
    print(format_table(results))
  return results


def write_timing(workdir: str) -> None:
  """`timing.json`: this process's seconds per phase (data, poison, train) and in XLA
  compilation. Apart from results.json: timings differ between machines and runs."""
  if jax.process_index() == 0 and os.path.isdir(workdir):
    workdir_lib.write_json(os.path.join(workdir, TIMING), timing.snapshot())
