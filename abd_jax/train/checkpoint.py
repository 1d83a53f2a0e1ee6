"""Orbax checkpoints of the train state, one per saved epoch (the checkpoint step is the
number of finished epochs). Storage-library failures become one `CheckpointError`."""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp

from abd_jax.train.state import TrainState


class CheckpointError(RuntimeError):
  """A checkpoint exists but cannot be read back."""


class Checkpointer:

  def __init__(self, directory: str, max_to_keep: int):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_epoch(self) -> int | None:
    return self._manager.latest_step()

  def save(self, epoch: int, state: TrainState) -> None:
    """Asynchronous: returns while the write goes on; a write is visible only once complete."""
    self._manager.save(epoch, args=ocp.args.StandardSave(state))

  def restore_latest(self, template: TrainState) -> tuple[TrainState, int]:
    """(state, epoch) from the newest checkpoint, or (template, 0) if there is none.

    `template` gives the tree structure, shapes, dtypes and shardings to restore into.
    """
    epoch = self.latest_epoch()
    if epoch is None:
      return template, 0
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    try:
      state = self._manager.restore(epoch, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # orbax/tensorstore raise many types; the user needs one message
      path = os.path.join(self.directory, str(epoch))
      raise CheckpointError(
          f'the checkpoint of epoch {epoch} at {path} cannot be read '
          f'({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else "no detail"}). '
          f'Delete that folder to resume from an earlier checkpoint, or rerun with '
          f'--overwrite to start the run again.') from None
    return state, epoch

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
