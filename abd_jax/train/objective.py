"""What the fused train step minimizes besides the configured perturbation and mixing:
the loss on the batch, and whether the pruned classifier rows stay pruned.

    Objective()                        cross-entropy (every regime)
    Objective('lga')                   ABL's local gradient ascent, threshold hp['gamma']
    Objective('ascent')                gradient ascent on the cross-entropy (ABL unlearning)
    Objective('nad', nad_power=2)      cross-entropy + attention distillation to the
                                       teacher hp['teacher'] with weights hp['nad_betas']
    Objective(freeze_pruned=True)      the classifier rows hp['head_keep'] = 0 stay at zero
                                       (fine-pruning's fine-tuning)

The traced values (γ, β, the teacher's variables, the pruning mask) arrive in the step's
`hp`, so they never recompile a program.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

LOSSES = ('ce', 'lga', 'ascent', 'nad')


@dataclasses.dataclass(frozen=True)
class Objective:
  loss: str = 'ce'
  nad_power: float = 2.0
  freeze_pruned: bool = False

  def __post_init__(self):
    if self.loss not in LOSSES:
      raise ValueError(f'Objective.loss: {self.loss!r} is not one of {", ".join(LOSSES)}')

  def key(self) -> list:
    """JSON-able identity (the programs cache key)."""
    return [self.loss, self.nad_power, self.freeze_pruned]


def local_gradient_ascent(ce: jax.Array, gamma: jax.Array) -> jax.Array:
  """ABL's LGA loss (Li et al., NeurIPS 2021, Eq. 3): sign(L − γ)·L for the batch's mean
  cross-entropy L; below γ the step ascends, which keeps the loss of the quickly learned
  (poisoned) samples near γ. With γ = 0 it is plain cross-entropy (Gao et al. set γ = 0)."""
  return jnp.sign(ce - gamma) * ce


def attention_map(features: jax.Array, power: float | jax.Array = 2.0,
                  eps: float = 1e-6) -> jax.Array:
  """NAD's attention map (Zagoruyko & Komodakis 2017, as in NAD's code): A = Σ_c |F_c|^p
  over the channels of F [B,H,W,C], divided by its L2 norm over H×W (+ eps). -> [B,H,W]
  float32."""
  a = jnp.sum(jnp.abs(features.astype(jnp.float32)) ** power, axis=-1)
  norm = jnp.sqrt(jnp.sum(a * a, axis=(1, 2), keepdims=True))
  return a / (norm + eps)


def attention_distillation(student: tuple, teacher: tuple, betas: jax.Array,
                           power: float | jax.Array = 2.0) -> jax.Array:
  """NAD's distillation loss (Li et al., ICLR 2021, Eq. 2-3): Σ_k β_k·mean((A_s,k −
  A_t,k)²) over the last len(betas) stages of `student` and `teacher` (tuples of [B,H,W,C]
  activations in forward order). The mean is over B·H·W, as torch's mse_loss."""
  k = betas.shape[0]
  if len(student) < k:
    raise ValueError(f'defense.nad_betas: {k} weights, but the model has only '
                     f'{len(student)} stages to distill')
  terms = [jnp.mean((attention_map(s, power) - attention_map(t, power)) ** 2)
           for s, t in zip(student[-k:], teacher[-k:])]
  return jnp.sum(betas * jnp.stack(terms))


def prune_head(params: dict, keep: jax.Array) -> dict:
  """`params` with the classifier's input rows multiplied by `keep` [C] (0 = pruned).
  Every model ends in global pooling + Dense('head'), so zeroing row c removes channel c
  of the last stage exactly as masking its activation would."""
  head = dict(params['head'])
  head['kernel'] = head['kernel'] * keep[:, None].astype(head['kernel'].dtype)
  return {**params, 'head': head}
