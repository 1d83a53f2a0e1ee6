"""The epoch loop: train, evaluate, log, checkpoint, resume — for one run, or for a stack
of runs that one vmapped program steps together (a sweep group).

    results = train_and_evaluate(config, data, workdir)                  # one run
    results = train_and_evaluate_stacked(runs, clean, group_dir)         # G runs at once

Both share the loop below; the stacked one keeps a leading run axis on the train state,
keys, budgets and metrics, and writes each run's metrics.jsonl, final checkpoint and
results into that run's own workdir.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from abd_jax import config as config_lib
from abd_jax import evaluate, interrupt, parallel
from abd_jax.data import Dataset
from abd_jax.data.overlay import Overlaid, overlay_rows
from abd_jax.train.checkpoint import Checkpointer
from abd_jax.train.critic import CRITIC
from abd_jax.train.objective import Objective
from abd_jax.train.programs import Programs, get_programs
from abd_jax.train.progress import Progress
from abd_jax.train.step import zero_metrics
from abd_jax.train.writer import JsonlWriter


class TrainingDivergedError(RuntimeError):
  """The training loss became NaN or infinite."""


def run_keys(seed: int) -> dict[str, jax.Array]:
  """Independent streams derived from the one seed."""
  root = jax.random.key(seed)
  names = ('init', 'data_order', 'train', 'eval')
  return {name: jax.random.fold_in(root, i) for i, name in enumerate(names)}


HPARAM_FIELDS = ('eps', 'step_size', 'eps_spatial', 'step_size_spatial', 'beta', 'mix_alpha')


def perturb_hparams(block: ml_collections.ConfigDict) -> dict[str, jax.Array]:
  """The swept hyperparameters of a config block (those it has) as traced float32 scalars."""
  return {k: jnp.float32(config_lib.hparam(block, k)) for k in HPARAM_FIELDS if k in block}


def steps_per_epoch(config: ml_collections.ConfigDict, num_train: int) -> int:
  spe = num_train // config.train.batch_size
  if spe == 0:
    raise config_lib.ConfigError('train.batch_size', config.train.batch_size,
                                 f'must be at most the {num_train} training images')
  return spe


@dataclasses.dataclass
class _Lanes:
  """What the epoch loop steps: one run, or G runs stacked on a leading axis.

  Arrays are the device arguments of `programs.step`; `keys` and the budgets are scalars
  (one run) or [G] (stacked). `writers[g]` is None for a lane that only pads the 'runs'
  mesh axis; `names[g]` names a lane in messages."""
  config: ml_collections.ConfigDict   # the static part is shared by every lane
  programs: Programs
  state: Any
  images: Any
  labels: jax.Array
  keys: dict[str, jax.Array]
  train_hp: dict[str, jax.Array]
  eval_hp: dict[str, jax.Array]
  test_set: evaluate.EvalSet
  triggered: tuple[evaluate.EvalSet, jax.Array] | None
  writers: list[JsonlWriter | None]
  names: list[str]
  ckpt: Checkpointer
  mesh: Any
  show_progress: bool
  evaluation: bool = True

  @property
  def size(self) -> int:
    return len(self.writers)

  def per_lane(self, value) -> list:
    """A scalar (one run) or [G] array -> one Python number per lane."""
    return [v.item() for v in np.atleast_1d(parallel.fetch(value))]


def _evaluate(lanes: _Lanes, state, epoch: int, final: bool) -> list[dict]:
  e, ev = lanes.config.eval, lanes.programs.evaluator
  if not lanes.evaluation:
    return [{} for _ in range(lanes.size)]
  variables = state.variables
  out = {'clean_acc': ev.accuracy(variables, lanes.test_set)}
  if e.robust:
    key = (jax.vmap(jax.random.fold_in, in_axes=(0, None))(lanes.keys['eval'], epoch)
           if lanes.programs.stacked else jax.random.fold_in(lanes.keys['eval'], epoch))
    out['robust_acc'] = ev.robust_accuracy(variables, lanes.test_set, key, lanes.eval_hp,
                                           limit=0 if final else e.robust_subset)
  if lanes.triggered is not None:
    triggered_set, targets = lanes.triggered
    out['asr'] = ev.accuracy(variables, triggered_set, targets)
    out['backdoor_acc'] = ev.accuracy(variables, triggered_set)
  columns = {k: lanes.per_lane(v) for k, v in out.items()}
  return [{k: columns[k][g] for k in out} for g in range(lanes.size)]


def _diverged_message(name: str, loss: float, epoch: int, kept: int | None, directory: str) -> str:
  return (f'{name}the training loss became {loss} in epoch {epoch}; stopped. '
          + (f'The last good checkpoint (epoch {kept}) is kept in {directory}. '
             if kept else 'No checkpoint had been written yet. ')
          + 'Lower train.lr or check the data.')


def _run_epochs(lanes: _Lanes, epoch_hook=None) -> tuple[Any, list[dict | TrainingDivergedError]]:
  """Trains every lane from its latest checkpoint to `train.epochs`, evaluating, logging and
  checkpointing as configured. Returns the final state and, per lane, its results (or the
  TrainingDivergedError of a stacked lane that diverged; one run raises it instead)."""
  config, programs, ckpt = lanes.config, lanes.programs, lanes.ckpt
  spe, batch_size, epochs = programs.steps_per_epoch, config.train.batch_size, config.train.epochs
  e = config.eval

  def fresh_metrics():  # a new buffer every epoch (the step donates it), on the mesh:
    # zeros the step had to place itself would compile each epoch's first step apart
    if not programs.stacked:
      return parallel.put_replicated(zero_metrics(), lanes.mesh)
    return parallel.put_per_run(jax.tree.map(lambda z: np.zeros((lanes.size,) + z.shape, z.dtype),
                                             zero_metrics()), lanes.mesh)

  diverged: dict[int, TrainingDivergedError] = {}
  images_per_epoch = spe * batch_size * lanes.size
  progress = None
  try:
    restored = ckpt.restore_latest(lanes.state)
    state, start_epoch = restored.state, restored.epoch
    # The train metrics of the checkpointed epoch: what the results of a run resumed
    # after its last epoch report (never read back from metrics.jsonl, which may be gone).
    last_train = _saved_train_metrics(restored.extra, lanes.size)
    for writer in lanes.writers:
      if writer is not None:
        writer.truncate_after(start_epoch)
    progress = Progress(epochs * images_per_epoch, start_epoch * images_per_epoch,
                        enabled=config.log.progress and lanes.show_progress,
                        desc='train' if lanes.size == 1 else f'train x{lanes.size}')
    for epoch in range(start_epoch, epochs):
      order = programs.permute(lanes.keys['data_order'], epoch)
      metrics = fresh_metrics()
      t_epoch = t_sync = time.perf_counter()
      pending = 0
      for i in range(spe):
        state, metrics = programs.step(state, metrics, lanes.images, lanes.labels, order, i,
                                       lanes.keys['train'], lanes.train_hp)
        pending += batch_size * lanes.size
        if (i + 1) % config.log.every_steps == 0 or i + 1 == spe:
          jax.block_until_ready(metrics)
          interrupt.check()  # a Ctrl-C that Python dropped (it landed in a gc callback)
          ckpt.poll()  # the digest of the last checkpoint, as soon as it is written
          now = time.perf_counter()
          progress.update(pending, epoch=epoch + 1, img_s=pending / max(now - t_sync, 1e-9))
          t_sync, pending = now, 0
      epoch_time = time.perf_counter() - t_epoch
      m = parallel.fetch(metrics)
      losses = [s / c for s, c in zip(lanes.per_lane(m['loss_sum']), lanes.per_lane(m['count']))]
      accs = [h / c for h, c in zip(lanes.per_lane(m['correct']), lanes.per_lane(m['count']))]
      done = epoch + 1
      for g, loss in enumerate(losses):
        if not math.isfinite(loss) and g not in diverged:
          ckpt.wait()
          name = f'{lanes.names[g]}: ' if programs.stacked else ''
          diverged[g] = TrainingDivergedError(_diverged_message(name, loss, done, ckpt.latest_epoch(),
                                                                ckpt.directory))
          if not programs.stacked:
            raise diverged[g]
      last_train = [{'train_loss': loss, 'train_acc': acc} for loss, acc in zip(losses, accs)]
      records = [{'epoch': done, 'step': done * spe, **t, 'lr': float(programs.lr_at(done * spe - 1)),
                  'images_per_sec': spe * batch_size / epoch_time} for t in last_train]
      if done % e.every_epochs == 0 or done == epochs:
        for record, evaluated in zip(records, _evaluate(lanes, state, done, final=False)):
          record.update(evaluated)
      if epoch_hook is not None:
        records[0].update(epoch_hook(programs.model, state.variables, done))
      for g, (writer, record) in enumerate(zip(lanes.writers, records)):
        if writer is not None and g not in diverged:
          writer.write(record)
      if done % config.checkpoint.every_epochs == 0 or done == epochs:
        ckpt.save(done, state, extra={'train': last_train})
  finally:
    if progress is not None:
      progress.close()
    ckpt.close()

  if programs.stacked:  # a lane that diverged before a resume left non-finite weights
    finite = jax.vmap(lambda p: jnp.all(jnp.stack([jnp.all(jnp.isfinite(x))
                                                   for x in jax.tree.leaves(p)])))(state.params)
    for g, ok in enumerate(parallel.fetch(finite)):
      if not ok and g not in diverged:
        diverged[g] = TrainingDivergedError(
            f'{lanes.names[g]}: the training diverged (its weights are not finite); '
            'lower train.lr or check the data.')
  finals = _evaluate(lanes, state, epochs, final=True)
  model_params = {k: v for k, v in state.params.items() if k != CRITIC}  # not CBD's critic
  num_params = int(sum(x.size for x in jax.tree.leaves(model_params))) // (
      lanes.size if programs.stacked else 1)
  results: list[dict | TrainingDivergedError] = []
  for g, (final, train_part, writer) in enumerate(zip(finals, last_train, lanes.writers)):
    if g in diverged:
      results.append(diverged[g])
      continue
    if not train_part and writer is not None:  # resumed after the last epoch from a
      # checkpoint written before the train metrics were kept in checkpoints
      last = [r for r in writer.read() if r.get('epoch') == epochs]
      train_part = {k: last[-1][k] for k in TRAIN_KEYS if k in last[-1]} if last else {}
    results.append({**final, **train_part, 'epochs': epochs, 'steps': epochs * spe,
                    'num_params': num_params})
  return state, results


TRAIN_KEYS = ('train_loss', 'train_acc')


def _saved_train_metrics(extra: dict | None, size: int) -> list[dict]:
  """Per lane, the {'train_loss', 'train_acc'} a checkpoint's extra holds ({} where not)."""
  saved = extra.get('train') if isinstance(extra, dict) else None
  if not isinstance(saved, list) or len(saved) != size:
    return [{} for _ in range(size)]
  return [{k: float(t[k]) for k in TRAIN_KEYS} if isinstance(t, dict)
          and all(isinstance(t.get(k), (int, float)) for k in TRAIN_KEYS) else {} for t in saved]


