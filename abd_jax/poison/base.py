"""What every attack builder returns (`Attack`) and what the model-based ones are given
(`AttackContext`, with a `TrainedGenerator` for the sample-specific attacks). Kept apart
from the registry so that the attack modules import it without importing each other."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import ml_collections

from abd_jax.data import Dataset
from abd_jax.errors import ConfigError

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Attack:
  """poison(x, key): the training images to store for the chosen samples, float32
  [n,H,W,C] in [0,1]. trigger(x, strength): the test-time trigger, jittable, with the
  strength (alpha, delta, amplitude) a traced scalar. cross(x, key): optional images that
  keep their labels (WaNet's noise mode), `cross_ratio` per poisoned sample."""
  poison: Callable[[Array, Array], Array]
  trigger: Callable[[Array, Array], Array]
  strength: float
  params: dict[str, Any]
  cross: Callable[[Array, Array], Array] | None = None
  cross_ratio: float = 0.0


@dataclasses.dataclass(frozen=True)
class TrainedGenerator:
  """The trained networks of a sample-specific attack (iab: 'pattern' and 'mask'; ssba:
  'encoder' and 'decoder'): flax modules, their variables, the results.json of the run
  that trained them, and the `attack` block it was trained with (its bit count, residual
  bound and mask density hold, whatever the current config says)."""
  modules: dict[str, Any]
  variables: dict[str, dict]
  results: dict
  attack: dict
  source: str = 'trained'


@dataclasses.dataclass(frozen=True)
class AttackContext:
  """What the model-based attacks (lc, trojan) need beyond the attack block.

  surrogate: (model, variables) of the trained model they craft the poison with. The
    layer that orchestrates runs trains or loads it (`abd_jax.surrogate`): poisoning
    itself never trains.
  surrogate_source: what the manifest records as its origin (a run directory or 'trained').
  unroll: `perturb.unroll` for the attack loops run on the surrogate.
  generator: the trained trigger networks of iab / ssba (`abd_jax.generators`).
  """
  surrogate: tuple[Any, dict] | None = None
  surrogate_source: str = ''
  unroll: str = 'auto'
  generator: TrainedGenerator | None = None

  def require_generator(self, attack: str) -> TrainedGenerator:
    if self.generator is None:
      raise ValueError(f'the {attack} attack stamps each image with the output of a trained '
                       'generator; build its AttackContext with abd_jax.surrogate.attack_context')
    return self.generator

  def require_surrogate(self, attack: str) -> tuple[Any, dict]:
    if self.surrogate is None:
      raise ValueError(f'the {attack} attack crafts its poison on a trained surrogate model; '
                       'build its AttackContext with abd_jax.surrogate.attack_context')
    return self.surrogate


def check_patch_fits(cfg: ml_collections.ConfigDict, data: Dataset) -> None:
  h, w = data.image_shape[:2]
  if cfg.patch_size > min(h, w):
    raise ConfigError('attack.patch_size', cfg.patch_size,
                      f'the trigger must fit in the {h}x{w} images')
