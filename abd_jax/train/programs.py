"""The compiled programs of a training run, built once per static structure.

Everything jitted that a run needs (state initialization, the fused train step, the epoch
permutation, the evaluation passes) depends only on the run's *static structure*: the
model, the optimizer, the regime and its loop counts, the batch sizes and the data's
shapes. ε, step sizes, β and the seed's keys enter as traced arguments. Runs that share
a structure (the points of a sweep, a defense's detector and final model) therefore get
the same `Programs` object from `get_programs` and reuse its compilations: a new budget
never recompiles.

`stacked=True` builds the vmapped programs of a sweep group: every argument that differs
between runs (train state, keys, budgets, labels, the run's poisoned rows) carries a
leading run axis split over the 'runs' mesh axis; the clean images are shared.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from abd_jax import evaluate, parallel
from abd_jax.data.overlay import Overlaid
from abd_jax.models import create_model
from abd_jax.perturb import MIXINGS, make_perturbation
from abd_jax.train.objective import Objective
from abd_jax.train.critic import CRITIC, init_critic
from abd_jax.train.optim import dp_settings, learning_rate_schedule, make_optimizer, with_critic
from abd_jax.train.state import TrainState, create_train_state
from abd_jax.train.step import make_train_step

# The config fields a run's compiled programs depend on. Everything else is either traced
# (budgets, keys), data (the attack), or host-side control (epochs, schedules, logging).
PROGRAM_FIELDS = (
    'model.name', 'model.width', 'model.dtype', 'model.norm',
    'train.batch_size', 'train.optimizer', 'train.lr', 'train.momentum', 'train.weight_decay',
    'train.milestones', 'train.lr_decay',
    'perturb.name', 'perturb.steps', 'perturb.random_start', 'perturb.bn_mode', 'perturb.unroll',
    'dataset.crop_padding', 'dataset.flip',
    'eval.steps', 'eval.batch_size',
)


def program_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The values of `PROGRAM_FIELDS` in `config` (tuples as lists, JSON-comparable)."""
  out = {}
  for name in PROGRAM_FIELDS:
    section, field = name.split('.')
    value = config[section][field]
    out[name] = list(value) if isinstance(value, tuple) else value
  return out


@dataclasses.dataclass(frozen=True)
class Programs:
  """model, tx and lr_at: the network, optimizer and learning-rate schedule.
  init(key) -> TrainState; step(state, metrics, images, labels, order, index, key, hp);
  permute(key, epoch) -> int32 order [N]; evaluator: the counting passes. With `stacked`, keys, states, metrics, orders, labels
  and budgets have a leading run axis and `images` is an `Overlaid` set."""
  model: nn.Module
  tx: optax.GradientTransformation
  lr_at: optax.Schedule
  steps_per_epoch: int
  init: Callable[[jax.Array], TrainState]
  step: Callable[..., tuple[TrainState, dict]]
  permute: Callable[[jax.Array, int], jax.Array]
  evaluator: evaluate.Evaluator
  stacked: bool


_CACHE: dict[str, Programs] = {}
_EVALUATORS: dict[str, evaluate.Evaluator] = {}


def clear_cache() -> None:
  """Forgets every cached program (benchmarks that time compilation call this)."""
  _CACHE.clear()
  _EVALUATORS.clear()


def _evaluator(config, model: nn.Module, mesh, stacked: bool) -> evaluate.Evaluator:
  """The evaluation passes, shared by every program of the same network and evaluation
  settings: a defense's phases (other objectives, optimizers) compile them once."""
  p, e = config.perturb, config.eval
  key = json.dumps([repr(model), e.steps, e.batch_size, p.unroll,
                    [d.id for d in mesh.devices.flat], list(mesh.axis_names), stacked])
  if key not in _EVALUATORS:
    _EVALUATORS[key] = evaluate.Evaluator(
        model, make_perturbation('linf', e.steps, True, p.unroll), e.batch_size, mesh,
        stacked=stacked)
  return _EVALUATORS[key]