def _triggered(backdoor: evaluate.BackdoorTestSet | None, batch_size: int, mesh):
  if backdoor is None:
    return None
  return (evaluate.make_eval_set(backdoor.images, backdoor.labels, batch_size, mesh),
          evaluate.put_labels(backdoor.targets, batch_size, mesh))


def train_and_evaluate(config: ml_collections.ConfigDict, data: Dataset, workdir: str,
                       backdoor: evaluate.BackdoorTestSet | None = None,
                       epoch_hook: Callable[[Any, dict, int], dict] | None = None,
                       objective: Objective = Objective(), extra_hp: dict | None = None,
                       init_variables: dict | None = None, evaluation: bool = True) -> dict:
  """Trains on `data.x_train` with the configured perturbation, evaluates on the test set
  (and on `backdoor`'s triggered test set: `asr`, `backdoor_acc`), and returns the final
  metrics. Resumes from `workdir/checkpoints` when one exists. `epoch_hook(model,
  variables, epoch)` runs after every epoch's evaluation; the metrics it returns join that
  epoch's line in metrics.jsonl (the defenses count steps there).

  The defenses that fine-tune pass `init_variables` ({'params', 'batch_stats'}: where a
  fresh run starts instead of the seed's initialization; the optimizer state starts
  fresh), the step's `objective` and its traced inputs `extra_hp` (see `objective`).
  `evaluation=False` skips every evaluation (a contrastive pre-training phase has no
  classifier to evaluate): the results hold the training metrics only."""
  mesh = parallel.make_mesh()
  # A phase's config holds the later phases' batches at their defaults: only its own count.
  config_lib.validate_for_devices(config, jax.device_count(), phases=False)
  is_writer = jax.process_index() == 0
  keys = run_keys(config.seed)
  steps_per_epoch(config, len(data.y_train))
  programs = get_programs(config, len(data.y_train), data.num_classes, data.image_shape, mesh,
                          objective=objective)
  state = programs.init(keys['init'])
  if init_variables is not None:  # host copies: the step donates the state's buffers
    start = parallel.fetch(init_variables)
    state = state.replace(params=_start_from(state.params, start['params']),
                          batch_stats=_start_from(state.batch_stats, start.get('batch_stats', {})))
  state, keys = parallel.put_replicated((state, keys), mesh)
  images, labels = parallel.put_replicated((data.x_train, data.y_train.astype(np.int32)), mesh)
  train_hp = parallel.put_replicated({**perturb_hparams(config.perturb), **(extra_hp or {})}, mesh)
  e = config.eval
  lanes = _Lanes(
      config=config, programs=programs, state=state, images=images, labels=labels, keys=keys,
      train_hp=train_hp, eval_hp=perturb_hparams(e),
      test_set=evaluate.make_eval_set(data.x_test, data.y_test, e.batch_size, mesh),
      triggered=_triggered(backdoor, e.batch_size, mesh),
      writers=[JsonlWriter(os.path.join(workdir, 'metrics.jsonl'), enabled=is_writer)],
      names=[workdir],
      ckpt=Checkpointer(os.path.join(workdir, 'checkpoints'), config.checkpoint.max_to_keep),
      mesh=mesh, show_progress=is_writer, evaluation=evaluation)
  _, (results,) = _run_epochs(lanes, epoch_hook)
  return results


