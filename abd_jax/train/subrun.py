"""Auxiliary runs inside a run's workdir (a surrogate for an attack, a defense's detector).

A sub-run is an ordinary run directory (`config.json`, `metrics.jsonl`, `checkpoints/`,
`results.json`) in a subfolder of the main workdir: an interrupted one resumes from its
checkpoint, a finished one is reused as is, and one made with a different config is
refused like any other workdir (`--overwrite` on the main run deletes it with the rest).

A finished sub-run whose results.json is damaged, or whose final checkpoint (what the
caller loads next) is missing or damaged, is run again: it resumes from its newest
readable checkpoint, so the results are those of the first time.
"""

from __future__ import annotations

import logging
import os
from typing import Callable

import ml_collections

from abd_jax import config as config_lib
from abd_jax import parallel, workdir as workdir_lib
from abd_jax.train.checkpoint import final_checkpoint_problem


def run_once(config: ml_collections.ConfigDict, run_dir: str,
             train: Callable[[ml_collections.ConfigDict, str], dict], what: str) -> dict:
  """Results of `train(config, run_dir)`, trained (or resumed) only if `run_dir` holds no
  usable results.json and final checkpoint yet. `what` names the run in the log."""
  config_lib.validate(config)
  is_writer = parallel.is_writer()
  if is_writer:
    workdir_lib.prepare(run_dir, config_lib.to_dict(config), overwrite=False)
  results = _finished_results(config, run_dir, what)
  if parallel.agree(results is not None):
    return results
  results = train(config, run_dir)
  if is_writer:
    workdir_lib.write_json(os.path.join(run_dir, 'results.json'), results)
  parallel.barrier('sub-run finished')  # the callers read the sub-run's files next
  return results


def _finished_results(config: ml_collections.ConfigDict, run_dir: str, what: str) -> dict | None:
  """The results of the finished sub-run in `run_dir`, or None (logging why it runs)."""
  results_path = os.path.join(run_dir, 'results.json')
  if not os.path.exists(results_path):
    logging.info('training the %s in %s', what, run_dir)
    return None
  results, problem = workdir_lib.read_object(results_path)
  log = logging.warning
  if problem is None:
    ckpt_dir = os.path.join(run_dir, 'checkpoints')
    problem = final_checkpoint_problem(ckpt_dir, config.train.epochs)
    if problem is None:
      return results
    problem = f'{problem}, which the {what} needs'
    if os.path.isdir(os.path.join(ckpt_dir, str(config.train.epochs))):
      log = logging.info  # damaged: the resumed run's restore warns, saying where it resumes
  else:
    problem = f'{results_path} {problem}'
  log('%s; running the %s in %s again (it resumes from its newest readable checkpoint)',
      problem, what, run_dir)
  return None
