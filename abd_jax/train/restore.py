"""The model and variables of a finished (or checkpointed) run, for attacks that need a
trained model and for figures drawn after training."""

from __future__ import annotations

import os

import jax
import ml_collections

from abd_jax import parallel, workdir as workdir_lib
from abd_jax.data import Dataset
from abd_jax.train.checkpoint import CheckpointDamagedError, CheckpointError, Checkpointer
from abd_jax.train.objective import Objective
from abd_jax.train.optim import dp_settings
from abd_jax.train.programs import init_state, make_model, make_tx


class RestoreError(RuntimeError):
  """The run directory holds no checkpoint that fits."""


def _run_blocks(run_dir: str, fallback: ml_collections.ConfigDict):
  """The model and train blocks the run was made with (its config.json), else `fallback`'s,
  and its DP-SGD settings (they add to the optimizer state)."""
  path = os.path.join(run_dir, 'config.json')
  if not os.path.exists(path):
    return fallback.model, fallback.train, dp_settings(fallback)
  try:
    saved = workdir_lib.read_json(path)
    dp = dp_settings(ml_collections.ConfigDict(
        {k: saved[k] for k in ('seed', 'defense') if k in saved}))
    return (ml_collections.ConfigDict(saved['model']), ml_collections.ConfigDict(saved['train']),
            dp)
  except (OSError, ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as e:
    raise RestoreError(f'holds a damaged {path} ({type(e).__name__}: '
                       f'{" ".join(str(e).split())[:120]}), so its model is unknown') from None


def load_run_variables(run_dir: str, data: Dataset, fallback: ml_collections.ConfigDict,
                       objective: Objective = Objective()):
  """(model, {'params', 'batch_stats'}) from the newest checkpoint in `run_dir`/checkpoints.

  The architecture and optimizer come from the run's config.json (the optimizer state is
  part of the checkpoint, so the restore template needs the same optimizer), or from
  `fallback` when there is none; `objective` is the one the run minimized where it shapes
  the state (a projection head, CBD's critic). Raises RestoreError when nothing fits, and
  CheckpointDamagedError when the newest checkpoint is damaged (an earlier one would be
  another model than the run's final one, so none is taken instead).
  """
  ckpt_dir = os.path.join(run_dir, 'checkpoints')
  if not os.path.isdir(ckpt_dir):  # checked first: the Checkpointer would create it
    if os.path.exists(ckpt_dir):
      raise CheckpointError(f'{ckpt_dir} is a file, where the folder of checkpoints belongs: '
                            'rerun the run that wrote it with --overwrite to train it again')
    raise RestoreError('must be the workdir of a finished run (it has no checkpoints/ folder)')
  model_cfg, train_cfg, dp = _run_blocks(run_dir, fallback)
  model = make_model(model_cfg, data.num_classes, objective)
  # The steps per epoch only move the lr boundaries, not the state's structure. The
  # template is replicated on the mesh, so the restored variables are too (every program
  # that takes them runs there).
  template = parallel.put_replicated(
      init_state(model, make_tx(train_cfg, 1, dp, objective), jax.random.key(0),
                 data.image_shape, objective), parallel.make_mesh())
  ckpt = Checkpointer(ckpt_dir, max_to_keep=1_000_000, read_only=True)  # never delete
  try:
    if ckpt.latest_epoch() is None:
      raise RestoreError(f'holds no checkpoint in {ckpt_dir}: point it at a finished run')
    try:
      state = ckpt.restore_latest(template, fallback=False).state
    except CheckpointDamagedError:
      raise
    except CheckpointError as e:
      raise RestoreError(f'its checkpoint does not fit model {model_cfg.name!r} on '
                         f'{data.name} ({e})') from None
  finally:
    ckpt.close()
  return model, state.variables