def _start_from(fresh: dict, start: dict) -> dict:
  """`fresh` (the seed's initialization) with every top-level module that `start` has
  replaced by `start`'s: a classifier whose head `start` leaves out (a contrastively
  pre-trained backbone) gets a fresh head."""
  unknown = sorted(set(start) - set(fresh))
  if unknown:
    raise ValueError(f'init_variables: modules {unknown} are not in the model')
  return {**fresh, **start}


@dataclasses.dataclass(frozen=True)
class StackedRun:
  """One run of a vmapped group. The group shares the clean training images; a run has
  its own config (equal to the others' in static structure), workdir, training labels,
  the rows its attack changed (sorted indices [M] and their images [M,H,W,C]) and its
  triggered test set."""
  config: ml_collections.ConfigDict
  workdir: str
  labels: np.ndarray
  changed: np.ndarray
  changed_images: np.ndarray
  backdoor: evaluate.BackdoorTestSet | None = None


def train_and_evaluate_stacked(runs: Sequence[StackedRun], clean: Dataset,
                               group_dir: str) -> list[dict | TrainingDivergedError]:
  """Trains `runs` as one vmapped program and returns each run's results (or its
  TrainingDivergedError), as `train_and_evaluate` would for that run alone, up to float
  differences of the batched computation.

  clean: the unpoisoned dataset (training images shared by every run; the test set).
  group_dir: where the stacked train state is checkpointed (resumable like one run).
  The run axis is split over a (runs, data) mesh; when the group does not fill the
  'runs' axis evenly, the last run is repeated and its copies' results dropped.
  Each run's workdir receives its metrics.jsonl and, at the end, its own final checkpoint,
  so it is an ordinary run directory.
  """
  if not runs:
    return []
  n_dev = jax.device_count()
  lanes_axis = parallel.runs_lanes(len(runs), n_dev)
  mesh = parallel.make_runs_mesh(lanes_axis)
  size = -(-len(runs) // lanes_axis) * lanes_axis
  padded = list(runs) + [runs[-1]] * (size - len(runs))
  config = runs[0].config
  for field, value in (('train.batch_size', config.train.batch_size),
                       ('eval.batch_size', config.eval.batch_size)):
    if value % mesh.shape[parallel.DATA_AXIS]:
      raise config_lib.ConfigError(field, value, f'must be a multiple of the '
                                   f'{mesh.shape[parallel.DATA_AXIS]} devices of a run')
  steps_per_epoch(config, len(clean.y_train))
  is_writer = jax.process_index() == 0
  programs = get_programs(config, len(clean.y_train), clean.num_classes, clean.image_shape, mesh,
                          stacked=True)
  keys = [run_keys(r.config.seed) for r in padded]
  keys = parallel.put_per_run({k: jnp.stack([kk[k] for kk in keys]) for k in keys[0]}, mesh)
  num_rows = max(1, max(len(r.changed) for r in padded))
  rows, slots = zip(*(overlay_rows(r.changed, r.changed_images, len(clean.y_train), num_rows)
                      for r in padded))
  base = parallel.put_replicated(clean.x_train, mesh)
  rows, slots, labels = parallel.put_per_run(
      (np.stack(rows), np.stack(slots), np.stack([r.labels.astype(np.int32) for r in padded])), mesh)
  hp = lambda block: {k: parallel.put_per_run(np.stack([np.float32(v) for v in vs]), mesh)
                      for k, vs in _columns([perturb_hparams(r.config[block]) for r in padded]).items()}
  e = config.eval
  triggered = None
  if runs[0].backdoor is not None:
    triggered = (evaluate.make_stacked_eval_set([r.backdoor.images for r in padded],
                                                [r.backdoor.labels for r in padded], e.batch_size, mesh),
                 evaluate.put_stacked_labels([r.backdoor.targets for r in padded], e.batch_size, mesh))
  writers = [JsonlWriter(os.path.join(r.workdir, 'metrics.jsonl'), enabled=is_writer)
             if g < len(runs) else None for g, r in enumerate(padded)]
  lanes = _Lanes(
      config=config, programs=programs, state=programs.init(keys['init']),
      images=Overlaid(base, rows, slots), labels=labels, keys=keys,
      train_hp=hp('perturb'), eval_hp=hp('eval'),
      test_set=evaluate.make_eval_set(clean.x_test, clean.y_test, e.batch_size, mesh),
      triggered=triggered, writers=writers,
      names=[os.path.basename(os.path.normpath(r.workdir)) for r in padded],
      ckpt=Checkpointer(os.path.join(group_dir, 'checkpoints'), config.checkpoint.max_to_keep),
      mesh=mesh, show_progress=is_writer)
  state, results = _run_epochs(lanes)
  _save_each(state, runs, results, mesh)
  return results[:len(runs)]


def _columns(dicts: list[dict]) -> dict[str, list]:
  return {k: [d[k] for d in dicts] for k in dicts[0]}


def _save_each(state, runs: Sequence[StackedRun], results: list, mesh) -> None:
  """Each finished run's final state, unstacked, as the latest checkpoint of its workdir."""
  take = jax.jit(lambda s, g: jax.tree.map(lambda a: a[g], s),
                 out_shardings=parallel.replicated(mesh))
  for g, (run, result) in enumerate(zip(runs, results)):
    if isinstance(result, Exception):
      continue
    ckpt = Checkpointer(os.path.join(run.workdir, 'checkpoints'), run.config.checkpoint.max_to_keep)
    try:
      if ckpt.latest_epoch() != run.config.train.epochs:
        ckpt.save(run.config.train.epochs, take(state, g),
                  extra={'train': [{k: result[k] for k in TRAIN_KEYS if k in result}]})
    finally:
      ckpt.close()
