"""The epoch loop every trigger generator is trained with, as an ordinary run directory.

A `GeneratorTrainer` says what one epoch does (one jit-compiled step per batch, the
training set on the device, no host sync inside an epoch); `train` runs its epochs with the
library's checkpoints (resumed from the newest readable one), `metrics.jsonl`, the
progress bar and interrupt handling, and returns the trainer's final evaluation.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp

from abd_jax import interrupt, parallel
from abd_jax.train.checkpoint import Checkpointer
from abd_jax.train.loop import TrainingDivergedError
from abd_jax.train.progress import Progress
from abd_jax.train.writer import JsonlWriter

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class GeneratorTrainer:
  """How one generator is trained.

  init(key) -> state: the initial pytree (parameters, optimizer states, step counter).
  epoch(state, key, epoch) -> (state, metrics): epoch `epoch` (0-based); metrics are scalar
    arrays (means over the epoch). The trainer picks the phase from the Python `epoch`.
  evaluate(state) -> dict: the final numbers (host floats) written to results.json.
  phase(epoch) -> str: the phase name logged with each epoch.
  """
  name: str
  epochs: int
  images_per_epoch: int
  init: Callable[[Array], Any]
  epoch: Callable[[Any, Array, int], tuple[Any, dict]]
  evaluate: Callable[[Any], dict]
  phase: Callable[[int], str] = lambda epoch: 'train'


def batch_order(key: Array, num: int, batch_size: int) -> Array:
  """int32 [num // batch_size, batch_size]: a random permutation of 0..num-1 cut into full
  batches (the remainder dropped, as the classifier's loop does)."""
  steps = num // batch_size
  return jax.random.permutation(key, num)[:steps * batch_size].reshape(steps, batch_size)


def run_steps(step: Callable, state: Any, orders: Array, key: Array) -> tuple[Any, dict]:
  """Runs the jitted `step(state, indices, key) -> (state, metrics)` over the rows of
  `orders` ([steps, batch] or [steps, streams, batch]); returns the last state and the
  metrics averaged over the steps, without a host sync in between.

  A Python loop of one compiled step, not a `lax.scan`: a scan over these steps measured
  11x slower on XLA:CPU (2.74 s vs 0.24 s for an epoch of IAB's mask phase on digits).
  """
  keys = jax.random.split(key, orders.shape[0])
  total = None
  for i in range(orders.shape[0]):
    state, metrics = step(state, orders[i], keys[i])
    total = metrics if total is None else jax.tree.map(jnp.add, total, metrics)
  return state, jax.tree.map(lambda v: v / orders.shape[0], total)


def train(trainer: GeneratorTrainer, run_dir: str, seed: int, *, every_epochs: int = 1,
          max_to_keep: int = 2, progress: bool = True) -> dict:
  """Trains (or resumes) `trainer` in `run_dir`; returns its final evaluation (the
  networks are read back with `restore_final`, as for a run finished earlier).

  Checkpoints go to `run_dir/checkpoints/<epoch>` every `every_epochs` epochs and at the
  end; one metrics line per epoch goes to `run_dir/metrics.jsonl`. Deterministic from
  `seed`: epoch e draws its randomness from fold_in(key, e), so a resumed run continues
  exactly as an uninterrupted one.
  """
  root = jax.random.fold_in(jax.random.key(seed), 0x6E4)
  init_key, epoch_key = jax.random.split(root)
  ckpt = Checkpointer(os.path.join(run_dir, 'checkpoints'), max_to_keep)
  writer = JsonlWriter(os.path.join(run_dir, 'metrics.jsonl'), enabled=jax.process_index() == 0)
  bar = None
  try:
    # Eager: its ops' compiled kernels are cached by shape across trainers, where a jitted
    # init of a new trainer compiles the whole program again (15 s on 2 CPU cores).
    restored = ckpt.restore_latest(_on_mesh(trainer.init(init_key)))
    state, start = _local(restored.state), restored.epoch
    writer.truncate_after(start)
    bar = Progress(trainer.epochs * trainer.images_per_epoch, start * trainer.images_per_epoch,
                   enabled=progress, desc=f'{trainer.name} generator')
    for epoch in range(start, trainer.epochs):
      interrupt.check()
      state, metrics = trainer.epoch(state, jax.random.fold_in(epoch_key, epoch), epoch)
      metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
      done = epoch + 1
      bad = [k for k, v in metrics.items() if not math.isfinite(v)]
      if bad:
        ckpt.wait()
        raise TrainingDivergedError(
            f'the {trainer.name} generator training diverged: {bad[0]} became '
            f'{metrics[bad[0]]} in epoch {done} ({trainer.phase(epoch)} phase); '
            f'the last good checkpoint is kept in {ckpt.directory}. Lower attack.generator_lr.')
      writer.write({'epoch': done, 'phase': trainer.phase(epoch), **metrics})
      bar.update(trainer.images_per_epoch, epoch=done,
                 **{k: v for k, v in metrics.items() if k.endswith(('loss', 'acc'))})
      if done % every_epochs == 0 or done == trainer.epochs:
        ckpt.save(done, _on_mesh(state))
  finally:
    if bar is not None:
      bar.close()
    ckpt.close()
  return trainer.evaluate(state)


def restore_final(trainer: GeneratorTrainer, run_dir: str) -> Any:
  """The state of the newest checkpoint in `run_dir` (a finished generator run), read only."""
  ckpt = Checkpointer(os.path.join(run_dir, 'checkpoints'), max_to_keep=1_000_000,
                      read_only=True)
  try:
    # Shapes, dtypes and shardings are all the restore needs: nothing is initialized or
    # compiled.
    sharding = parallel.replicated(parallel.make_mesh())
    template = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                            jax.eval_shape(trainer.init, jax.random.key(0)))
    return _local(ckpt.restore_latest(template, fallback=False).state)
  finally:
    ckpt.close()


# A generator trains on one device of each process (every process computes the same
# networks); its checkpoints hold them as arrays replicated over the mesh, which is what a
# checkpoint written by several processes holds.
def _on_mesh(state: Any) -> Any:
  return parallel.put_replicated(state, parallel.make_mesh())


def _local(state: Any) -> Any:
  return jax.device_put(parallel.fetch(state))
