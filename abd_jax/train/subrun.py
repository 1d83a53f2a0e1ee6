"""Auxiliary runs inside a run's workdir (a surrogate for an attack, a defense's detector).

A sub-run is an ordinary run directory (`config.json`, `metrics.jsonl`, `checkpoints/`,
`results.json`) in a subfolder of the main workdir: an interrupted one resumes from its
checkpoint, a finished one is reused as is, and one made with a different config is
refused like any other workdir (`--overwrite` on the main run deletes it with the rest).
"""

from __future__ import annotations

import logging
import os
from typing import Callable

import jax
import ml_collections

from abd_jax import config as config_lib
from abd_jax import workdir as workdir_lib


def run_once(config: ml_collections.ConfigDict, run_dir: str,
             train: Callable[[ml_collections.ConfigDict, str], dict], what: str) -> dict:
  """Results of `train(config, run_dir)`, trained (or resumed) only if `run_dir` holds no
  results.json yet. `what` names the run in the log."""
  config_lib.validate(config)
  is_writer = jax.process_index() == 0
  if is_writer:
    workdir_lib.prepare(run_dir, config_lib.to_dict(config), overwrite=False)
  results_path = os.path.join(run_dir, 'results.json')
  if os.path.exists(results_path):
    return workdir_lib.read_json(results_path)
  logging.info('training the %s in %s', what, run_dir)
  results = train(config, run_dir)
  if is_writer:
    workdir_lib.write_json(results_path, results)
  return results