def get_programs(config: ml_collections.ConfigDict, num_train: int, num_classes: int,
                 image_shape: tuple[int, int, int], mesh, stacked: bool = False,
                 objective: Objective = Objective()) -> Programs:
  """The (cached) programs for `config`'s static structure on data of these shapes, with
  the step minimizing `objective` (and DP-SGD's aggregation for `defense.name='dpsgd'`)."""
  dp = dp_settings(config)
  key = json.dumps([program_fields(config), num_train, num_classes, list(image_shape),
                    [d.id for d in mesh.devices.flat], list(mesh.axis_names), stacked,
                    objective.key(), dataclasses.asdict(dp) if dp else None],
                   sort_keys=True)
  if key not in _CACHE:
    _CACHE[key] = _build(config, num_train, num_classes, tuple(image_shape), mesh, stacked,
                         objective, dp)
  return _CACHE[key]


def make_model(model_cfg: ml_collections.ConfigDict, num_classes: int,
               objective: Objective = Objective()) -> nn.Module:
  """The network of a run (`model` block) that minimizes `objective` (a contrastive one
  swaps the classifier for its projection head)."""
  return create_model(model_cfg.name, objective.outputs(num_classes), model_cfg.width,
                      model_cfg.dtype, model_cfg.get('norm', 'batch'), objective.head_hidden)


def make_tx(train_cfg: ml_collections.ConfigDict, steps_per_epoch: int, dp,
            objective: Objective = Objective()) -> optax.GradientTransformation:
  """The optimizer of a run; CBD's critic gets its own (`optim.with_critic`)."""
  tx = make_optimizer(train_cfg, steps_per_epoch, dp)
  return with_critic(tx, objective.critic_lr, steps_per_epoch) if objective.critic else tx


def init_state(model: nn.Module, tx: optax.GradientTransformation, key: jax.Array,
               image_shape: tuple[int, int, int], objective: Objective = Objective()) -> TrainState:
  """The initial train state (with CBD's critic when `objective` has one)."""
  extra = None
  if objective.critic:
    features = feature_width(model, image_shape)
    extra = {CRITIC: init_critic(objective.critic, features, jax.random.fold_in(key, 0xC))}
  return create_train_state(model, tx, key, image_shape, extra_params=extra)


def feature_width(model: nn.Module, image_shape) -> int:
  """The width F of the model's pooled penultimate features (shapes only, nothing runs)."""
  x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)

  def features(x):
    variables = model.init(jax.random.key(0), x, train=False)
    _, state = model.apply(variables, x, train=False, mutable=['intermediates'])
    return state['intermediates']['features'][0]

  return int(jax.eval_shape(features, x).shape[-1])


def _build(config, num_train, num_classes, image_shape, mesh, stacked, objective,
           dp) -> Programs:
  spe = num_train // config.train.batch_size
  model = make_model(config.model, num_classes, objective)
  tx = make_tx(config.train, spe, dp, objective)
  p = config.perturb
  step = make_train_step(model, make_perturbation(p.name, p.steps, p.random_start, p.unroll),
                         batch_size=config.train.batch_size,
                         crop_padding=config.dataset.crop_padding, flip=config.dataset.flip,
                         bn_mode=p.bn_mode, batch_sharding=parallel.batch_sharded(mesh),
                         mixing=MIXINGS.get(p.name), objective=objective,
                         per_example=dp is not None)

  def permute(key, epoch):
    return jax.random.permutation(jax.random.fold_in(key, epoch), num_train).astype(jnp.int32)

  init = lambda key: init_state(model, tx, key, image_shape, objective)
  if stacked:
    # One program steps every run: per-run arguments on axis 0, shared ones broadcast.
    vmap = lambda fn, axes: jax.vmap(fn, in_axes=axes, spmd_axis_name=parallel.RUNS_AXIS)
    images_axes = Overlaid(base=None, rows=0, slot=0)
    step = vmap(step, (0, 0, images_axes, 0, 0, None, 0, 0))
    permute = vmap(permute, (0, None))
    init = jax.jit(jax.vmap(init), out_shardings=parallel.per_run(mesh))
  evaluator = _evaluator(config, model, mesh, stacked)
  return Programs(model=model, tx=tx, lr_at=learning_rate_schedule(config.train, spe),
                  steps_per_epoch=spe, init=init,
                  step=jax.jit(step, donate_argnums=(0, 1)), permute=jax.jit(permute),
                  evaluator=evaluator, stacked=stacked)
